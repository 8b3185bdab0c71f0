//! `iotchain device`: register, rotate, revoke and inspect devices.

use std::{path::PathBuf, process::ExitCode};

use alloy_primitives::{Address, Bytes};
use anyhow::Context;
use clap::{Args, Subcommand};
use iotchain_block::DeviceOp;
use iotchain_crypto::{DevicePublicKey, KeyAlg, KeyFile};
use iotchain_reading::DeviceAddress;

use crate::{DEFAULT_NODE, client::Client};

/// Device commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Register a device under an owner (waits until the registration is final).
    Register(RegisterArgs),
    /// Replace a device's key; its address stays (waits until final).
    Rotate(RotateArgs),
    /// Revoke a device: its readings are rejected from then on (waits until final).
    Revoke(RevokeArgs),
    /// Register every device of a CSV or JSON file, thousands per owner transaction (keys and
    /// certificates checked first; run again after a failure, it skips what is registered).
    Import(crate::device_import::ImportArgs),
    /// Sign a certificate of each device key in a file, as its manufacturer (a factory's step).
    Certify(crate::device_import::CertifyArgs),
    /// Trust (or with --withdraw stop trusting) a manufacturer's certificates for your devices.
    Manufacturer(crate::device_import::ManufacturerArgs),
    /// Show a device.
    Show {
        /// Device address (0x + 40 hex).
        address: String,
        /// Node URL.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
    },
    /// List devices.
    List {
        /// Only devices of this owner address.
        #[arg(long)]
        owner: Option<Address>,
        /// Node URL.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
    },
}

/// Which key a device uses: a key file or a bare public key.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DeviceKeyArg {
    /// Device key file (ed25519 or p256).
    #[arg(long)]
    device_key: Option<PathBuf>,
    /// Device public key as hex (Ed25519: 32 bytes; P-256: SEC1, compressed or uncompressed); needs --alg.
    #[arg(long, requires = "alg")]
    device_pubkey: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Owner key file (secp256k1), authorised in genesis.
    #[arg(long)]
    owner_key: PathBuf,
    #[command(flatten)]
    key: DeviceKeyArg,
    /// Algorithm of --device-pubkey: ed25519 or p256.
    #[arg(long)]
    alg: Option<KeyAlg>,
    /// Device model.
    #[arg(long, default_value = "")]
    model: String,
    /// Firmware hash (hex).
    #[arg(long)]
    firmware_hash: Option<String>,
    /// Label as key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Owner key file (secp256k1).
    #[arg(long)]
    owner_key: PathBuf,
    /// The device's address.
    #[arg(long)]
    device: String,
    #[command(flatten)]
    key: DeviceKeyArg,
    /// Algorithm of --device-pubkey: ed25519 or p256.
    #[arg(long)]
    alg: Option<KeyAlg>,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// Node URL.
    #[arg(long, default_value = DEFAULT_NODE)]
    node: String,
    /// Owner key file (secp256k1).
    #[arg(long)]
    owner_key: PathBuf,
    /// The device's address.
    #[arg(long)]
    device: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

fn device_public_key(key: &DeviceKeyArg, alg: Option<KeyAlg>) -> anyhow::Result<DevicePublicKey> {
    if let Some(path) = &key.device_key {
        return Ok(KeyFile::read(path)?.device_signer()?.public_key());
    }
    let hex = key
        .device_pubkey
        .as_deref()
        .expect("clap requires one of the two");
    let alg = alg
        .and_then(KeyAlg::device_alg)
        .context("--alg must be ed25519 or p256 for a device key")?;
    let bytes = iotchain_block::unhex(hex).context("--device-pubkey is not hex")?;
    Ok(DevicePublicKey::from_bytes(alg, &bytes)?)
}

pub(crate) fn owner(path: &std::path::Path) -> anyhow::Result<iotchain_crypto::OwnerKey> {
    KeyFile::read(path)?
        .owner_key()
        .with_context(|| format!("{} must be an owner (secp256k1) key", path.display()))
}

/// Signs `op` with the owner key, submits it, waits until final and prints the outcome.
async fn submit(
    node: &str,
    owner_key: &std::path::Path,
    device: DeviceAddress,
    op: DeviceOp,
) -> anyhow::Result<()> {
    let (hash, height) = Client::new(node).submit_op(&owner(owner_key)?, op).await?;
    println!(
        "{}",
        serde_json::json!({"device": device.to_string(), "transaction": hash, "height": height})
    );
    Ok(())
}

fn parse_address(s: &str) -> anyhow::Result<DeviceAddress> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a device address (0x + 40 hex digits)"))
}

pub(crate) async fn run(cmd: DeviceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeviceCommand::Register(a) => {
            let public_key = device_public_key(&a.key, a.alg)?;
            let address = public_key.address();
            let firmware_hash = match &a.firmware_hash {
                Some(h) => {
                    Bytes::from(iotchain_block::unhex(h).context("--firmware-hash is not hex")?)
                }
                None => Bytes::new(),
            };
            let op = DeviceOp::Register {
                public_key,
                model: a.model,
                firmware_hash,
                labels: a.labels,
            };
            submit(&a.node, &a.owner_key, address, op).await?;
        }
        DeviceCommand::Rotate(a) => {
            let device = parse_address(&a.device)?;
            let public_key = device_public_key(&a.key, a.alg)?;
            let op = DeviceOp::Rotate { device, public_key };
            submit(&a.node, &a.owner_key, device, op).await?;
        }
        DeviceCommand::Revoke(a) => {
            let device = parse_address(&a.device)?;
            submit(&a.node, &a.owner_key, device, DeviceOp::Revoke { device }).await?;
        }
        DeviceCommand::Import(a) => crate::device_import::import(a).await?,
        DeviceCommand::Certify(a) => crate::device_import::certify(a)?,
        DeviceCommand::Manufacturer(a) => crate::device_import::manufacturer(a).await?,
        DeviceCommand::Show { address, node } => {
            let device = parse_address(&address)?;
            let info = Client::new(&node)
                .get(&format!("/v1/devices/{device}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        DeviceCommand::List { owner, node } => {
            let devices = Client::new(&node).devices(owner).await?;
            if devices.is_empty() {
                eprintln!("no devices registered");
            }
            for d in devices {
                let more = crate::out_line(format_args!(
                    "{}  {:6}  {:8}  last_seq={}  readings={}  owner={}  model={}",
                    d["address"].as_str().unwrap_or("?"),
                    d["alg"].as_str().unwrap_or("?"),
                    d["status"].as_str().unwrap_or("?"),
                    d["last_seq"],
                    d["reading_count"],
                    d["owner"].as_str().unwrap_or("?"),
                    d["model"].as_str().unwrap_or(""),
                ));
                if !more {
                    break;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
