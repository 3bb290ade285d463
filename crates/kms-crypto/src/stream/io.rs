//! std I/O adapters: [`EncryptingWriter`], [`EncryptingReader`], [`DecryptingReader`].

use std::fmt;
use std::io::{self, Read, Write};

use kms_types::types::EncryptionContext;

use super::keys::{Part, StreamParams, StreamSealer};
use super::layout::{ObjectLayout, RangePlan};
use super::pump::{DecryptPump, EncryptPump, Pump};
use super::scratch::Scratch;
use crate::aead::TAG_LEN;
use crate::error::CryptoError;
use crate::keys::PlaintextDataKey;

/// Drives `pump` with `inner` as input until it has output for `buf`.
pub(crate) fn pump_read<P: Pump>(pump: &mut P, inner: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let ready = pump.output();
        if !ready.is_empty() {
            let n = ready.len().min(buf.len());
            buf[..n].copy_from_slice(&ready[..n]);
            pump.consume(n);
            return Ok(n);
        }
        if let Some(want) = pump.direct_len(buf.len()) {
            // A whole segment fits the caller's buffer: read it there and open it in place,
            // one copy fewer. Should the tag not check, ring zeroes the plaintext and the
            // caller gets only the error.
            let mut filled = pump.direct_prefill(buf);
            while filled < want {
                match read_once(inner, &mut buf[filled..want]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        pump.direct_abort(buf, filled);
                        return Err(e);
                    }
                }
            }
            match pump.direct_open(buf, filled)? {
                0 => continue,
                n => return Ok(n),
            }
        }
        let Some(space) = pump.input()? else { return Ok(0) };
        let n = read_once(inner, space)?;
        pump.advance(n)?;
    }
}

fn read_once(inner: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Encrypts everything written to it into a stream written to `W`.
///
/// Call [`finish`](Self::finish) at the end: it seals the final segment. A writer dropped
/// without `finish` leaves a stream that every reader reports as truncated.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    sealer: StreamSealer,
    /// Plaintext of the segment being collected, then that segment sealed with its tag.
    buf: Scratch,
    filled: usize,
    header_written: bool,
    poisoned: bool,
}

impl<W: Write> EncryptingWriter<W> {
    /// A writer encrypting into `inner` under a fresh per-stream key.
    pub fn new(
        inner: W,
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        part: Part,
        params: StreamParams,
    ) -> Result<Self, CryptoError> {
        let sealer = StreamSealer::new(data_key, context, part, params)?;
        let buf = Scratch::new(sealer.segment_size() + TAG_LEN);
        Ok(Self { inner, sealer, buf, filled: 0, header_written: false, poisoned: false })
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            self.inner.write_all(self.sealer.header().as_bytes())?;
        }
        Ok(())
    }

    fn seal_buffered(&mut self, last: bool) -> io::Result<()> {
        let len = self.filled;
        let tag = self.sealer.seal_segment(self.buf.get_mut(0..len), last)?;
        self.buf.put(len, &tag);
        self.filled = 0;
        self.inner.write_all(self.buf.get(0..len + TAG_LEN))
    }

    fn check(&self) -> io::Result<()> {
        if self.poisoned { Err(io::Error::other("an earlier write failed; the stream is unusable")) } else { Ok(()) }
    }

    /// Seals the final segment, flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.poisoned = true;
        self.write_header()?;
        self.seal_buffered(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if data.is_empty() {
            return Ok(0);
        }
        self.poisoned = true;
        self.write_header()?;
        let s = self.sealer.segment_size();
        if self.filled == s {
            // More data follows, so the buffered full segment is not the last one.
            self.seal_buffered(false)?;
        }
        let n = (s - self.filled).min(data.len());
        self.buf.put(self.filled, &data[..n]);
        self.filled += n;
        self.poisoned = false;
        Ok(n)
    }

    /// Flushes the inner writer. Buffered plaintext (less than one segment) stays buffered:
    /// only [`finish`](Self::finish) can seal it.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingWriter").field("sealer", &self.sealer).finish_non_exhaustive()
    }
}

/// Reads plaintext from `R` and yields the encrypted stream (header, then segments).
pub struct EncryptingReader<R: Read> {
    inner: R,
    pump: EncryptPump,
}

impl<R: Read> EncryptingReader<R> {
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

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        pump_read(&mut self.pump, &mut self.inner, buf)
    }
}

impl<R: Read> fmt::Debug for EncryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingReader").finish_non_exhaustive()
    }
}

/// Reads an encrypted stream from `R` and yields its plaintext.
///
/// It never yields a byte of a segment before that segment's tag has been checked, and it
/// reports a truncated, reordered, extended or tampered stream as an error
/// ([`io::ErrorKind::InvalidData`] wrapping a [`CryptoError`]), never as a clean end of file.
/// After an error every further read fails.
pub struct DecryptingReader<R: Read> {
    inner: R,
    pump: DecryptPump,
}

impl<R: Read> DecryptingReader<R> {
    /// Decrypts a single stream; its end is the end of `inner`.
    pub fn new(inner: R, data_key: &PlaintextDataKey, context: &EncryptionContext, part: Part) -> Self {
        Self { inner, pump: DecryptPump::single(data_key.expose_secret(), context, part) }
    }

    /// Decrypts a whole object laid out as `layout` (a multipart object's parts, in order).
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

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        pump_read(&mut self.pump, &mut self.inner, buf)
    }
}

impl<R: Read> fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptingReader").finish_non_exhaustive()
    }
}
