//! `iotchain send`: sign readings with a device key and send them.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use iotchain_crypto::KeyFile;

use crate::{DEFAULT_NODE, client::Client};

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Device key file (ed25519 or p256).
    #[arg(long)]
    device_key: PathBuf,
    /// The reading's data as JSON (a number, string, object, ...); sent as CBOR.
    #[arg(long)]
    data: String,
    /// Stream name (default "default").
    #[arg(long)]
    stream: Option<String>,
    /// First seq; by default one above the device's last accepted seq.
    #[arg(long)]
    seq: Option<u64>,
    /// Number of readings to send (seq increasing by one).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Wait until each reading is final and print its height.
    #[arg(long)]
    wait: bool,
    /// The chain's genesis hash (0x + 64 hex digits) the readings sign as COSE external_aad,
    /// or `none` on a chain whose readings do not name it; by default the node's
    /// (`reading_aad` in /v1/status). Needed with --out when no node is reachable.
    #[arg(long, value_name = "GENESIS_HASH")]
    chain: Option<String>,
    /// Write the signed reading (with --count > 1: a CBOR array of them) to this file instead
    /// of sending it, e.g. for `mosquitto_pub -f FILE`. Needs --seq or a reachable node.
    #[arg(long, conflicts_with = "wait")]
    out: Option<PathBuf>,
}

/// JSON text to CBOR bytes.
pub(crate) fn json_to_cbor(json: &str) -> anyhow::Result<Vec<u8>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("--data {json:?} is not JSON"))?;
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).context("encoding data as CBOR")?;
    Ok(out)
}

pub(crate) use crate::clock::now_ms;

pub(crate) async fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let signer = KeyFile::read(&a.device_key)?.device_signer()?;
    let data = json_to_cbor(&a.data)?;
    let client = Client::new(&a.node);
    let aad = match &a.chain {
        Some(text) => crate::client::parse_aad(text).context("--chain")?,
        None => client
            .reading_aad()
            .await
            .context("asking the node which chain to sign for (or give --chain)")?,
    };
    let first = match a.seq {
        Some(s) => s,
        None => {
            let info = client
                .get(&format!("/v1/devices/{}", signer.address()))
                .await?;
            info["pending_last_seq"].as_u64().map_or(0, |s| s + 1)
        }
    };
    if let Some(out) = &a.out {
        let messages: Vec<Vec<u8>> = (first..first + a.count)
            .map(|seq| signer.sign_reading(&aad, seq, now_ms(), a.stream.as_deref(), &data))
            .collect();
        let bytes = match messages.as_slice() {
            [one] => one.clone(),
            many => crate::client::cbor_batch(many),
        };
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        for (m, seq) in messages.iter().zip(first..) {
            let id = iotchain_block::hex0x(iotchain_reading::reading_id(m));
            println!(
                "{}",
                serde_json::json!({"id": id, "seq": seq, "status": "signed"})
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for seq in first..first + a.count {
        let message = signer.sign_reading(&aad, seq, now_ms(), a.stream.as_deref(), &data);
        match client.post_reading(message).await {
            Ok(r) => {
                let id = r["id"].as_str().unwrap_or("?").to_string();
                if a.wait {
                    let s = client
                        .get(&format!("/v1/readings/{id}?wait_ms=30000"))
                        .await?;
                    if s["status"] != "final" {
                        bail!("reading {id} not final after 30 s");
                    }
                    println!(
                        "{}",
                        serde_json::json!({"id": id, "seq": seq, "status": "final", "height": s["height"]})
                    );
                } else {
                    println!(
                        "{}",
                        serde_json::json!({"id": id, "seq": seq, "status": "pending"})
                    );
                }
            }
            Err(e) => {
                eprintln!("seq {seq}: {e:#}");
                failed = true;
            }
        }
        if a.count > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(if failed {
        ExitCode::from(crate::EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}
