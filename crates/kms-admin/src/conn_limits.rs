//! Per-connection limits the listener applies before any byte of a request is read: how many
//! connections one peer address may hold ([`PeerLimiter`]), and how long a response may wait
//! for the client to read it ([`WriteTimeout`]).
//!
//! Both exist because a connection holds one of the server's `max_connections` slots from
//! accept on, before TLS and authentication: without a per-peer cap, one host opening idle
//! sockets takes every slot; without a write timeout, a client that never reads its response
//! holds its slot for as long as it likes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Counts the open connections of each peer address, up to a cap.
#[derive(Debug, Clone)]
pub(crate) struct PeerLimiter {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
}

impl PeerLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        Self { open: Arc::default(), cap }
    }

    /// A place for one more connection of `peer`, or `None` if it already holds `cap`.
    pub(crate) fn admit(&self, peer: IpAddr) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(peer).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(PeerSlot { limiter: self.clone(), peer })
    }
}

/// One admitted connection; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    limiter: PeerLimiter,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// An I/O stream whose writes (and flushes) fail with [`io::ErrorKind::TimedOut`] when the
/// peer has not taken the bytes within `limit`: the connection then ends and frees its slot.
#[derive(Debug)]
pub(crate) struct WriteTimeout<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Passes a ready result through (resetting the clock); on `Pending`, starts or checks it.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client did not read the response")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn a_peer_gets_at_most_cap_places_and_dropping_one_frees_it() {
        let limiter = PeerLimiter::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = limiter.admit(a).unwrap();
        let _second = limiter.admit(a).unwrap();
        assert!(limiter.admit(a).is_none());
        assert!(limiter.admit(b).is_some(), "another peer is not affected");
        drop(first);
        assert!(limiter.admit(a).is_some());
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        // A 64-byte pipe whose other end never reads: the second write blocks.
        let (client, _server) = tokio::io::duplex(64);
        let mut stream = WriteTimeout::new(client, Duration::from_millis(200));
        stream.write_all(&[0; 64]).await.unwrap();
        let err = stream.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
