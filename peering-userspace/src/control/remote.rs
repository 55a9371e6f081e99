//! The agent's side of the gateway API (see [`crate::api::gateway`]): a
//! blocking client that syncs its region's view, keys and registry from a
//! list of controllers, moving to the next one when the one in use fails.
//!
//! The client does not sleep or retry on its own beyond trying each
//! controller once per call: the caller's loop decides when to call again,
//! with [`Backoff`] after [`RemoteError::Unreachable`], and with a
//! [`Backoff`] that grows to [`AUTH_RETRY`] after [`RemoteError::Auth`] (a
//! credential just issued may not have reached the answering controller
//! yet; retrying a revoked one will not help, and must not hammer the
//! controllers).

use crate::api::gateway::wire::{
    RegisterReply, RegisterRequest, SyncReply, ViewUpdate, WireError, MAX_WAIT_SECS, REGISTER_PATH,
    ROTATION_PATH, SYNC_PATH,
};
use crate::api::types::ErrorResponse;
use crate::control::store::{GatewayRecord, TunnelSettings};
use crate::https::{self, Scheme, Timeouts};
use crate::tunnel::key::EpochKey;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddrV4;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroize;

/// Longest wait for a TCP connection (and TLS handshake) to a controller:
/// short, so a dead controller is left quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Added to a sync's `wait` for the answer to arrive; also the whole
/// budget of the other calls.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(3);
/// Largest answer read (a full view of a large region is a few MiB).
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// A gateway credential as `peering-controld create-gateway` writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub credential_id: String,
    pub region: String,
    secret: String,
}

impl Drop for Credential {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("credential_id", &self.credential_id)
            .field("region", &self.region)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credential {
    pub fn new(credential_id: String, region: String, secret: String) -> Self {
        Credential {
            credential_id,
            region,
            secret,
        }
    }

    /// Reads a credential file: JSON `{"credential_id", "region",
    /// "secret"}`, readable by its owner only (mode 0600 or stricter).
    pub fn read(path: &Path) -> anyhow::Result<Credential> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading gateway credential {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "gateway credential {} is readable by group or others (mode {mode:04o}); \
                 chmod 600 it",
                path.display()
            );
        }
        let mut text = std::fs::read_to_string(path)
            .with_context(|| format!("reading gateway credential {}", path.display()))?;
        let parsed = serde_json::from_str::<Credential>(&text);
        text.zeroize();
        // serde's message names a field or a position, never the value.
        let cred = parsed.with_context(|| {
            format!(
                "gateway credential {} is not {{\"credential_id\",\"region\",\"secret\"}} JSON",
                path.display()
            )
        })?;
        if cred.credential_id.is_empty() || cred.region.is_empty() || cred.secret.is_empty() {
            bail!("gateway credential {} has an empty field", path.display());
        }
        Ok(cred)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// Everything one sync brings.
#[derive(Debug)]
pub struct Sync {
    pub revision: u64,
    pub view: ViewUpdate,
    pub keys: Vec<EpochKey>,
    pub settings: Option<TunnelSettings>,
    pub gateways: Vec<GatewayRecord>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The controller refused the credential (401, 403): unknown, revoked,
    /// or not a gateway credential (or one issued so recently that this
    /// controller has not seen it yet). Retry rarely.
    #[error("{url} refused the gateway credential: {code}: {message}")]
    Auth {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No controller gave a usable answer (connection, TLS, timeout, 5xx,
    /// an answer that does not parse). Retry with backoff.
    #[error("no controller answered: {0}")]
    Unreachable(String),
    /// A controller refused the request itself (another 4xx).
    #[error("{url} refused the request: {code}: {message}")]
    Rejected {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
}

impl RemoteError {
    pub fn is_auth(&self) -> bool {
        matches!(self, RemoteError::Auth { .. })
    }
}

/// A failure of one controller, before failover decides.
enum Failure {
    /// Try the next controller.
    Next(String),
    Final(RemoteError),
}

pub struct ControllerClient {
    urls: Vec<String>,
    current: usize,
    agent: ureq::Agent,
    ca_file: Option<PathBuf>,
    credential: Credential,
}

impl ControllerClient {
    /// A client of the controllers at `urls` (tried in order, the first
    /// one first). `https://` URLs need `ca_file`; `http://` is accepted
    /// for loopback hosts only.
    pub fn new(
        urls: &[String],
        ca_file: Option<&Path>,
        credential: Credential,
    ) -> anyhow::Result<Self> {
        if urls.is_empty() {
            bail!("no controller URL given");
        }
        let mut clean = Vec::with_capacity(urls.len());
        for url in urls {
            let scheme = https::check_url(url).map_err(anyhow::Error::msg)?;
            if scheme == Scheme::Https && ca_file.is_none() {
                bail!(
                    "controller {url} is https:// but no CA file is given (--ca-file or {})",
                    https::ENV_CA_FILE
                );
            }
            clean.push(url.trim_end_matches('/').to_owned());
        }
        let agent = https::agent(
            ca_file,
            Timeouts {
                connect: CONNECT_TIMEOUT,
                global: None,
            },
        )?;
        Ok(ControllerClient {
            urls: clean,
            current: 0,
            agent,
            ca_file: ca_file.map(Path::to_path_buf),
            credential,
        })
    }

    /// The controller in use (the next call goes there first).
    pub fn current(&self) -> &str {
        &self.urls[self.current]
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The region's view from `since` (None: in full), the keys, settings
    /// and registry; waits up to `wait` (at most 30 s) for a revision
    /// after `since`.
    pub fn sync(&mut self, since: Option<u64>, wait: Duration) -> Result<Sync, RemoteError> {
        let wait_secs = wait.as_secs().min(MAX_WAIT_SECS);
        let path = match since {
            Some(n) => format!("{SYNC_PATH}?since={n}&wait={wait_secs}"),
            None => SYNC_PATH.to_owned(),
        };
        let budget = Duration::from_secs(wait_secs) + RESPONSE_MARGIN;
        let mut body = self.call(&path, None, budget)?;
        let parsed = serde_json::from_slice::<SyncReply>(&body);
        body.zeroize();
        let reply = parsed.map_err(|e| {
            self.advance();
            RemoteError::Unreachable(format!("the sync answer does not parse: {e}"))
        })?;
        decode_sync(reply).map_err(|e| {
            self.advance();
            RemoteError::Unreachable(e.to_string())
        })
    }

    /// Registers (or renews) this region's gateway at `endpoint`; returns
    /// its gateway id.
    pub fn register(&mut self, endpoint: SocketAddrV4) -> Result<u32, RemoteError> {
        let req = RegisterRequest {
            endpoint: endpoint.to_string(),
        };
        let body = serde_json::to_string(&req).expect("serializable");
        let answer = self.call(REGISTER_PATH, Some(body), RESPONSE_MARGIN)?;
        serde_json::from_slice::<RegisterReply>(&answer)
            .map(|r| r.gateway_id)
            .map_err(|e| {
                RemoteError::Unreachable(format!("the register answer does not parse: {e}"))
            })
    }

    /// Asks the controllers for an early key rotation.
    pub fn request_rotation(&mut self) -> Result<(), RemoteError> {
        self.call(ROTATION_PATH, Some("{}".into()), RESPONSE_MARGIN)
            .map(|_| ())
    }

    fn advance(&mut self) {
        self.current = (self.current + 1) % self.urls.len();
    }

    /// Sends the request (a POST when it has a body, else a GET) to each controller in turn, from the current one,
    /// until one answers; the one that answered stays current.
    fn call(
        &mut self,
        path: &str,
        body: Option<String>,
        budget: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let mut failures = Vec::new();
        for _ in 0..self.urls.len() {
            match self.once(path, body.as_deref(), budget) {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Next(why)) => {
                    failures.push(why);
                    self.advance();
                }
            }
        }
        Err(RemoteError::Unreachable(failures.join("; ")))
    }

    fn once(&self, path: &str, body: Option<&str>, budget: Duration) -> Result<Vec<u8>, Failure> {
        let base = &self.urls[self.current];
        let url = format!("{base}{path}");
        let auth = zeroize::Zeroizing::new(format!("Bearer {}", self.credential.secret));
        let result = match body {
            None => self
                .agent
                .get(&url)
                .header("Authorization", auth.as_str())
                .config()
                .timeout_global(Some(budget))
                .build()
                .call(),
            Some(body) => self
                .agent
                .post(&url)
                .header("Authorization", auth.as_str())
                .content_type("application/json")
                .config()
                .timeout_global(Some(budget))
                .build()
                .send(body),
        };
        let mut resp = result
            .map_err(|e| Failure::Next(https::describe(base, self.ca_file.as_deref(), &e)))?;
        let status = resp.status().as_u16();
        let answer = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| Failure::Next(https::describe(base, self.ca_file.as_deref(), &e)))?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let (code, message) = match serde_json::from_slice::<ErrorResponse>(&answer) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                format!("HTTP{status}"),
                String::from_utf8_lossy(&answer).chars().take(200).collect(),
            ),
        };
        let url = base.clone();
        Err(match status {
            401 | 403 => Failure::Final(RemoteError::Auth {
                url,
                status,
                code,
                message,
            }),
            400..=499 => Failure::Final(RemoteError::Rejected {
                url,
                status,
                code,
                message,
            }),
            _ => Failure::Next(format!("{url} answered HTTP {status}: {code}: {message}")),
        })
    }
}

fn decode_sync(reply: SyncReply) -> Result<Sync, WireError> {
    let keys = reply
        .keys
        .iter()
        .map(|k| k.decode())
        .collect::<Result<Vec<_>, _>>()?;
    let settings = reply.settings.as_ref().map(|s| s.decode()).transpose()?;
    if reply.view.revision() != reply.revision {
        return Err(WireError("revision".into()));
    }
    Ok(Sync {
        revision: reply.revision,
        view: reply.view,
        keys,
        settings,
        gateways: reply.gateways.into_iter().map(|g| g.decode()).collect(),
    })
}

/// Exponential backoff with jitter, sans IO: the caller sleeps and brings
/// the randomness. Each delay is half the current step plus a random part
/// of the other half ("equal jitter"), so gateways that lost the same
/// controller at the same time do not come back in step, and none waits
/// less than half a step. The step doubles after each failure, up to
/// `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

/// First step of the agent's backoff after an unreachable controller.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// Longest step: a returning controller is found within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest pause between tries of a refused credential.
pub const AUTH_RETRY: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial
            .max(Duration::from_millis(1))
            .min(max.max(Duration::from_millis(1)));
        Backoff {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The delay before the next attempt, given `random` drawn uniformly
    /// from all u32 values.
    pub fn next_delay_with(&mut self, random: u32) -> Duration {
        let half = self.step / 2;
        let jitter = half.mul_f64(f64::from(random) / f64::from(u32::MAX));
        let delay = half + jitter;
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// [`Backoff::next_delay_with`] with the thread's random generator.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random())
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let steps = [200u64, 400, 800, 1600, 3200, 5000, 5000];
        for step in steps {
            let mut low = b;
            let mut high = b;
            let lo = low.next_delay_with(0);
            let hi = high.next_delay_with(u32::MAX);
            assert_eq!(lo, Duration::from_millis(step / 2), "step {step}");
            assert_eq!(hi, Duration::from_millis(step), "step {step}");
            let mid = b.next_delay_with(u32::MAX / 2);
            assert!(mid > lo && mid < hi, "{mid:?}");
        }
        b.reset();
        assert_eq!(b.next_delay_with(u32::MAX), Duration::from_millis(200));
    }

    #[test]
    fn backoff_spreads_clients() {
        let mut delays: Vec<Duration> = (0..100).map(|_| Backoff::default().next_delay()).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 50, "{}", delays.len());
        assert!(delays
            .iter()
            .all(|d| *d >= BACKOFF_INITIAL / 2 && *d <= BACKOFF_INITIAL));
    }

    #[test]
    fn backoff_degenerate_bounds() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next_delay_with(u32::MAX) <= Duration::from_millis(1));
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(b.next_delay_with(u32::MAX), Duration::from_secs(1));
    }

    fn write_cred(name: &str, content: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("peering-cred-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("gateway.json");
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn credential_files() {
        let good = r#"{"credential_id":"gwc-1","region":"us-east-1","secret":"s3cr3t-value"}"#;
        let p = write_cred("good", good, 0o600);
        let c = Credential::read(&p).unwrap();
        assert_eq!(
            (c.credential_id.as_str(), c.region.as_str()),
            ("gwc-1", "us-east-1")
        );
        assert_eq!(c.secret(), "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Credential::read(&p).is_ok());
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", Credential::read(&p).unwrap_err());
            assert!(err.contains("chmod 600"), "{err}");
        }
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        for (name, bad) in [
            ("notjson", "s3cr3t"),
            (
                "missing",
                r#"{"credential_id":"gwc-1","region":"us-east-1"}"#,
            ),
            (
                "empty",
                r#"{"credential_id":"gwc-1","region":"","secret":"s3cr3t"}"#,
            ),
            (
                "extra",
                r#"{"credential_id":"gwc-1","region":"r","secret":"s3cr3t","x":1}"#,
            ),
        ] {
            let p = write_cred(name, bad, 0o600);
            let err = format!("{:#}", Credential::read(&p).unwrap_err());
            assert!(!err.contains("s3cr3t"), "{err}");
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
        assert!(Credential::read(Path::new("/nonexistent/gw.json")).is_err());
    }

    #[test]
    fn client_urls_are_checked() {
        let cred = || Credential::new("gwc-1".into(), "r".into(), "s".into());
        assert!(ControllerClient::new(&[], None, cred()).is_err());
        let err = ControllerClient::new(&["http://198.18.0.1:7780".into()], None, cred())
            .err()
            .unwrap();
        assert!(err.to_string().contains("in clear"), "{err}");
        let err = ControllerClient::new(&["https://198.18.0.1:7780".into()], None, cred())
            .err()
            .unwrap();
        assert!(err.to_string().contains("CA file"), "{err}");
        let c = ControllerClient::new(
            &["http://127.0.0.1:7780/".into(), "http://[::1]:7781".into()],
            None,
            cred(),
        )
        .unwrap();
        assert_eq!(c.current(), "http://127.0.0.1:7780");
    }
}
