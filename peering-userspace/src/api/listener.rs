//! A TCP listener that holds at most a fixed number of connections open:
//! each accepted connection carries a semaphore permit, released when it
//! closes, and the listener stops accepting while none is left (the
//! kernel's backlog queues the rest). It bounds what clients can make the
//! daemon hold, whatever they send or fail to send.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// Connections the API daemon holds open at once.
pub const MAX_CONNECTIONS: usize = 256;

pub struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl Limited {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Limited {
            inner,
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

/// Waits for one of `permits` (the semaphore is never closed: acquiring
/// only waits).
pub async fn permit(permits: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    loop {
        if let Ok(p) = permits.clone().acquire_owned().await {
            return p;
        }
    }
}

/// An accepted connection (TCP, or TLS over TCP) and its share of the
/// limit.
pub struct Counted<T = TcpStream> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T> Counted<T> {
    pub fn new(io: T, permit: OwnedSemaphorePermit) -> Self {
        Counted {
            io,
            _permit: permit,
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = permit(&self.permits).await;
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (Counted::new(io, permit), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;

    #[tokio::test]
    async fn a_connection_beyond_the_limit_waits_for_one_to_close() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut l = Limited::new(tcp, 2);
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let (a, _) = l.accept().await;
        let (b, _) = l.accept().await;
        let third = tokio::time::timeout(std::time::Duration::from_millis(200), l.accept()).await;
        assert!(third.is_err(), "a third connection is not accepted");
        drop(a);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), l.accept()).await;
        assert!(third.is_ok(), "accepted once one closed");
        drop(b);
    }
}
