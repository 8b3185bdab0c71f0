//! `iotchain keys`: create key files.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use clap::Subcommand;
use iotchain_crypto::{KeyAlg, KeyFile};

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a key and write it as a JSON key file (alg, public_key, secret_key, address).
    New {
        /// ed25519 (devices, validators), p256 (devices) or secp256k1 (owners).
        #[arg(long)]
        alg: KeyAlg,
        /// Where to write the key file (mode 0600). Refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's public part.
    Show {
        /// The key file.
        file: PathBuf,
    },
}

pub(crate) fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::New { alg, out } => {
            if out.exists() {
                bail!("{} exists: refusing to overwrite a key", out.display());
            }
            let file = KeyFile::generate(alg);
            file.write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({"alg": file.alg, "public_key": file.public_key, "address": file.address, "file": out})
            );
        }
        KeysCommand::Show { file } => {
            let key = KeyFile::read(&file)?;
            println!(
                "{}",
                serde_json::json!({"alg": key.alg, "public_key": key.public_key, "address": key.address})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
