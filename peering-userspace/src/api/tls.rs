//! HTTPS for `peering-controld`: the certificate and key from PEM files, and
//! a listener that completes TLS handshakes before handing connections to
//! the HTTP server.
//!
//! Handshakes run in tasks of their own, each under
//! [`HANDSHAKE_TIMEOUT`], so a client that connects and sends nothing (or
//! half a ClientHello) holds one connection slot for at most that long and
//! never delays other clients. Every connection, from accept to close,
//! holds one of the [`listener::MAX_CONNECTIONS`] permits, handshake
//! included. A client speaking plain HTTP to the TLS port gets a short
//! plain-text HTTP 400 naming the mistake (the only bytes ever written
//! outside TLS), and the connection is closed.

use crate::api::listener::{self, Counted};
use anyhow::{bail, Context};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take from TCP accept to a completed handshake.
/// A handshake is two round trips; 5 s leaves room for a slow link while
/// bounding what a silent client can hold.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// First byte of a TLS handshake record (RFC 8446 §5.1, ContentType
/// `handshake`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP client receives from the TLS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: application/json\r\n\
Connection: close\r\n\
Content-Length: 118\r\n\r\n\
{\"Error\":{\"Code\":\"PlainHttpToTlsPort\",\"Message\":\"This endpoint speaks HTTPS only: use an https:// URL and a CA file\"}}";

/// Loads the server certificate chain and private key (PEM). The key
/// stays in memory for the life of the process; its file is not read again.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {} (expected PEM)", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {} (PEM)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate does not match its private key, or is unusable")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections the TLS listener turned away, by reason.
#[derive(Debug, Default)]
pub struct TlsStats {
    /// Plain HTTP sent to the TLS port (answered with a 400).
    pub plain_http: AtomicU64,
    /// Handshakes that failed (bad ClientHello, certificate refused by the
    /// client, connection closed).
    pub failed: AtomicU64,
    /// Handshakes not completed within [`HANDSHAKE_TIMEOUT`].
    pub timed_out: AtomicU64,
}

impl TlsStats {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A listener yielding connections whose TLS handshake completed.
pub struct TlsListener {
    ready: mpsc::Receiver<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
    pub stats: Arc<TlsStats>,
}

impl TlsListener {
    /// Starts accepting on `tcp`, holding at most `max` connections.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, max: usize) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let stats = Arc::new(TlsStats::default());
        let (tx, ready) = mpsc::channel(max.max(1));
        let accepting = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            Arc::new(Semaphore::new(max)),
            tx,
            stats.clone(),
        ));
        Ok(TlsListener {
            ready,
            local,
            accepting,
            stats,
        })
    }
}

impl Drop for TlsListener {
    /// The server dropped its listener (graceful shutdown began): stop
    /// accepting. Handshakes in flight end with nowhere to deliver to.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Counted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop never ends while we hold its handle.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    mut tcp: TcpListener,
    acceptor: TlsAcceptor,
    permits: Arc<Semaphore>,
    ready: mpsc::Sender<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    stats: Arc<TlsStats>,
) {
    loop {
        let permit = listener::permit(&permits).await;
        // axum's accept retries transient errors (EMFILE, aborted
        // connections) itself.
        let (stream, addr) = axum::serve::Listener::accept(&mut tcp).await;
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((Counted::new(tls, permit), addr)).await;
                }
                Ok(Err(Refused::PlainHttp(mut stream))) => {
                    stats.count(&stats.plain_http);
                    tracing::debug!(peer = %addr, "plain HTTP sent to the TLS port");
                    // Bounded like the handshake: a client that does not
                    // read cannot hold the slot.
                    let answer = async {
                        let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                        let _ = stream.shutdown().await;
                        drain(&mut stream).await;
                    };
                    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, answer).await;
                }
                Ok(Err(Refused::Failed(e))) => {
                    stats.count(&stats.failed);
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    stats.count(&stats.timed_out);
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Most of a refused plain-HTTP request read before closing.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads what the client still sends (its request body) until it closes,
/// up to [`DRAIN_LIMIT`]: closing a socket with unread data makes the
/// kernel send a reset, which can reach the client before it reads the
/// answer.
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 2048];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

enum Refused {
    /// Answered outside the handshake timeout's scope, by the caller.
    PlainHttp(TcpStream),
    Failed(io::Error),
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, Refused> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.map_err(Refused::Failed)?;
    if n == 0 {
        return Err(Refused::Failed(io::ErrorKind::UnexpectedEof.into()));
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // An HTTP request starts with a method in capitals.
        if first[0].is_ascii_uppercase() {
            return Err(Refused::PlainHttp(stream));
        }
        return Err(Refused::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a TLS handshake",
        )));
    }
    acceptor.accept(stream).await.map_err(Refused::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_answer_is_well_formed() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["Error"]["Code"], "PlainHttpToTlsPort");
    }
}
