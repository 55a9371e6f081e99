//! `peering-controld`: serves the API over a SQLite store, and issues tokens.
//!
//! ```text
//! peering-controld serve --db PATH [--listen 127.0.0.1:7780]
//! peering-controld serve --store etcd://HOST:PORT[,HOST:PORT...] --listen ADDR --tls-cert PEM --tls-key PEM
//!                        [--etcd-cacert PEM [--etcd-cert PEM --etcd-key PEM]]
//!                        [--tls-cert PEM --tls-key PEM]
//!                        [--regions us-east-1,us-west-2]
//!                        [--key-rotation 10m] [--cipher aes-256-gcm|chacha20-poly1305]
//! peering-controld create-account --db PATH --account 123456789012   (alias: create-token)
//! peering-controld revoke-tokens --db PATH --account 123456789012
//! peering-controld create-gateway --db PATH --region us-east-1 [--out FILE]
//! peering-controld revoke-gateway --db PATH --credential-id gwc-...
//! ```
//!
//! The store is a [`crate::control::controller::Controller`] over the SQLite
//! [`crate::control::store::SqliteKv`] at `--db`, or over the store `--store`
//! names (`sqlite:PATH`, or an etcd cluster shared by several controllers:
//! see [`crate::control::store::url`]); exactly one of the two. The singleton loops (key
//! rotation and erasure, purging old peerings) run a step only while
//! [`crate::control::controller::Controller::lead`] says this process
//! leads; expired gateway registrations are deleted by the store itself
//! (see `sqlite_kv`).

use crate::api::{gateway, router, serve, serve_tls, App};
use crate::control::account::AccountId;
use crate::control::clock::{unix_ms, Clock, SystemClock, HOUR};
use crate::control::config::Config;
use crate::control::state::State;
use crate::control::store::codec;
use crate::control::store::etcd::tls::EtcdTlsFiles;
use crate::control::store::url::{open_kv, StoreUrl};
use crate::control::store::{SqliteStore, Store, TunnelSettings};
use crate::tunnel::key::{Algorithm, KeySource, SystemKeySource};
use crate::tunnel::schedule::{KeySchedule, PolicyError, RotationPolicy};
use crate::tunnel::Millis;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default listen address: loopback only. Other addresses need TLS
/// ([`check_listen`]).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

/// How long requests in flight may run on after SIGTERM or SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often terminal peerings past their retention are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(HOUR);

/// Longest sleep of the key-rotation loop between steps, so that key
/// erasure and early-rotation requests are handled within a second even
/// when the next planned rotation is minutes away. Also the retry delay
/// after a store error.
pub const MAX_ROTATION_SLEEP: Millis = 1000;

/// AEAD of newly generated tunnel keys (`--cipher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cipher {
    /// AES-256-GCM (hardware-accelerated on most servers).
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (for CPUs without AES instructions).
    #[value(name = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl From<Cipher> for Algorithm {
    fn from(cipher: Cipher) -> Self {
        match cipher {
            Cipher::Aes256Gcm => Algorithm::Aes256Gcm,
            Cipher::ChaCha20Poly1305 => Algorithm::ChaCha20Poly1305,
        }
    }
}

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
        #[command(flatten)]
        db: StoreArg,
        /// Address to listen on. Anything but a loopback address needs
        /// --tls-cert and --tls-key.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Serve HTTPS with this certificate chain (PEM, server certificate
        /// first).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Private key of --tls-cert (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Regions of the deployment (comma separated). A new database takes
        /// them as given; for an existing one, missing regions are added
        /// (regions are never removed).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// How often the deployment-wide tunnel key is rotated: a number
        /// with a unit (ms, s, m or h), e.g. 600s, 10m, 1500ms; at least 1s.
        #[arg(long, default_value = "10m", value_parser = parse_key_rotation)]
        key_rotation: RotationPolicy,
        /// AEAD of newly generated tunnel keys.
        #[arg(long, value_enum, default_value_t = Cipher::Aes256Gcm)]
        cipher: Cipher,
        /// Log more (debug level).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Issue a new API token for an account and print it (once).
    #[command(visible_alias = "create-token")]
    CreateAccount {
        #[command(flatten)]
        db: StoreArg,
        /// 12-digit account id.
        #[arg(long)]
        account: String,
    },
    /// Revoke every token of an account.
    RevokeTokens {
        #[command(flatten)]
        db: StoreArg,
        #[arg(long)]
        account: String,
    },
    /// Issue a credential for the gateway (agent) of a region, as JSON
    /// {"credential_id","region","secret"}: printed, or written to --out
    /// (mode 0600). The secret is shown once; only its hash is stored.
    CreateGateway {
        #[command(flatten)]
        db: StoreArg,
        #[arg(long)]
        region: String,
        /// File to write the credential to (created with mode 0600).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a gateway credential.
    RevokeGateway {
        #[command(flatten)]
        db: StoreArg,
        #[arg(long)]
        credential_id: String,
    },
}

/// Where the state lives: exactly one of `--db PATH` (SQLite) and
/// `--store URL` (`sqlite:PATH` or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`),
/// and for etcd, how to reach it over TLS.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArg {
    #[command(flatten)]
    place: StorePlace,
    #[command(flatten)]
    etcd_tls: EtcdTlsArgs,
}

#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
struct StorePlace {
    /// SQLite database (created if missing).
    #[arg(long, env = "PEERING_DB")]
    db: Option<PathBuf>,
    /// Store URL: sqlite:PATH, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]
    /// for a store shared by several controllers.
    #[arg(long, env = "PEERING_STORE")]
    store: Option<String>,
}

/// TLS to etcd, in etcdctl's terms; TLS is on when --etcd-cacert is given.
#[derive(Debug, Clone, clap::Args)]
struct EtcdTlsArgs {
    /// Reach etcd over TLS, verifying its members against this CA (PEM).
    /// Needed for any etcd endpoint that is not loopback.
    #[arg(long, env = "PEERING_ETCD_CACERT")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM chain) presented to etcd, for a cluster
    /// running with --client-cert-auth; needs --etcd-key.
    #[arg(long, env = "PEERING_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Private key of --etcd-cert (PEM).
    #[arg(long, env = "PEERING_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
}

impl StoreArg {
    /// The store these arguments name.
    pub fn url(&self) -> anyhow::Result<StoreUrl> {
        let files = EtcdTlsFiles {
            cacert: self.etcd_tls.etcd_cacert.clone(),
            cert: self.etcd_tls.etcd_cert.clone(),
            key: self.etcd_tls.etcd_key.clone(),
        };
        let url = match (&self.place.db, &self.place.store) {
            (Some(db), None) => StoreUrl::Sqlite(db.clone()),
            (None, Some(url)) => {
                StoreUrl::parse(url).with_context(|| format!("invalid --store {url:?}"))?
            }
            _ => bail!("give exactly one of --db PATH and --store URL"),
        };
        match url {
            StoreUrl::Etcd {
                endpoints, prefix, ..
            } => Ok(StoreUrl::Etcd {
                endpoints,
                prefix,
                tls: files,
            }),
            StoreUrl::Sqlite(_) if !files.is_empty() => bail!(
                "--etcd-cacert, --etcd-cert and --etcd-key (PEERING_ETCD_*) apply to an \
                 etcd:// store only"
            ),
            sqlite => Ok(sqlite),
        }
    }
}

/// A gateway credential as `create-gateway` writes it (and agents read it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialFile {
    pub credential_id: String,
    pub region: String,
    pub secret: String,
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
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
            tls_cert,
            tls_key,
            regions,
            key_rotation,
            cipher,
            verbose,
        } => {
            init_logging(verbose);
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(crate::api::tls::server_config(&cert, &key)?),
                _ => None,
            };
            check_listen(listen, tls.is_some())?;
            let store = open_store(&db, &regions)?;
            let tunnel = TunnelSettings {
                policy: key_rotation,
                algorithm: cipher.into(),
            };
            store
                .set_tunnel_settings(&tunnel)
                .context("storing the tunnel settings")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let result = runtime.block_on(serve_forever(store, listen, tls, tunnel));
            // Requests still running (store work on the blocking pool)
            // get the same grace, not more.
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            result
        }
        Command::CreateAccount { db, account } => {
            let account = AccountId::parse(&account).map_err(|e| anyhow::anyhow!(e.message))?;
            let store = open_store(&db, &[])?;
            let token = store.create_token(&account)?;
            crate::out::println(&token.to_string())?;
            Ok(())
        }
        Command::RevokeTokens { db, account } => {
            let account = AccountId::parse(&account).map_err(|e| anyhow::anyhow!(e.message))?;
            let store = open_store(&db, &[])?;
            let n = store.revoke_tokens(&account)?;
            crate::out::println(&format!("revoked {n} token(s) of {account}"))?;
            Ok(())
        }
        Command::CreateGateway { db, region, out } => {
            let store = open_store(&db, &[])?;
            let issued = store
                .create_gateway_credential(&region)
                .with_context(|| format!("issuing a gateway credential for {region}"))?;
            let file = CredentialFile {
                credential_id: issued.identity.credential_id,
                region: issued.identity.region,
                secret: issued.secret,
            };
            let json = serde_json::to_string_pretty(&file)? + "\n";
            match out {
                Some(path) => {
                    write_private(&path, &json)?;
                    crate::out::println(&format!(
                        "wrote gateway credential {} for {} to {}",
                        file.credential_id,
                        file.region,
                        path.display()
                    ))?;
                }
                None => crate::out::println(json.trim_end())?,
            }
            Ok(())
        }
        Command::RevokeGateway { db, credential_id } => {
            let store = open_store(&db, &[])?;
            if !store.revoke_gateway_credential(&credential_id)? {
                bail!("no gateway credential {credential_id:?}");
            }
            crate::out::println(&format!("revoked gateway credential {credential_id}"))?;
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
pub fn open_store(db: &StoreArg, regions: &[String]) -> anyhow::Result<SqliteStore> {
    open_store_url(&db.url()?, regions)
}

/// [`open_store`] for a store URL (SQLite or etcd).
pub fn open_store_url(url: &StoreUrl, regions: &[String]) -> anyhow::Result<SqliteStore> {
    let mut config = Config::default();
    if !regions.is_empty() {
        for r in regions {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                bail!("invalid region name {r:?}");
            }
        }
        config.regions = regions.to_vec();
    }
    let kv = open_kv(url, || codec::state_entries(&State::new(config.clone())))
        .with_context(|| format!("opening the store {url}"))?;
    let store = SqliteStore::new(kv).with_context(|| format!("reading the store {url}"))?;
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

/// Refuses to serve plain HTTP on an address other hosts can reach:
/// account tokens, gateway credentials and tunnel keys would cross the
/// network in clear.
pub fn check_listen(listen: SocketAddr, tls: bool) -> anyhow::Result<()> {
    if !tls && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without TLS: tokens and tunnel keys would cross \
             the network in clear. Give --tls-cert and --tls-key, or listen on a loopback \
             address (127.0.0.1)"
        );
    }
    Ok(())
}

async fn serve_forever(
    store: SqliteStore,
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    tunnel: TunnelSettings,
) -> anyhow::Result<()> {
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let regions = store.load()?.config.regions;
    tracing::info!(
        listen = %listener.local_addr()?,
        regions = %regions.join(","),
        tls = tls.is_some(),
        key_rotation_ms = tunnel.policy.interval(),
        "peering-controld listening"
    );
    tokio::spawn(purge_loop(store.clone()));
    tokio::spawn(key_rotation_loop(store.clone(), tunnel));
    // The account API and the gateway API on one listener; each refuses
    // the other's credentials.
    let routes = gateway::compose(router(App::new(store.clone())), store.clone(), store);
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    };
    let serving = async move {
        match tls {
            Some(config) => serve_tls(listener, config, routes, signal).await,
            None => serve(listener, routes, signal).await,
        }
    };
    // Graceful shutdown waits for requests in flight, and a gateway's
    // long-poll may last 30 s: after the grace, the rest are cut (their
    // gateways move to another controller).
    let grace = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serving => served?,
        _ = grace => tracing::info!("closing the connections still open (long-polls)"),
    }
    tracing::info!("peering-controld stopped");
    Ok(())
}

/// Forgets terminal peerings nobody can see any more, once per
/// [`PURGE_INTERVAL`].
async fn purge_loop(store: Arc<SqliteStore>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let store = store.clone();
        let now = SystemClock.now();
        let res = tokio::task::spawn_blocking(move || {
            if !store.lead()? {
                return Ok((0, 0));
            }
            store.transact(|s| Ok(s.purge_peerings(now)))
        })
        .await;
        match res {
            Ok(Ok((n, _))) if n > 0 => tracing::info!(purged = n, "purged old peerings"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "purging peerings failed"),
            Err(e) => tracing::warn!(error = %e, "purge task failed"),
        }
    }
}

/// Parses a duration such as `1500ms`, `2s`, `10m` or `1h` into
/// milliseconds. A unit is required; only whole numbers are accepted.
pub fn parse_duration_ms(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected a whole number and a unit (ms, s, m or h), e.g. 10m"
        ));
    }
    let scale: Millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 60 * 60 * 1000,
        "" => return Err(format!("duration {text:?} needs a unit: ms, s, m or h")),
        _ => {
            return Err(format!(
                "duration {text:?} has an unknown unit {unit:?}: use ms, s, m or h"
            ))
        }
    };
    digits
        .parse::<Millis>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// `--key-rotation`: a duration of at least one second, turned into a
/// policy by [`RotationPolicy::with_interval`].
pub fn parse_key_rotation(text: &str) -> Result<RotationPolicy, String> {
    let interval = parse_duration_ms(text)?;
    RotationPolicy::with_interval(interval).map_err(|e| match e {
        PolicyError::IntervalTooShort => format!(
            "key rotation interval {} is below the minimum of 1s",
            text.trim()
        ),
        other => format!("key rotation interval {}: {other}", text.trim()),
    })
}

/// How long the rotation loop sleeps after a step at `now` that asked to be
/// woken at `wake_at`: until then, but at most [`MAX_ROTATION_SLEEP`] (and
/// at least 1 ms, so a planner bug cannot make it spin).
pub fn rotation_sleep(now: Millis, wake_at: Millis) -> Millis {
    wake_at.saturating_sub(now).clamp(1, MAX_ROTATION_SLEEP)
}

/// One pass of the key-rotation loop at time `now`: erases expired keys,
/// takes a pending early-rotation request, and publishes the next key if
/// the schedule says so. Returns when the schedule wants to run next.
///
/// The store is the source of truth: `schedule` is re-initialised from
/// [`SqliteStore::latest_epoch`] whenever they disagree (after a failed
/// publication, which `poll` already counted, or when another controld on
/// the same database published), so an error never leaves it out of step.
pub fn rotation_step(
    store: &SqliteStore,
    schedule: &mut KeySchedule,
    now: Millis,
    source: &mut dyn KeySource,
) -> anyhow::Result<Millis> {
    let stored = store
        .latest_epoch()
        .context("reading the latest key epoch")?;
    if schedule.latest() != stored {
        *schedule = KeySchedule::new(schedule.policy, schedule.algorithm, stored);
    }
    // Erase before publishing: when lead + overlap equals the interval, key
    // N is erased at the very time key N + 2 is published, and erasing
    // first keeps at most three keys held.
    let erased = store
        .erase_expired_keys(now)
        .context("erasing expired tunnel keys")?;
    if erased > 0 {
        tracing::info!(erased, "erased expired tunnel keys");
    }
    let urgent = store
        .take_rotation_request()
        .context("reading rotation requests")?;
    if urgent {
        tracing::debug!("early key rotation requested");
    }
    let mut published = false;
    let result = match schedule.poll(now, urgent, source) {
        Ok((Some(key), wake_at)) => match store.publish_key(&key) {
            Ok(()) => {
                published = true;
                // Epoch and activation time only: never the key.
                tracing::info!(
                    epoch = key.epoch,
                    activate_at = key.activate_at,
                    early = urgent,
                    "published tunnel key"
                );
                Ok(wake_at)
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("publishing key epoch {}", key.epoch)))
            }
        },
        Ok((None, wake_at)) => Ok(wake_at),
        Err(e) => Err(anyhow::Error::new(e).context("planning the next tunnel key")),
    };
    // An early rotation may have to wait until the previous key is erased
    // (three-key limit): put the request back so it survives until a key is
    // published for it, even across a restart. If a newer key is already
    // published but not yet active, that key supersedes the one whose
    // limit was reached, and the request is satisfied.
    let pending = stored.is_some_and(|latest| latest.activate_at > now);
    if urgent && !published && !pending {
        store
            .request_rotation()
            .context("keeping the rotation request")?;
    }
    result
}

/// Publishes and erases tunnel keys on the schedule of `tunnel.policy`.
/// Store errors are logged and retried after [`MAX_ROTATION_SLEEP`]; they
/// never stop the loop.
///
/// Each step runs on the blocking pool (`spawn_blocking`), like the API
/// handlers and [`purge_loop`]: its SQLite calls are short, but each takes
/// the store's connection mutex, a write may wait up to the busy timeout
/// for another process's write lock, and the checkpoint after erasure waits
/// for readers. None of that may stall an async worker serving the API.
async fn key_rotation_loop(store: Arc<SqliteStore>, tunnel: TunnelSettings) {
    let fresh = || KeySchedule::new(tunnel.policy, tunnel.algorithm, None);
    // `rotation_step` loads the latest epoch from the store on first use.
    let mut state = Some((fresh(), SystemKeySource::new()));
    let mut leading = false;
    loop {
        let (mut schedule, mut source) = state
            .take()
            .unwrap_or_else(|| (fresh(), SystemKeySource::new()));
        let now = unix_ms();
        let task_store = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            let lead = task_store.lead();
            let leads = matches!(lead, Ok(true));
            let res = match lead {
                Ok(true) => rotation_step(&task_store, &mut schedule, now, &mut source),
                // Another process rotates; look again shortly.
                Ok(false) => Ok(now + MAX_ROTATION_SLEEP),
                Err(e) => Err(anyhow::Error::new(e).context("campaigning for the rotation")),
            };
            (schedule, source, res, leads)
        })
        .await;
        let sleep = match res {
            Ok((schedule, source, res, lead)) => {
                if lead != leading {
                    // Operators (and the multi-host lab) find the rotation
                    // leader by this line.
                    tracing::info!(
                        leading = lead,
                        "singleton duties (key rotation) {}",
                        if lead { "taken" } else { "given up" }
                    );
                    leading = lead;
                }
                // A process that stops leading forgets its schedule: when it
                // leads again, it reloads the latest epoch from the store
                // (another controller may have rotated meanwhile).
                state = Some((if lead { schedule } else { fresh() }, source));
                match res {
                    Ok(wake_at) => rotation_sleep(now, wake_at),
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "tunnel key rotation failed; retrying"
                        );
                        MAX_ROTATION_SLEEP
                    }
                }
            }
            // A panicked step lost its schedule; the next one rebuilds it
            // from the store.
            Err(e) => {
                tracing::warn!(error = %e, "tunnel key rotation task failed; retrying");
                MAX_ROTATION_SLEEP
            }
        };
        tokio::time::sleep(Duration::from_millis(sleep)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::error::KeyGenError;
    use crate::tunnel::key::{KeyMaterial, KEY_LEN};
    use crate::tunnel::schedule::PublishedEpoch;
    use std::collections::BTreeMap;

    /// Deterministic keys: every byte is the generation count.
    struct CountingSource(u8);

    impl KeySource for CountingSource {
        fn generate(&mut self) -> Result<KeyMaterial, KeyGenError> {
            self.0 = self.0.wrapping_add(1);
            Ok(KeyMaterial::from_bytes([self.0; KEY_LEN]))
        }
    }

    /// A store in a fresh directory under the temp dir, removed on drop.
    struct TempStore {
        dir: PathBuf,
        store: SqliteStore,
    }

    impl TempStore {
        fn new(name: &str, settings: &TunnelSettings) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "peering-controld-test-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let store = SqliteStore::open(dir.join("state.db"), Config::default()).unwrap();
            store.set_tunnel_settings(settings).unwrap();
            TempStore { dir, store }
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn two_second_settings() -> TunnelSettings {
        TunnelSettings {
            policy: RotationPolicy::with_interval(2000).unwrap(),
            algorithm: Algorithm::ChaCha20Poly1305,
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("600s"), Ok(600_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("1500ms"), Ok(1500));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms(" 0s "), Ok(0));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 m",
            "10min",
            "ten",
            "99999999999999999999ms",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration_ms("18446744073709551615s")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn key_rotation_flag_refuses_below_one_second() {
        assert_eq!(
            parse_key_rotation("1s"),
            RotationPolicy::with_interval(1000).map_err(|_| String::new())
        );
        assert_eq!(parse_key_rotation("10m"), Ok(RotationPolicy::default()));
        let err = parse_key_rotation("999ms").unwrap_err();
        assert!(err.contains("minimum of 1s"), "{err}");
        assert!(parse_key_rotation("0s").is_err());
    }

    #[test]
    fn serve_flags_default_and_parse() {
        let args = Args::try_parse_from(["peering-controld", "serve", "--db", "x.db"]).unwrap();
        let Command::Serve {
            key_rotation,
            cipher,
            ..
        } = args.command
        else {
            panic!("not serve");
        };
        assert_eq!(key_rotation, RotationPolicy::default());
        assert_eq!(Algorithm::from(cipher), Algorithm::Aes256Gcm);
        let args = Args::try_parse_from([
            "peering-controld",
            "serve",
            "--db",
            "x.db",
            "--key-rotation",
            "1500ms",
            "--cipher",
            "chacha20-poly1305",
        ])
        .unwrap();
        let Command::Serve {
            key_rotation,
            cipher,
            ..
        } = args.command
        else {
            panic!("not serve");
        };
        assert_eq!(key_rotation.interval(), 1500);
        assert_eq!(cipher, Cipher::ChaCha20Poly1305);
        let err = Args::try_parse_from([
            "peering-controld",
            "serve",
            "--db",
            "x.db",
            "--key-rotation",
            "500ms",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("minimum of 1s"), "{err}");
        assert!(Args::try_parse_from([
            "peering-controld",
            "serve",
            "--db",
            "x.db",
            "--cipher",
            "des"
        ])
        .is_err());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        check_listen(at("127.0.0.1:7780"), false).unwrap();
        check_listen(at("127.0.0.2:7780"), false).unwrap();
        check_listen(at("[::1]:7780"), false).unwrap();
        for addr in ["0.0.0.0:7780", "198.18.0.1:7780", "[::]:7780"] {
            let err = check_listen(at(addr), false).unwrap_err().to_string();
            assert!(err.contains("without TLS"), "{err}");
            check_listen(at(addr), true).unwrap();
        }
        let args = Args::try_parse_from([
            "peering-controld",
            "serve",
            "--db",
            "x.db",
            "--tls-cert",
            "c.pem",
        ]);
        assert!(args.is_err(), "--tls-cert needs --tls-key");
    }

    #[test]
    fn rotation_loop_with_fake_clock() {
        let settings = two_second_settings();
        let policy = settings.policy;
        assert_eq!((policy.lead(), policy.overlap()), (500, 500));
        let tmp = TempStore::new("rotation-loop", &settings);
        let store = &tmp.store;
        let mut schedule = KeySchedule::new(policy, settings.algorithm, None);
        let mut source = CountingSource(0);
        let start: Millis = 1_700_000_000_000;
        let mut now = start;
        let mut previous_step = None;
        // epoch -> (published at, activate_at)
        let mut seen: BTreeMap<u32, (Millis, Millis)> = BTreeMap::new();
        let mut erased = Vec::new();
        let mut held_before: Vec<u32> = Vec::new();
        while now <= start + 10_000 {
            let wake_at = rotation_step(store, &mut schedule, now, &mut source).unwrap();
            assert!(wake_at > now);
            let keys = store.tunnel_keys().unwrap();
            assert!(keys.len() <= 3, "{} keys held at {now}", keys.len());
            let held: Vec<u32> = keys.iter().map(|k| k.epoch).collect();
            for key in &keys {
                assert_eq!(key.algorithm, Algorithm::ChaCha20Poly1305);
                seen.entry(key.epoch).or_insert_with(|| {
                    // Published at least `lead` before use.
                    assert!(
                        key.activate_at >= now + policy.lead(),
                        "epoch {}",
                        key.epoch
                    );
                    (now, key.activate_at)
                });
            }
            for gone in held_before.iter().filter(|e| !held.contains(e)) {
                let (_, successor_activate_at) = seen[&(gone + 1)];
                let erase_at = policy.erase_at(successor_activate_at);
                // Erased no earlier than its erase time, and at the first
                // step after it.
                assert!(now >= erase_at, "epoch {gone} erased at {now}");
                assert!(previous_step.is_some_and(|p| p < erase_at));
                erased.push(*gone);
            }
            held_before = held;
            previous_step = Some(now);
            now += rotation_sleep(now, wake_at);
        }
        let epochs: Vec<u32> = seen.keys().copied().collect();
        assert_eq!(epochs, (1..=epochs.len() as u32).collect::<Vec<_>>());
        assert!(epochs.len() >= 5, "{epochs:?}");
        let activations: Vec<Millis> = seen.values().map(|&(_, a)| a).collect();
        assert!(activations.windows(2).all(|w| w[1] > w[0]));
        assert!(erased.len() >= 3, "{erased:?}");
        // A restarted controld picks up where the store is.
        let mut restarted = KeySchedule::new(policy, settings.algorithm, None);
        rotation_step(store, &mut restarted, now, &mut source).unwrap();
        let latest = store.latest_epoch().unwrap().unwrap();
        assert_eq!(latest.epoch as usize, epochs.len());
        assert_eq!(restarted.latest(), Some(latest));
    }

    #[test]
    fn early_rotation_request_is_kept_until_served() {
        let settings = two_second_settings();
        let tmp = TempStore::new("rotation-early", &settings);
        let store = &tmp.store;
        let mut schedule = KeySchedule::new(settings.policy, settings.algorithm, None);
        let mut source = CountingSource(0);
        let t: Millis = 1_000_000;
        let step = |schedule: &mut KeySchedule, source: &mut CountingSource, now| {
            rotation_step(store, schedule, now, source).unwrap()
        };
        step(&mut schedule, &mut source, t);
        let first = PublishedEpoch {
            epoch: 1,
            activate_at: t + 500,
        };
        assert_eq!(store.latest_epoch().unwrap(), Some(first));

        // Requested while epoch 1 is still pending: epoch 1 supersedes the
        // exhausted key, so the request is dropped.
        store.request_rotation().unwrap();
        step(&mut schedule, &mut source, t + 100);
        assert!(!store.take_rotation_request().unwrap());
        assert_eq!(store.latest_epoch().unwrap(), Some(first));

        // Epoch 1 active; publish epoch 2 to have a predecessor to wait for.
        step(&mut schedule, &mut source, t + 2000);
        assert_eq!(store.latest_epoch().unwrap().unwrap().activate_at, t + 2500);
        // Requested while epoch 1 is not erased yet (t + 3000): kept.
        store.request_rotation().unwrap();
        step(&mut schedule, &mut source, t + 2600);
        assert_eq!(store.latest_epoch().unwrap().unwrap().epoch, 2);
        step(&mut schedule, &mut source, t + 2900);
        assert_eq!(store.latest_epoch().unwrap().unwrap().epoch, 2);
        // At t + 3000 epoch 1 is erased and epoch 3 published early (the
        // regular activation would be t + 4500).
        step(&mut schedule, &mut source, t + 3000);
        assert_eq!(
            store.latest_epoch().unwrap(),
            Some(PublishedEpoch {
                epoch: 3,
                activate_at: t + 3500
            })
        );
        let held: Vec<u32> = store
            .tunnel_keys()
            .unwrap()
            .iter()
            .map(|k| k.epoch)
            .collect();
        assert_eq!(held, vec![2, 3]);
        assert!(!store.take_rotation_request().unwrap());
    }

    #[test]
    fn rotation_step_resyncs_after_another_publisher() {
        let settings = two_second_settings();
        let tmp = TempStore::new("rotation-resync", &settings);
        let store = &tmp.store;
        let mut schedule = KeySchedule::new(settings.policy, settings.algorithm, None);
        let mut source = CountingSource(0);
        rotation_step(store, &mut schedule, 10_000, &mut source).unwrap();
        // Another controld published epoch 2 meanwhile.
        let mut other = KeySchedule::new(
            settings.policy,
            settings.algorithm,
            store.latest_epoch().unwrap(),
        );
        rotation_step(store, &mut other, 12_000, &mut CountingSource(100)).unwrap();
        assert_eq!(store.latest_epoch().unwrap().unwrap().epoch, 2);
        // Our schedule still believes epoch 1 is the latest; the step must
        // not fail nor publish a second epoch 2.
        rotation_step(store, &mut schedule, 12_100, &mut source).unwrap();
        assert_eq!(schedule.latest(), store.latest_epoch().unwrap());
        let epochs: Vec<u32> = store
            .tunnel_keys()
            .unwrap()
            .iter()
            .map(|k| k.epoch)
            .collect();
        assert_eq!(epochs, vec![1, 2]);
    }

    #[test]
    fn etcd_tls_flags_go_with_an_etcd_store() {
        let url = |extra: &[&str]| {
            let mut argv = vec!["peering-controld", "revoke-tokens", "--account", "1"];
            argv.extend_from_slice(extra);
            match Args::try_parse_from(argv).expect("parses").command {
                Command::RevokeTokens { db, .. } => db.url().map_err(|e| format!("{e:#}")),
                _ => panic!("not revoke-tokens"),
            }
        };
        let got = url(&[
            "--store",
            "etcd://198.18.250.10/lab",
            "--etcd-cacert",
            "ca.pem",
            "--etcd-cert",
            "c.pem",
            "--etcd-key",
            "c.key",
        ]);
        let want = EtcdTlsFiles {
            cacert: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            key: Some("c.key".into()),
        };
        assert!(
            matches!(&got, Ok(StoreUrl::Etcd { tls, .. }) if *tls == want),
            "{got:?}"
        );
        // Checked when the store is opened, not by the parser: one rule
        // for flags and environment alike.
        let half = url(&["--store", "etcd://h", "--etcd-cert", "c.pem"]);
        assert!(matches!(half, Ok(StoreUrl::Etcd { .. })), "{half:?}");
        let err = url(&["--db", "x.db", "--etcd-cacert", "ca.pem"]).unwrap_err();
        assert!(err.contains("etcd:// store only"), "{err}");
    }

    #[test]
    fn a_plain_etcd_store_beyond_loopback_is_refused_before_opening() {
        let url = StoreUrl::parse("etcd://198.18.250.10:2379/lab").unwrap();
        let Err(err) = open_store_url(&url, &[]) else {
            panic!("opened");
        };
        let err = format!("{err:#}");
        assert!(err.contains("without TLS"), "{err}");
        assert!(err.contains("--etcd-cacert"), "{err}");
    }

    #[test]
    fn exactly_one_of_db_and_store() {
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "peering-controld",
                "create-gateway",
                "--region",
                "us-east-1",
            ];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map(|a| match a.command {
                Command::CreateGateway { db, .. } => db.url().expect("url"),
                _ => panic!("not create-gateway"),
            })
        };
        assert_eq!(
            parse(&["--db", "x.db"]).unwrap(),
            StoreUrl::Sqlite(PathBuf::from("x.db"))
        );
        assert_eq!(
            parse(&["--store", "etcd://198.18.250.10,198.18.250.11:2379/lab"]).unwrap(),
            StoreUrl::Etcd {
                endpoints: vec!["198.18.250.10:2379".into(), "198.18.250.11:2379".into()],
                prefix: "/lab/".into(),
                tls: EtcdTlsFiles::default(),
            }
        );
        assert!(parse(&["--db", "x.db", "--store", "sqlite:y.db"]).is_err());
        // PEERING_DB / PEERING_STORE may come from the environment; neither
        // is set in the unit tests' environment.
        if std::env::var_os("PEERING_DB").is_none() && std::env::var_os("PEERING_STORE").is_none() {
            assert!(parse(&[]).is_err());
        }
        let bad = Args::try_parse_from(["peering-controld", "serve", "--store", "mysql://x"])
            .expect("parses");
        let Command::Serve { db, .. } = bad.command else {
            panic!("not serve");
        };
        assert!(db.url().is_err(), "an unknown scheme is refused");
    }
}
