//! `iotchain proof` and `iotchain verify`: fetch and check reading proofs.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Args;
use iotchain_block::{Genesis, ProofBundle, RangeKindJson, RangeProofJson};

use crate::{DEFAULT_NODE, EXIT_INVALID, client::Client};

#[derive(Debug, Args)]
pub(crate) struct ProofArgs {
    /// The reading id (0x + 64 hex).
    id: String,
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Write the proof here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The proof: a reading's proof bundle (JSON, as served by GET /v1/readings/{id}/proof),
    /// or a whole range answer with its proof (GET /v1/devices/{address}/readings?stream=…
    /// &proof=true, or `iotchain readings … --proof`).
    proof: PathBuf,
    /// The chain's genesis file (chain id and validator set to check the certificate against).
    #[arg(long)]
    genesis: PathBuf,
}

pub(crate) async fn fetch(a: ProofArgs) -> anyhow::Result<ExitCode> {
    let proof = Client::new(&a.node)
        .get(&format!("/v1/readings/{}/proof", a.id))
        .await?;
    let text = serde_json::to_string_pretty(&proof)?;
    match a.out {
        Some(path) => std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let genesis = Genesis::read(&a.genesis)?;
    let text = std::fs::read_to_string(&a.proof)
        .with_context(|| format!("reading {}", a.proof.display()))?;
    if let Ok(answer) = serde_json::from_str::<serde_json::Value>(&text)
        && answer.get("range_proof").is_some()
    {
        return Ok(verify_range(&genesis, &answer));
    }
    let proof: ProofBundle = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("INVALID proof file: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let genesis_hash = iotchain_node::genesis_header(&genesis).hash();
    match proof.verify(&genesis, &genesis_hash) {
        Ok(v) => {
            println!(
                "OK reading {} of device {} (seq {}, stream {:?}) is in block {} ({}), finalized by {} of {} validators",
                proof.reading_id,
                v.device,
                v.seq,
                v.stream,
                v.height,
                v.header_hash,
                proof.certificate.signatures.len(),
                genesis.validators.len()
            );
            if !v.key_is_original {
                println!(
                    "note: the device key was rotated; it is not the key the device address derives from"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("INVALID {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// Checks a range answer (`readings` and `range_proof`) and says what it proves.
fn verify_range(genesis: &Genesis, answer: &serde_json::Value) -> ExitCode {
    let invalid = |why: String| {
        eprintln!("INVALID {why}");
        ExitCode::from(EXIT_INVALID)
    };
    let proof: RangeProofJson = match serde_json::from_value(answer["range_proof"].clone()) {
        Ok(p) => p,
        Err(e) => return invalid(format!("range proof: {e}")),
    };
    let Some(items) = answer["readings"].as_array() else {
        return invalid("the answer has no readings list".into());
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let message = item["message"]
            .as_str()
            .and_then(|h| alloy_primitives::hex::decode(h).ok());
        match message {
            Some(m) => messages.push(alloy_primitives::Bytes::from(m)),
            None => {
                return invalid(format!(
                    "reading {i} of the answer has no signed message (0x-hex `message`)"
                ));
            }
        }
    }
    match proof.verify(genesis, &messages) {
        Ok(v) => {
            let (f, t) = (
                proof.range.from.unwrap_or(0),
                proof.range.to.unwrap_or(u64::MAX),
            );
            let range = match proof.range.kind {
                RangeKindJson::All => "the whole stream".to_string(),
                RangeKindJson::Seq => format!("seq {f}..={t}"),
                RangeKindJson::Ts => format!("device time {f}..={t} ms"),
                RangeKindJson::BlockTime => format!("block time {f}..={t} ms"),
            };
            println!(
                "OK the answer holds exactly the {} readings of device {} stream {:?} in {} \
                 (of {} in the stream), none left out or added, each as its device signed it, \
                 final at height {} ({}), finalized by {} of {} validators",
                v.readings,
                proof.device,
                proof.stream,
                range,
                v.stream_count,
                v.height,
                v.header_hash,
                proof.certificate.signatures.len(),
                genesis.validators.len()
            );
            if proof.range.kind == RangeKindJson::Seq {
                let mut seqs: Vec<u64> = items.iter().filter_map(|i| i["seq"].as_u64()).collect();
                seqs.sort_unstable();
                println!("seqs present: {}", runs(&seqs));
            }
            ExitCode::SUCCESS
        }
        Err(e) => invalid(e),
    }
}

/// `0-99, 101, 103-200`: sorted values as runs (what an auditor reads gaps from).
fn runs(sorted: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        out.push(if start == sorted[i] {
            start.to_string()
        } else {
            format!("{start}-{}", sorted[i])
        });
        i += 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}
