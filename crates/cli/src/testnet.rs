//! `iotchain testnet`: keys, a genesis and node configs for N local validators (and followers)
//! on 127.0.0.1, and with `--run` the validators as processes with a live line per block.

use std::{
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Args;
use iotchain_block::{ChainParams, Genesis, GenesisValidator, SyncBlocks};
use iotchain_crypto::{KeyAlg, KeyFile};

/// Chain id of local testnets.
const TESTNET_CHAIN_ID: u64 = 31_337;

#[derive(Debug, Args)]
pub(crate) struct TestnetArgs {
    /// Number of validators (4 tolerates one faulty validator; 3f+1 tolerates f).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Non-validating nodes that follow the chain (block sync) and serve the API.
    #[arg(long, default_value_t = 0)]
    followers: usize,
    /// Directory for the testnet's files (kept: run again to resume the same chain).
    #[arg(long, default_value = "./iotchain-testnet")]
    dir: PathBuf,
    /// First HTTP port; node i serves HTTP on base+i and p2p on base+100+i.
    #[arg(long, default_value_t = 8600)]
    base_port: u16,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 200)]
    block_interval_ms: u64,
    /// Also start every node as a child process and print a line per finalized block
    /// (Ctrl-C stops them all).
    #[arg(long)]
    run: bool,
}

/// One node's files.
pub(crate) struct NodeFiles {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) http: u16,
}

impl NodeFiles {
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("node.toml")
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

/// The layout of a testnet: what `iotchain testnet` writes and runs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) validators: usize,
    pub(crate) followers: usize,
    pub(crate) dir: PathBuf,
    pub(crate) base_port: u16,
    pub(crate) block_interval_ms: u64,
}

impl From<&TestnetArgs> for Layout {
    fn from(a: &TestnetArgs) -> Self {
        Self {
            validators: a.validators,
            followers: a.followers,
            dir: a.dir.clone(),
            base_port: a.base_port,
            block_interval_ms: a.block_interval_ms,
        }
    }
}

pub(crate) fn nodes(a: &Layout) -> Vec<NodeFiles> {
    (0..a.validators + a.followers)
        .map(|i| {
            let name = if i < a.validators {
                format!("validator-{i}")
            } else {
                format!("follower-{}", i - a.validators)
            };
            NodeFiles {
                dir: a.dir.join(&name),
                name,
                http: a.base_port + i as u16,
            }
        })
        .collect()
}

/// Writes the testnet's files unless the directory already holds them.
pub(crate) fn setup(a: &Layout) -> anyhow::Result<(Genesis, bool)> {
    if a.validators == 0 {
        bail!("a testnet needs at least one validator");
    }
    if usize::from(a.base_port) + 100 + a.validators + a.followers > usize::from(u16::MAX) {
        bail!("--base-port {} leaves no room for the ports", a.base_port);
    }
    let genesis_path = a.dir.join("genesis.json");
    if genesis_path.exists() {
        let genesis = Genesis::read(&genesis_path)?;
        if genesis.validators.len() != a.validators {
            bail!(
                "{} holds a testnet of {} validators; use another --dir for {}",
                a.dir.display(),
                genesis.validators.len(),
                a.validators
            );
        }
        return Ok((genesis, false));
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let owner = KeyFile::generate(KeyAlg::Secp256k1);
    owner.write(&a.dir.join("owner.key"))?;
    let all = nodes(a);
    let mut validators = Vec::new();
    let mut followers = Vec::new();
    for (i, n) in all.iter().enumerate() {
        std::fs::create_dir_all(&n.dir)?;
        let key = KeyFile::generate(KeyAlg::Ed25519);
        key.write(&n.dir.join("validator.key"))?;
        if i >= a.validators {
            followers.push(format!(
                "\"{}\"",
                alloy_primitives::B256::from(key.validator_key()?.public_key())
            ));
        }
        if i < a.validators {
            validators.push(GenesisValidator {
                public_key: key.validator_key()?.public_key().into(),
                address: Some(format!("127.0.0.1:{}", a.base_port + 100 + i as u16)),
                fee_recipient: None,
            });
        }
    }
    let genesis = Genesis {
        chain_id: TESTNET_CHAIN_ID,
        timestamp_ms: crate::send::now_ms(),
        validators,
        owners: vec![owner.owner_key()?.address()],
        manufacturers: vec![],
        params: ChainParams::default(),
        // The owner key is also the testnet's funded Ethereum account, as on the devnet.
        alloc: [(
            owner.owner_key()?.address(),
            crate::devnet::DEV_OWNER_BALANCE,
        )]
        .into(),
    };
    genesis.write(&genesis_path)?;
    for n in &all {
        let peers: Vec<String> = all
            .iter()
            .take(a.validators)
            .filter(|p| p.name != n.name)
            .map(|p| format!("\"http://127.0.0.1:{}\"", p.http))
            .collect();
        let toml = format!(
            "# {name} of a local iotchain testnet (written by `iotchain testnet`).\n\
             data_dir = \"data\"\n\
             http_addr = \"127.0.0.1:{http}\"\n\
             genesis = \"../genesis.json\"\n\
             validator_key = \"validator.key\"\n\
             block_interval_ms = {interval}\n\
             # Other nodes' HTTP APIs: accepted readings are forwarded there, missed blocks synced from there.\n\
             peers = [{peers}]\n\
             # The followers' keys: their relays are taken as relays (validators' always are).\n\
             forwarders = [{forwarders}]\n",
            name = n.name,
            http = n.http,
            interval = a.block_interval_ms,
            peers = peers.join(", "),
            forwarders = followers.join(", "),
        );
        std::fs::write(n.config(), toml)?;
    }
    Ok((genesis, true))
}

/// Starts a node of the testnet as a child process, its log in its directory.
pub(crate) fn spawn_node(n: &NodeFiles) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating the iotchain binary")?;
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(n.dir.join("node.log"))?;
    tokio::process::Command::new(&exe)
        .arg("node")
        .arg("--config")
        .arg(n.config())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", n.name))
}

pub(crate) async fn run(a: TestnetArgs) -> anyhow::Result<ExitCode> {
    let run_nodes = a.run;
    let a = Layout::from(&a);
    let (genesis, fresh) = setup(&a)?;
    let all = nodes(&a);
    println!(
        "iotchain testnet {} in {} (chain id {}, {} validators, {} followers)",
        if fresh { "written" } else { "found" },
        a.dir.display(),
        genesis.chain_id,
        a.validators,
        a.followers
    );
    for n in &all {
        println!(
            "  {:<12} http://127.0.0.1:{}  iotchain node --config {}",
            n.name,
            n.http,
            n.config().display()
        );
    }
    println!(
        "  owner key (registers devices): {}",
        a.dir.join("owner.key").display()
    );
    if !run_nodes {
        println!("start each node with the command above, or run again with --run");
        return Ok(ExitCode::SUCCESS);
    }
    let mut children = Vec::new();
    for n in &all {
        children.push((n.name.clone(), spawn_node(n)?));
    }
    println!(
        "started {} nodes (logs: <dir>/<node>/node.log); Ctrl-C stops them",
        children.len()
    );
    let urls: Vec<String> = all.iter().map(NodeFiles::url).collect();
    let names: Vec<String> = genesis
        .validators
        .iter()
        .map(|v| v.public_key.to_string()[..10].to_string())
        .collect();
    tokio::select! {
        r = print_blocks(&urls, &genesis, &names) => r?,
        r = crate::devnet::shutdown_signal() => r?,
    }
    for (name, mut child) in children {
        if let Some(pid) = child.id() {
            // SIGTERM: let each node finish its block and close its stores.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(Ok(status)) => println!("{name} stopped ({status})"),
            _ => {
                let _ = child.kill().await;
                println!("{name} killed after 20 s");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per finalized block, following whichever node answers.
async fn print_blocks(urls: &[String], genesis: &Genesis, names: &[String]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut next = 1u64;
    let mut source = 0usize;
    loop {
        let url = &urls[source % urls.len()];
        let page: SyncBlocks =
            match iotchain_consensus::sync::fetch(&client, url, next, 2_000).await {
                Ok(p) => p,
                Err(_) => {
                    source += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
        for b in page.blocks {
            let block = iotchain_block::Block::decode_rlp(&b.block)?;
            let h = &block.header;
            let proposer = genesis
                .validators
                .iter()
                .position(|v| v.public_key == h.proposer)
                .map_or("?".to_string(), |i| format!("v{i} {}", names[i]));
            let age = crate::send::now_ms().saturating_sub(h.timestamp_ms);
            println!(
                "block {:>6}  {:>5} readings {:>3} txs  proposer {proposer}  view {:>6}  signers {}/{}  final +{age} ms",
                h.height,
                h.reading_count,
                h.transaction_count,
                b.certificate.view,
                b.certificate.signatures.len(),
                genesis.validators.len(),
            );
            next = h.height + 1;
        }
    }
}
