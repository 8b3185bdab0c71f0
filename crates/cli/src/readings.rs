//! `iotchain readings`: a device's final readings read back, one JSON line each, every page
//! of `GET /v1/devices/{address}/readings` followed to the end (or `--limit` readings).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::{DEFAULT_NODE, client::Client};

#[derive(Debug, Args)]
pub(crate) struct ReadingsArgs {
    /// The device address (0x…).
    device: String,
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Only this stream (default: every stream of the device, in commit order).
    #[arg(long)]
    stream: Option<String>,
    /// Newest first.
    #[arg(long)]
    desc: bool,
    /// From this seq (inclusive).
    #[arg(long)]
    from_seq: Option<u64>,
    /// To this seq (inclusive).
    #[arg(long)]
    to_seq: Option<u64>,
    /// From this device time, ms since the Unix epoch (inclusive).
    #[arg(long)]
    from_ts: Option<u64>,
    /// To this device time, ms (inclusive).
    #[arg(long)]
    to_ts: Option<u64>,
    /// From this block time, ms (inclusive).
    #[arg(long)]
    from_time: Option<u64>,
    /// To this block time, ms (inclusive).
    #[arg(long)]
    to_time: Option<u64>,
    /// Print at most this many readings.
    #[arg(long)]
    limit: Option<u64>,
    /// Also print each reading's signed message (0x-hex).
    #[arg(long)]
    raw: bool,
    /// Fetch the whole range (up to 10,000 readings; needs --stream and at most one kind of
    /// range) with its complete-range proof, and write that answer to --out for
    /// `iotchain verify FILE --genesis GENESIS`.
    #[arg(long, requires = "out", requires = "stream")]
    proof: bool,
    /// With --proof: where to write the proven answer (JSON).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

pub(crate) async fn run(a: ReadingsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&a.node);
    let mut query = vec![format!("order={}", if a.desc { "desc" } else { "asc" })];
    if let Some(s) = &a.stream {
        query.push(format!("stream={}", encode(s)));
    }
    for (k, v) in [
        ("from_seq", a.from_seq),
        ("to_seq", a.to_seq),
        ("from_ts", a.from_ts),
        ("to_ts", a.to_ts),
        ("from_time", a.from_time),
        ("to_time", a.to_time),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={v}"));
        }
    }
    if a.raw {
        query.push("raw=true".into());
    }
    if a.proof {
        query.push("proof=true".into());
        query.push(format!("limit={}", a.limit.unwrap_or(10_000)));
        let body = client
            .get(&format!(
                "/v1/devices/{}/readings?{}",
                a.device,
                query.join("&")
            ))
            .await?;
        let out = a.out.expect("clap requires --out with --proof");
        let n = body["readings"].as_array().map_or(0, Vec::len);
        std::fs::write(&out, serde_json::to_string_pretty(&body)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "wrote {n} readings with their complete-range proof to {}",
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (mut printed, mut cursor): (u64, Option<String>) = (0, None);
    loop {
        let page_size = a.limit.map_or(1000, |l| (l - printed).min(1000));
        let mut q = query.clone();
        q.push(format!("limit={page_size}"));
        if let Some(c) = &cursor {
            q.push(format!("cursor={c}"));
        }
        let body = client
            .get(&format!(
                "/v1/devices/{}/readings?{}",
                a.device,
                q.join("&")
            ))
            .await
            .context("reading the device's readings")?;
        for r in body["readings"].as_array().into_iter().flatten() {
            if !crate::out_line(format_args!("{r}")) {
                // The reader is gone (`| head`): nothing more to print.
                return Ok(ExitCode::SUCCESS);
            }
            printed += 1;
        }
        cursor = body["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() || a.limit.is_some_and(|l| printed >= l) {
            break;
        }
    }
    eprintln!("{printed} readings");
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value (stream names are 1 to 64 bytes of any UTF-8).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
