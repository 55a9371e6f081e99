//! `peering-controld`: serves the API over a SQLite store, and issues tokens.
//!
//! ```text
//! peering-controld serve --db PATH [--listen 127.0.0.1:7780]
//!                        [--regions us-east-1,us-west-2] [--agent-token-file PATH]
//! peering-controld create-account --db PATH --account 123456789012   (alias: create-token)
//! peering-controld revoke-tokens --db PATH --account 123456789012
//! ```

use crate::api::{router, serve, App};
use crate::control::account::AccountId;
use crate::control::clock::{Clock, SystemClock, HOUR};
use crate::control::config::Config;
use crate::control::store::{SqliteStore, Store};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default listen address: loopback only. Exposing the API on other
/// addresses is an explicit choice (and should sit behind TLS).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

/// How often terminal peerings past their retention are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(HOUR);

#[derive(Debug, Parser)]
#[command(
    name = "peering-controld",
    version,
    about = "VPC peering control-plane daemon"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP/JSON API.
    Serve {
        /// SQLite database (created if missing).
        #[arg(long, env = "PEERING_DB")]
        db: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Regions of the deployment (comma separated). A new database takes
        /// them as given; for an existing one, missing regions are added
        /// (regions are never removed).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// File holding the token agents use to read region views
        /// (GET /v1/regions/{region}/view). Without it that endpoint is off.
        #[arg(long)]
        agent_token_file: Option<PathBuf>,
        /// Log more (debug level).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Issue a new API token for an account and print it (once).
    #[command(visible_alias = "create-token")]
    CreateAccount {
        #[arg(long, env = "PEERING_DB")]
        db: PathBuf,
        /// 12-digit account id.
        #[arg(long)]
        account: String,
    },
    /// Revoke every token of an account.
    RevokeTokens {
        #[arg(long, env = "PEERING_DB")]
        db: PathBuf,
        #[arg(long)]
        account: String,
    },
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<()> {
    run(Args::parse())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Serve {
            db,
            listen,
            regions,
            agent_token_file,
            verbose,
        } => {
            init_logging(verbose);
            let store = open_store(&db, &regions)?;
            let agent_token = agent_token_file.map(|p| read_agent_token(&p)).transpose()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve_forever(store, listen, agent_token))
        }
        Command::CreateAccount { db, account } => {
            let account = AccountId::parse(&account).map_err(|e| anyhow::anyhow!(e.message))?;
            let store = open_store(&db, &[])?;
            let token = store.create_token(&account)?;
            println!("{token}");
            Ok(())
        }
        Command::RevokeTokens { db, account } => {
            let account = AccountId::parse(&account).map_err(|e| anyhow::anyhow!(e.message))?;
            let store = open_store(&db, &[])?;
            let n = store.revoke_tokens(&account)?;
            println!("revoked {n} token(s) of {account}");
            Ok(())
        }
    }
}

fn init_logging(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the store; `regions` (if any) configure a new database and are
/// added to an existing one.
pub fn open_store(db: &Path, regions: &[String]) -> anyhow::Result<SqliteStore> {
    let mut config = Config::default();
    if !regions.is_empty() {
        for r in regions {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                bail!("invalid region name {r:?}");
            }
        }
        config.regions = regions.to_vec();
    }
    let store = SqliteStore::open(db, config)
        .with_context(|| format!("opening database {}", db.display()))?;
    if !regions.is_empty() {
        let (added, _) = store.transact(|s| {
            let missing: Vec<String> = regions
                .iter()
                .filter(|r| !s.config.regions.contains(r))
                .cloned()
                .collect();
            s.config.regions.extend(missing.iter().cloned());
            Ok(missing)
        })?;
        if !added.is_empty() {
            tracing::info!(regions = ?added, "added regions to the configuration");
        }
    }
    Ok(store)
}

fn read_agent_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading agent token file {}", path.display()))?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        bail!(
            "agent token in {} is too short (need 16+ characters)",
            path.display()
        );
    }
    Ok(token)
}

async fn serve_forever(
    store: SqliteStore,
    listen: SocketAddr,
    agent_token: Option<String>,
) -> anyhow::Result<()> {
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let regions = store.load()?.config.regions;
    tracing::info!(
        listen = %listener.local_addr()?,
        regions = %regions.join(","),
        agent_views = agent_token.is_some(),
        "peering-controld listening"
    );
    tokio::spawn(purge_loop(store.clone()));
    let mut app = App::new(store);
    app.agent_token = agent_token;
    serve(listener, router(app), shutdown_signal()).await?;
    tracing::info!("peering-controld stopped");
    Ok(())
}

/// Forgets terminal peerings nobody can see any more, once per
/// [`PURGE_INTERVAL`].
async fn purge_loop<S: Store + Send + Sync + 'static>(store: Arc<S>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let store = store.clone();
        let now = SystemClock.now();
        let res =
            tokio::task::spawn_blocking(move || store.transact(|s| Ok(s.purge_peerings(now))))
                .await;
        match res {
            Ok(Ok((n, _))) if n > 0 => tracing::info!(purged = n, "purged old peerings"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "purging peerings failed"),
            Err(e) => tracing::warn!(error = %e, "purge task failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
