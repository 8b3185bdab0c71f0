//! `iotchain proof` and `iotchain verify`: fetch and check reading proofs.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Args;
use iotchain_block::{Genesis, ProofBundle};

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
    /// The proof bundle (JSON, as served by GET /v1/readings/{id}/proof).
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
