//! `iotchain device import`, `certify` and `manufacturer`: onboarding a fleet from a file of
//! device keys, many devices per owner transaction, and the factory's certificates of them.
//!
//! The file is CSV (a header row naming the columns) or JSON (an array of objects), with the
//! same fields either way: `public_key` (hex) and `alg` (`ed25519` or `p256`) required,
//! `model`, `firmware_hash` (hex), `labels` (CSV `k=v;k2=v2`, JSON an object) and
//! `certificate` (hex, 65 bytes) optional. Every row is checked before anything is sent; a
//! bad row is named by its line (CSV) or index (JSON).

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, Bytes};
use anyhow::{Context, bail};
use clap::Args;
use iotchain_block::{DeviceCertificate, DeviceOp, MAX_BATCH_DEVICES, NewDevice, SignedTx};
use iotchain_crypto::{DevicePublicKey, KeyAlg, KeyFile};
use serde::{Deserialize, Serialize};

use crate::{DEFAULT_NODE, client::Client};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The devices: a .csv or .json file (docs/operating.md#onboarding-a-fleet).
    file: PathBuf,
    /// Owner key file (secp256k1), authorised in genesis.
    #[arg(long)]
    owner_key: PathBuf,
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Devices per owner transaction (at most 10,000).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_DEVICES as u64))]
    batch: u64,
    /// Check the file and print what would be registered, without sending anything.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CertifyArgs {
    /// The devices to certify: a .csv or .json file as `device import` reads.
    file: PathBuf,
    /// The manufacturer's key file (secp256k1): its address is what owners authorise.
    #[arg(long)]
    manufacturer_key: PathBuf,
    /// Where to write the devices with their certificates (the same format as the input).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ManufacturerArgs {
    /// The manufacturer's address (0x + 40 hex).
    manufacturer: Address,
    /// Owner key file (secp256k1).
    #[arg(long)]
    owner_key: PathBuf,
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Stop trusting the manufacturer's certificates instead.
    #[arg(long)]
    withdraw: bool,
}

/// One row of a device file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    public_key: String,
    alg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    model: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    firmware_hash: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    labels: Labels,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    certificate: String,
}

/// Labels: `k=v;k2=v2` in CSV, an object in JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(untagged)]
enum Labels {
    #[default]
    None,
    Text(String),
    Map(std::collections::BTreeMap<String, String>),
}

impl Labels {
    fn is_empty(&self) -> bool {
        match self {
            Labels::None => true,
            Labels::Text(t) => t.is_empty(),
            Labels::Map(m) => m.is_empty(),
        }
    }

    fn pairs(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(match self {
            Labels::None => vec![],
            Labels::Text(t) if t.is_empty() => vec![],
            Labels::Text(t) => t
                .split(';')
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("label {kv:?} is not key=value"))
                })
                .collect::<anyhow::Result<_>>()?,
            Labels::Map(m) => m.clone().into_iter().collect(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => Ok(Format::Csv),
        Some(e) if e.eq_ignore_ascii_case("json") => Ok(Format::Json),
        _ => bail!("{}: the file must end in .csv or .json", path.display()),
    }
}

/// Rows of a device file, each with where it is (`line 7` or `device 6`).
fn read_rows(path: &Path) -> anyhow::Result<Vec<(String, Row)>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match format_of(path)? {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(&text[..]);
            reader
                .deserialize()
                .enumerate()
                .map(|(i, row)| {
                    // Line 1 is the header.
                    let at = format!("line {}", i + 2);
                    let row: Row = row.with_context(|| format!("{}: {at}", path.display()))?;
                    Ok((at, row))
                })
                .collect()
        }
        Format::Json => {
            let rows: Vec<Row> = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a JSON array of devices", path.display()))?;
            Ok(rows
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("device {i}"), r))
                .collect())
        }
    }
}

fn write_rows(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    match format_of(path)? {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            for r in rows {
                w.serialize(CsvRow::from(r))?;
            }
            w.flush()?;
        }
        Format::Json => serde_json::to_writer_pretty(&mut out, rows)?,
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// A row as CSV writes it: every column, in order, labels as `k=v;k2=v2`.
#[derive(Serialize)]
struct CsvRow<'a> {
    public_key: &'a str,
    alg: &'a str,
    model: &'a str,
    firmware_hash: &'a str,
    labels: String,
    certificate: &'a str,
}

impl<'a> From<&'a Row> for CsvRow<'a> {
    fn from(r: &'a Row) -> Self {
        let labels = match &r.labels {
            Labels::None => String::new(),
            Labels::Text(t) => t.clone(),
            Labels::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        };
        Self {
            public_key: &r.public_key,
            alg: &r.alg,
            model: &r.model,
            firmware_hash: &r.firmware_hash,
            labels,
            certificate: &r.certificate,
        }
    }
}

fn row_key(row: &Row) -> anyhow::Result<DevicePublicKey> {
    let alg: KeyAlg = row.alg.parse().map_err(|e| anyhow::anyhow!("alg: {e}"))?;
    let alg = alg
        .device_alg()
        .context("alg must be ed25519 or p256 for a device key")?;
    let bytes = iotchain_block::unhex(&row.public_key).context("public_key is not hex")?;
    DevicePublicKey::from_bytes(alg, &bytes).context("public_key")
}

/// The device a row registers, its key and certificate checked.
fn new_device(row: &Row) -> anyhow::Result<NewDevice> {
    let public_key = row_key(row)?;
    let firmware_hash = match row.firmware_hash.as_str() {
        "" => Bytes::new(),
        h => Bytes::from(iotchain_block::unhex(h).context("firmware_hash is not hex")?),
    };
    let certificate = match row.certificate.as_str() {
        "" => None,
        c => {
            let sig: [u8; 65] = iotchain_block::unhex(c)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("certificate is not 65 bytes of hex")?;
            Some(
                DeviceCertificate::recover(&sig, &public_key, &row.model)
                    .context("certificate: does not recover a manufacturer")?,
            )
        }
    };
    Ok(NewDevice {
        public_key,
        model: row.model.clone(),
        firmware_hash,
        labels: row.labels.pairs()?,
        certificate,
    })
}

/// Every row as a device, or the first bad row named; a key listed twice is refused.
fn devices_of(path: &Path) -> anyhow::Result<Vec<(String, NewDevice)>> {
    let rows = read_rows(path)?;
    if rows.is_empty() {
        bail!("{} lists no devices", path.display());
    }
    let mut seen = BTreeSet::new();
    rows.into_iter()
        .map(|(at, row)| {
            let d = new_device(&row).with_context(|| format!("{}: {at}", path.display()))?;
            if !seen.insert(d.public_key.address()) {
                bail!(
                    "{}: {at}: device {} is listed twice",
                    path.display(),
                    d.public_key.address()
                );
            }
            Ok((at, d))
        })
        .collect()
}

pub(crate) async fn import(a: ImportArgs) -> anyhow::Result<()> {
    let devices = devices_of(&a.file)?;
    let total = devices.len();
    let batches: Vec<&[(String, NewDevice)]> = devices.chunks(a.batch as usize).collect();
    let certified = devices
        .iter()
        .filter(|(_, d)| d.certificate.is_some())
        .count();
    eprintln!(
        "{}: {total} devices ({certified} with a manufacturer certificate) in {} transactions of up to {}",
        a.file.display(),
        batches.len(),
        a.batch
    );
    if a.dry_run {
        for (at, d) in &devices {
            println!("{at}\t{}\t{}", d.public_key.address(), d.model);
        }
        return Ok(());
    }
    let client = Client::new(&a.node);
    let owner = crate::device::owner(&a.owner_key)?;
    let (chain_id, mut nonce) = client.owner_nonce(&owner).await?;
    let started = crate::clock::stopwatch();
    let (mut sent, mut skipped, mut last) = (0usize, 0usize, None);
    for (i, batch) in batches.iter().enumerate() {
        // A batch registers all its devices or none: one registered device means the batch
        // was registered by an earlier run (an import can be run again after a failure).
        let first = batch[0].1.public_key.address();
        if client.get(&format!("/v1/devices/{first}")).await.is_ok() {
            skipped += batch.len();
            continue;
        }
        let op = DeviceOp::RegisterMany {
            devices: batch.iter().map(|(_, d)| d.clone()).collect(),
        };
        let tx = SignedTx::sign(&owner, chain_id, nonce, op)?;
        let hash = client.post_tx(&tx).await.map_err(|e| {
            let lines = format!("{} to {}", batch[0].0, batch[batch.len() - 1].0);
            e.context(format!("transaction {} ({lines}) refused", i + 1))
        })?;
        nonce += 1;
        sent += batch.len();
        last = Some(hash);
        let secs = started.elapsed().as_secs_f64();
        eprint!(
            "\r  accepted {sent} of {total} devices ({:.0}%), {:.0} devices/s   ",
            (sent + skipped) as f64 * 100.0 / total as f64,
            sent as f64 / secs.max(1e-3)
        );
        std::io::stderr().flush().ok();
    }
    eprintln!();
    if skipped > 0 {
        eprintln!("  {skipped} devices were registered already (an earlier import): skipped");
    }
    if let Some(hash) = last {
        eprintln!("  waiting for the last transaction to be final…");
        let Some(height) = client
            .final_height(hash, std::time::Duration::from_secs(300))
            .await?
        else {
            bail!("transaction {hash} accepted but not final after 5 minutes");
        };
        println!(
            "{}",
            serde_json::json!({
                "registered": sent,
                "skipped": skipped,
                "transactions": batches.len(),
                "last_transaction": hash,
                "height": height,
                "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}

pub(crate) fn certify(a: CertifyArgs) -> anyhow::Result<()> {
    let maker = KeyFile::read(&a.manufacturer_key)?
        .owner_key()
        .with_context(|| format!("{} must be a secp256k1 key", a.manufacturer_key.display()))?;
    let mut rows = read_rows(&a.file)?;
    for (at, row) in &mut rows {
        let key = row_key(row).with_context(|| format!("{}: {at}", a.file.display()))?;
        let cert = DeviceCertificate::sign(&maker, &key, &row.model)?;
        row.certificate = iotchain_block::hex0x(cert.signature);
    }
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    write_rows(&a.out, &rows)?;
    eprintln!(
        "certified {} devices as manufacturer {} into {}",
        rows.len(),
        maker.address(),
        a.out.display()
    );
    Ok(())
}

pub(crate) async fn manufacturer(a: ManufacturerArgs) -> anyhow::Result<()> {
    let owner = crate::device::owner(&a.owner_key)?;
    let op = DeviceOp::Manufacturer {
        manufacturer: a.manufacturer,
        authorised: !a.withdraw,
    };
    let (hash, height) = Client::new(&a.node).submit_op(&owner, op).await?;
    println!(
        "{}",
        serde_json::json!({
            "manufacturer": a.manufacturer,
            "authorised": !a.withdraw,
            "transaction": hash,
            "height": height,
        })
    );
    Ok(())
}
