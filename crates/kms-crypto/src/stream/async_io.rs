//! tokio adapters (feature `tokio`): [`AsyncEncryptingReader`] and [`AsyncDecryptingReader`].

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use kms_types::types::EncryptionContext;
use tokio::io::{AsyncRead, ReadBuf};

use super::keys::{Part, StreamParams, StreamSealer};
use super::layout::{ObjectLayout, RangePlan};
use super::pump::{DecryptPump, EncryptPump, Pump};
use crate::error::CryptoError;
use crate::keys::PlaintextDataKey;

fn poll_pump<P: Pump, R: AsyncRead + Unpin>(
    pump: &mut P,
    inner: &mut R,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    loop {
        let ready = pump.output();
        if !ready.is_empty() {
            let n = ready.len().min(buf.remaining());
            buf.put_slice(&ready[..n]);
            pump.consume(n);
            return Poll::Ready(Ok(()));
        }
        let Some(space) = pump.input()? else { return Poll::Ready(Ok(())) };
        let mut read = ReadBuf::new(space);
        ready!(Pin::new(&mut *inner).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        pump.advance(n)?;
    }
}

/// Reads plaintext from `R` and yields the encrypted stream; the async twin of
/// [`EncryptingReader`](super::EncryptingReader).
pub struct AsyncEncryptingReader<R> {
    inner: R,
    pump: EncryptPump,
}

impl<R: AsyncRead + Unpin> AsyncEncryptingReader<R> {
    /// A reader encrypting `inner` under a fresh per-stream key.
    pub fn new(
        inner: R,
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        part: Part,
        params: StreamParams,
    ) -> Result<Self, CryptoError> {
        Ok(Self { inner, pump: EncryptPump::new(StreamSealer::new(data_key, context, part, params)?) })
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncEncryptingReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_pump(&mut this.pump, &mut this.inner, cx, buf)
    }
}

impl<R> fmt::Debug for AsyncEncryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEncryptingReader").finish_non_exhaustive()
    }
}

/// Reads an encrypted stream from `R` and yields its plaintext; the async twin of
/// [`DecryptingReader`](super::DecryptingReader), with the same guarantees: no byte of an
/// unauthenticated segment is ever yielded, truncation is an error.
pub struct AsyncDecryptingReader<R> {
    inner: R,
    pump: DecryptPump,
}

impl<R: AsyncRead + Unpin> AsyncDecryptingReader<R> {
    /// Decrypts a single stream; its end is the end of `inner`.
    pub fn new(inner: R, data_key: &PlaintextDataKey, context: &EncryptionContext, part: Part) -> Self {
        Self { inner, pump: DecryptPump::single(data_key.expose_secret(), context, part) }
    }

    /// Decrypts a whole object laid out as `layout`.
    pub fn object(
        inner: R,
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        layout: &ObjectLayout,
    ) -> Result<Self, CryptoError> {
        Ok(Self { inner, pump: DecryptPump::object(data_key.expose_secret(), context, layout)? })
    }

    /// Decrypts a ranged read: `inner` yields the concatenation of `plan.fetch_ranges()`.
    pub fn range(inner: R, data_key: &PlaintextDataKey, context: &EncryptionContext, plan: &RangePlan) -> Self {
        Self { inner, pump: DecryptPump::range(data_key.expose_secret(), context, plan) }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptingReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_pump(&mut this.pump, &mut this.inner, cx, buf)
    }
}

impl<R> fmt::Debug for AsyncDecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDecryptingReader").finish_non_exhaustive()
    }
}
