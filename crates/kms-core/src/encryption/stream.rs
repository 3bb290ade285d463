//! The async readers of the SSE pipeline: [`EncryptStream`] and [`PartStream`] (PUT and
//! UploadPart), [`DecryptStream`] (GET), and [`RangeFetcher`], which turns a seekable stored
//! object into the bytes a ranged GET must fetch.
//!
//! They wrap `kms-crypto`'s streaming format (`kms_crypto::stream`): memory is one segment
//! (64 KiB by default) plus a tag whatever the object size, and a decrypting reader never
//! yields a byte of a segment before its tag has been checked.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use kms_crypto::stream::{AsyncDecryptingReader, AsyncEncryptingReader};
use kms_types::error::{KmsError, Result};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use super::sse::{ObjectMetadata, PartInfo, S3Headers};

/// Encrypting core shared by [`EncryptStream`] and [`PartStream`]: counts what it yields and
/// notices the end.
struct Sealing<R> {
    inner: AsyncEncryptingReader<R>,
    produced: u64,
    ended: bool,
}

impl<R: AsyncRead + Unpin> Sealing<R> {
    fn poll(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        self.produced += n as u64;
        if n == 0 && wanted {
            self.ended = true;
        }
        Poll::Ready(Ok(()))
    }

    /// `(plaintext, ciphertext)` sizes, once the stream was read to its end.
    fn sizes(&self, segment_size: u32) -> Result<(u64, u64)> {
        if !self.ended {
            return Err(KmsError::invalid_request("stream", "the encrypted stream was not read to its end"));
        }
        let plaintext = kms_crypto::stream::plaintext_len(self.produced, segment_size)?;
        Ok((plaintext, self.produced))
    }
}

/// The encrypted bytes of a new object (header and segments), read from the plaintext
/// reader as it is polled. Store everything it yields, then call [`finish`](Self::finish) for
/// the metadata to store beside it. See `EncryptionService::encrypt_stream`.
pub struct EncryptStream<R> {
    sealing: Sealing<R>,
    metadata: ObjectMetadata,
    headers: S3Headers,
}

impl<R: AsyncRead + Unpin> EncryptStream<R> {
    pub(crate) fn new(inner: AsyncEncryptingReader<R>, metadata: ObjectMetadata, headers: S3Headers) -> Self {
        Self { sealing: Sealing { inner, produced: 0, ended: false }, metadata, headers }
    }

    /// The S3 response headers of the PUT.
    pub fn response_headers(&self) -> &S3Headers {
        &self.headers
    }

    /// Encrypted bytes yielded so far.
    pub fn bytes_out(&self) -> u64 {
        self.sealing.produced
    }

    /// The object's metadata, with its sizes; an `InvalidRequest` unless the stream was
    /// read to its end.
    pub fn finish(self) -> Result<ObjectMetadata> {
        let (plaintext, ciphertext) = self.sealing.sizes(self.metadata.segment_size)?;
        let mut metadata = self.metadata;
        metadata.plaintext_size = plaintext;
        metadata.ciphertext_size = ciphertext;
        Ok(metadata)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for EncryptStream<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().sealing.poll(cx, buf)
    }
}

impl<R> fmt::Debug for EncryptStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptStream")
            .field("mode", &self.metadata.mode)
            .field("bytes_out", &self.sealing.produced)
            .finish_non_exhaustive()
    }
}

/// The encrypted bytes of one part of a multipart upload. Store them as the part, then call
/// [`finish`](Self::finish) for the [`PartInfo`] to keep until the upload completes.
pub struct PartStream<R> {
    sealing: Sealing<R>,
    number: u32,
    segment_size: u32,
    headers: S3Headers,
}

impl<R: AsyncRead + Unpin> PartStream<R> {
    pub(crate) fn new(inner: AsyncEncryptingReader<R>, number: u32, segment_size: u32, headers: S3Headers) -> Self {
        Self { sealing: Sealing { inner, produced: 0, ended: false }, number, segment_size, headers }
    }

    /// The S3 response headers of the UploadPart.
    pub fn response_headers(&self) -> &S3Headers {
        &self.headers
    }

    /// The part's number and sizes; an `InvalidRequest` unless the stream was read to its end.
    pub fn finish(self) -> Result<PartInfo> {
        let (plaintext_size, ciphertext_size) = self.sealing.sizes(self.segment_size)?;
        Ok(PartInfo { number: self.number, plaintext_size, ciphertext_size })
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PartStream<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().sealing.poll(cx, buf)
    }
}

impl<R> fmt::Debug for PartStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartStream").field("number", &self.number).finish_non_exhaustive()
    }
}

/// The plaintext of an object or of a range of it. Errors (tampering, truncation, a wrong
/// key) surface as [`io::ErrorKind::InvalidData`]; after one, every read fails.
pub struct DecryptStream<R> {
    inner: AsyncDecryptingReader<R>,
    plaintext_len: u64,
    headers: S3Headers,
}

impl<R: AsyncRead + Unpin> DecryptStream<R> {
    pub(crate) fn new(inner: AsyncDecryptingReader<R>, plaintext_len: u64, headers: S3Headers) -> Self {
        Self { inner, plaintext_len, headers }
    }

    /// The S3 response headers of the GET.
    pub fn response_headers(&self) -> &S3Headers {
        &self.headers
    }

    /// Bytes this stream yields when read to the end (the `Content-Length` of the response).
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DecryptStream<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<R> fmt::Debug for DecryptStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptStream").field("plaintext_len", &self.plaintext_len).finish_non_exhaustive()
    }
}

enum FetchState {
    Next,
    Seeking(u64, u64),
    Reading(u64),
}

/// Reads exactly the byte ranges `ranges` of a seekable source, one after the other: what a
/// ranged GET hands to `decrypt_stream` (`ranges` = `metadata.plan(range)?.fetch_ranges()`).
/// A source that ends inside a range is an [`io::ErrorKind::UnexpectedEof`] error.
pub struct RangeFetcher<S> {
    source: S,
    ranges: VecDeque<Range<u64>>,
    state: FetchState,
    fetched: u64,
}

impl<S: AsyncRead + AsyncSeek + Unpin> RangeFetcher<S> {
    /// A reader of `ranges` of `source`, in the order given.
    pub fn new(source: S, ranges: impl IntoIterator<Item = Range<u64>>) -> Self {
        Self { source, ranges: ranges.into_iter().collect(), state: FetchState::Next, fetched: 0 }
    }

    /// Bytes read from the source so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }
}

impl<S: AsyncRead + AsyncSeek + Unpin> AsyncRead for RangeFetcher<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.state {
                FetchState::Next => match this.ranges.pop_front() {
                    None => return Poll::Ready(Ok(())),
                    Some(r) if r.start >= r.end => {}
                    Some(r) => {
                        Pin::new(&mut this.source).start_seek(io::SeekFrom::Start(r.start))?;
                        this.state = FetchState::Seeking(r.start, r.end - r.start);
                    }
                },
                FetchState::Seeking(start, len) => {
                    let at = ready!(Pin::new(&mut this.source).poll_complete(cx))?;
                    if at != start {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cannot seek there")));
                    }
                    this.state = FetchState::Reading(len);
                }
                FetchState::Reading(0) => this.state = FetchState::Next,
                FetchState::Reading(left) => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let room = buf.remaining().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let mut window = ReadBuf::new(buf.initialize_unfilled_to(room));
                    ready!(Pin::new(&mut this.source).poll_read(cx, &mut window))?;
                    let n = window.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the stored object ends inside a range",
                        )));
                    }
                    buf.advance(n);
                    this.fetched += n as u64;
                    this.state = FetchState::Reading(left - n as u64);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S> fmt::Debug for RangeFetcher<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeFetcher").field("ranges_left", &self.ranges.len()).field("fetched", &self.fetched).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn fetches_exactly_the_ranges() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut out = Vec::new();
        let mut f = RangeFetcher::new(Cursor::new(data.clone()), [5..10, 0..0, 9_990..10_000, 100..4_200]);
        f.read_to_end(&mut out).await.unwrap();
        let expected: Vec<u8> = [&data[5..10], &data[9_990..], &data[100..4_200]].concat();
        assert_eq!(out, expected);
        assert_eq!(f.fetched(), expected.len() as u64);

        let mut short = RangeFetcher::new(Cursor::new(data), std::iter::once(9_000..10_001));
        let err = short.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
