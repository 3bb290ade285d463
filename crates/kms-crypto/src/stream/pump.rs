//! Sans-I/O encryption and decryption state machines, driven by the std and tokio adapters.
//!
//! A pump has an output window of bytes ready for the caller and an input window to fill. The
//! drivers loop: hand out pending output; otherwise read into the input window and call
//! `advance(n)` (`n == 0` is end of input). A decrypting pump only ever puts plaintext of
//! authenticated segments into its output window.

use std::collections::VecDeque;

use kms_types::types::EncryptionContext;
use zeroize::Zeroizing;

use super::HEADER_LEN;
use super::keys::{Part, StreamOpener, StreamSealer};
use super::layout::{RangePlan, ciphertext_len};
use super::scratch::Scratch;
use crate::aead::TAG_LEN;
use crate::error::CryptoError;

/// The protocol shared by [`EncryptPump`] and [`DecryptPump`].
pub(crate) trait Pump {
    /// Bytes ready for the caller.
    fn output(&self) -> &[u8];
    /// The caller took `n` bytes of [`output`](Self::output).
    fn consume(&mut self, n: usize);
    /// Where to read more input; `None` when the stream is complete (and the output drained).
    /// Only called with an empty output window.
    fn input(&mut self) -> Result<Option<&mut [u8]>, CryptoError>;
    /// `n` bytes were read into the input window; `0` means the input ended.
    fn advance(&mut self, n: usize) -> Result<(), CryptoError>;

    /// Whether the next segment can be read and opened straight in a caller's buffer of
    /// `capacity` bytes (saving a copy); if so, how many input bytes to read into it.
    fn direct_len(&self, _capacity: usize) -> Option<usize> {
        None
    }

    /// Starts a direct read: puts any input byte already taken (look-ahead) at the front of
    /// `buf` and returns how many.
    fn direct_prefill(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    /// Finishes a direct read: `buf[..filled]` holds the input (`filled` short of
    /// [`direct_len`](Self::direct_len) only at end of input). Opens it in place and returns
    /// the plaintext length, at the front of `buf`. On failure ring has zeroed the plaintext.
    fn direct_open(&mut self, _buf: &mut [u8], _filled: usize) -> Result<usize, CryptoError> {
        Err(CryptoError::invalid("direct", "not supported"))
    }

    /// Abandons a direct read (the input failed part-way): keeps `buf[..filled]` as buffered
    /// input, so the next read resumes where this one stopped.
    fn direct_abort(&mut self, _buf: &[u8], _filled: usize) {}
}

/// Encrypts plaintext input into a stream (header, then sealed segments).
pub(crate) struct EncryptPump {
    sealer: StreamSealer,
    /// Plaintext being collected, then the sealed segment; room for one segment, its tag and
    /// one byte of look-ahead (a full segment is only sealed once we know whether more follows).
    buf: Scratch,
    filled: usize,
    header_out: usize,
    out: std::ops::Range<usize>,
    carry: Option<u8>,
    finished: bool,
}

impl EncryptPump {
    pub(crate) fn new(sealer: StreamSealer) -> Self {
        let s = sealer.segment_size();
        Self {
            sealer,
            buf: Scratch::new(s + TAG_LEN + 1),
            filled: 0,
            header_out: 0,
            out: 0..0,
            carry: None,
            finished: false,
        }
    }

    fn seal(&mut self, len: usize, last: bool) -> Result<(), CryptoError> {
        let tag = self.sealer.seal_segment(self.buf.get_mut(0..len), last)?;
        self.buf.put(len, &tag);
        self.out = 0..len + TAG_LEN;
        self.filled = 0;
        self.finished = last;
        Ok(())
    }
}

impl Pump for EncryptPump {
    fn output(&self) -> &[u8] {
        if self.header_out < HEADER_LEN {
            &self.sealer.header().as_bytes()[self.header_out..]
        } else {
            self.buf.get(self.out.clone())
        }
    }

    fn consume(&mut self, n: usize) {
        if self.header_out < HEADER_LEN {
            self.header_out += n;
        } else {
            self.out.start += n;
        }
    }

    fn input(&mut self) -> Result<Option<&mut [u8]>, CryptoError> {
        if self.finished {
            return Ok(None);
        }
        if let Some(byte) = self.carry.take() {
            self.buf.put(0, &[byte]);
            self.filled = 1;
        }
        let s = self.sealer.segment_size();
        Ok(Some(self.buf.window(self.filled, s + 1)))
    }

    fn advance(&mut self, n: usize) -> Result<(), CryptoError> {
        let s = self.sealer.segment_size();
        if n == 0 {
            return self.seal(self.filled, true);
        }
        self.filled += n;
        if self.filled == s + 1 {
            self.carry = Some(self.buf.get(s..s + 1)[0]);
            self.seal(s, false)?;
        }
        Ok(())
    }
}

/// How the ciphertext of one piece ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// At end of input: the last segment is the one followed by EOF.
    UntilEof,
    /// After exactly `body` bytes of segments; the last is final if `includes_final`.
    Exact { body: u64, includes_final: bool },
}

/// One stream (or a range of one) to decrypt.
#[derive(Debug, Clone, Copy)]
struct Piece {
    part: Part,
    /// The segment size the caller's layout assumes; the header must agree.
    segment_size: Option<u32>,
    framing: Framing,
    first_segment: u64,
    skip: u64,
    take: Option<u64>,
}

// The opener is large (an expanded AES key) but one pump holds one phase: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Header,
    Body { opener: StreamOpener, index: u64, remaining: Option<u64> },
}

/// Decrypts a stream, the concatenated parts of a multipart object, or the fetched pieces of
/// a ranged read.
pub(crate) struct DecryptPump {
    data_key: Zeroizing<Vec<u8>>,
    context: EncryptionContext,
    pieces: VecDeque<Piece>,
    piece: Option<Piece>,
    phase: Phase,
    /// The header, then segments that are not opened in the caller's buffer; sized for a
    /// segment once a header is authenticated.
    buf: Scratch,
    filled: usize,
    out: std::ops::Range<usize>,
    carry: Option<u8>,
    failed: Option<CryptoError>,
    done: bool,
}

impl DecryptPump {
    pub(crate) fn single(data_key: &[u8], context: &EncryptionContext, part: Part) -> Self {
        let piece =
            Piece { part, segment_size: None, framing: Framing::UntilEof, first_segment: 0, skip: 0, take: None };
        Self::new(data_key, context, [piece].into())
    }

    pub(crate) fn object(
        data_key: &[u8],
        context: &EncryptionContext,
        layout: &super::layout::ObjectLayout,
    ) -> Result<Self, CryptoError> {
        let mut pieces = VecDeque::new();
        for p in layout.parts() {
            let body = ciphertext_len(p.plaintext_len, layout.segment_size())? - HEADER_LEN as u64;
            let framing = Framing::Exact { body, includes_final: true };
            let segment_size = Some(layout.segment_size());
            pieces.push_back(Piece { part: p.part, segment_size, framing, first_segment: 0, skip: 0, take: None });
        }
        Ok(Self::new(data_key, context, pieces))
    }

    pub(crate) fn range(data_key: &[u8], context: &EncryptionContext, plan: &RangePlan) -> Self {
        let pieces = plan
            .pieces()
            .iter()
            .map(|p| Piece {
                part: p.part,
                segment_size: Some(plan.segment_size),
                framing: Framing::Exact {
                    body: p.segments.end - p.segments.start,
                    includes_final: p.includes_final_segment,
                },
                first_segment: p.first_segment,
                skip: p.skip,
                take: Some(p.len),
            })
            .collect();
        Self::new(data_key, context, pieces)
    }

    fn new(data_key: &[u8], context: &EncryptionContext, mut pieces: VecDeque<Piece>) -> Self {
        let piece = pieces.pop_front();
        Self {
            data_key: Zeroizing::new(data_key.to_vec()),
            context: context.clone(),
            pieces,
            piece,
            phase: Phase::Header,
            buf: Scratch::new(HEADER_LEN),
            filled: 0,
            out: 0..0,
            carry: None,
            failed: None,
            done: false,
        }
    }

    fn fail(&mut self, error: CryptoError) -> CryptoError {
        self.failed = Some(error);
        self.out = 0..0;
        self.buf.wipe();
        error
    }

    /// The length of the next segment and whether it is final, for exact framing.
    fn exact_segment(segment_size: usize, remaining: u64, includes_final: bool) -> (usize, bool) {
        let full = (segment_size + TAG_LEN) as u64;
        if remaining <= full { (remaining as usize, includes_final) } else { (full as usize, false) }
    }

    /// Opens the next segment of the current piece in `buf` (ciphertext ‖ tag) and returns the
    /// plaintext length.
    fn open_in(phase: &mut Phase, buf: &mut [u8], last: bool) -> Result<usize, CryptoError> {
        let Phase::Body { opener, index, .. } = phase else { unreachable!("segments are opened in the body phase") };
        let plaintext = opener.open_segment(*index, last, buf)?.len();
        *index += 1;
        Ok(plaintext)
    }

    fn open(&mut self, len: usize, last: bool) -> Result<(), CryptoError> {
        let plaintext = Self::open_in(&mut self.phase, self.buf.get_mut(0..len), last)?;
        self.filled = 0;
        let piece = self.piece.as_mut().expect("a piece is being decrypted");
        let start = usize::try_from(piece.skip.min(plaintext as u64)).expect("within a segment");
        piece.skip -= start as u64;
        let mut end = plaintext;
        if let Some(take) = piece.take.as_mut() {
            let n = (*take).min((end - start) as u64);
            *take -= n;
            end = start + n as usize;
        }
        self.out = start..end;
        if last {
            self.next_piece();
        }
        Ok(())
    }

    fn direct_open_inner(&mut self, buf: &mut [u8], filled: usize) -> Result<usize, CryptoError> {
        let piece = self.piece.expect("direct reads happen inside a piece");
        let Phase::Body { opener, remaining, .. } = &mut self.phase else {
            unreachable!("direct reads are in the body")
        };
        let s = opener.segment_size();
        match (piece.framing, remaining) {
            (Framing::UntilEof, _) => {
                if filled == s + TAG_LEN + 1 {
                    self.carry = Some(buf[s + TAG_LEN]);
                    Self::open_in(&mut self.phase, &mut buf[..s + TAG_LEN], false)
                } else {
                    let n = Self::open_in(&mut self.phase, &mut buf[..filled], true)?;
                    self.next_piece();
                    Ok(n)
                }
            }
            (Framing::Exact { includes_final, .. }, Some(left)) => {
                let (len, last) = Self::exact_segment(s, *left, includes_final);
                if filled < len {
                    return Err(CryptoError::Unauthenticated);
                }
                *left -= len as u64;
                let done = *left == 0;
                let n = Self::open_in(&mut self.phase, &mut buf[..len], last)?;
                if done {
                    self.next_piece();
                }
                Ok(n)
            }
            (Framing::Exact { .. }, None) => unreachable!("exact framing tracks what is left"),
        }
    }

    fn next_piece(&mut self) {
        self.piece = self.pieces.pop_front();
        self.phase = Phase::Header;
    }

    fn step(&mut self, n: usize) -> Result<(), CryptoError> {
        let Some(piece) = self.piece else {
            // Complete: any further input is appended data.
            return if n == 0 { Ok(()) } else { Err(CryptoError::Unauthenticated) };
        };
        match &mut self.phase {
            Phase::Header => {
                if n == 0 {
                    return Err(CryptoError::Malformed);
                }
                self.filled += n;
                if self.filled == HEADER_LEN {
                    let header = self.buf.get(0..HEADER_LEN);
                    let opener = StreamOpener::from_raw_key(&self.data_key, &self.context, piece.part, header)?;
                    if piece.segment_size.is_some_and(|s| s != opener.header().segment_size()) {
                        // The layout does not describe this stream: its offsets would be wrong.
                        return Err(CryptoError::Malformed);
                    }
                    let remaining = match piece.framing {
                        Framing::UntilEof => None,
                        Framing::Exact { body, .. } => Some(body),
                    };
                    // The header is authenticated: only now size the buffer for a segment (once:
                    // the parts of an object share a segment size). At least a header long:
                    // the next part's header is read into it.
                    let size = (opener.segment_size() + TAG_LEN + 1).max(HEADER_LEN);
                    if self.buf.capacity() < size {
                        self.buf = Scratch::new(size);
                    }
                    self.filled = 0;
                    self.phase = Phase::Body { opener, index: piece.first_segment, remaining };
                    if remaining == Some(0) {
                        self.next_piece();
                    }
                }
                Ok(())
            }
            Phase::Body { opener, remaining, .. } => {
                let s = opener.segment_size();
                match (piece.framing, remaining) {
                    (Framing::UntilEof, _) => {
                        if n == 0 {
                            return self.open(self.filled, true);
                        }
                        self.filled += n;
                        if self.filled == s + TAG_LEN + 1 {
                            self.carry = Some(self.buf.get(s + TAG_LEN..s + TAG_LEN + 1)[0]);
                            self.open(s + TAG_LEN, false)?;
                        }
                        Ok(())
                    }
                    (Framing::Exact { includes_final, .. }, Some(left)) => {
                        if n == 0 {
                            // Truncated: the input ended inside a piece.
                            return Err(CryptoError::Unauthenticated);
                        }
                        self.filled += n;
                        let (len, last) = Self::exact_segment(s, *left, includes_final);
                        if self.filled == len {
                            *left -= len as u64;
                            let done = *left == 0;
                            self.open(len, last)?;
                            if done && !last {
                                self.next_piece();
                            }
                        }
                        Ok(())
                    }
                    (Framing::Exact { .. }, None) => unreachable!("exact framing tracks what is left"),
                }
            }
        }
    }
}

impl Pump for DecryptPump {
    fn output(&self) -> &[u8] {
        self.buf.get(self.out.clone())
    }

    fn consume(&mut self, n: usize) {
        self.out.start += n;
    }

    fn input(&mut self) -> Result<Option<&mut [u8]>, CryptoError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.done {
            return Ok(None);
        }
        if let Some(byte) = self.carry.take() {
            self.buf.put(0, &[byte]);
            self.filled = 1;
        }
        let Some(piece) = self.piece else {
            // Complete. Probe for appended bytes with a one-byte window.
            return Ok(Some(self.buf.get_mut(0..1)));
        };
        let end = match (&self.phase, piece.framing) {
            (Phase::Header, _) => HEADER_LEN,
            (Phase::Body { opener, .. }, Framing::UntilEof) => opener.segment_size() + TAG_LEN + 1,
            (Phase::Body { opener, remaining, .. }, Framing::Exact { includes_final, .. }) => {
                Self::exact_segment(opener.segment_size(), remaining.unwrap_or(0), includes_final).0
            }
        };
        Ok(Some(self.buf.window(self.filled, end)))
    }

    fn advance(&mut self, n: usize) -> Result<(), CryptoError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.piece.is_none() && n == 0 {
            self.done = true;
        }
        self.step(n).map_err(|e| self.fail(e))
    }

    fn direct_len(&self, capacity: usize) -> Option<usize> {
        if self.failed.is_some() || self.done || !self.out.is_empty() || self.filled != 0 {
            return None;
        }
        let piece = self.piece?;
        if piece.skip != 0 || piece.take.is_some() {
            return None;
        }
        let Phase::Body { opener, remaining, .. } = &self.phase else { return None };
        let want = match piece.framing {
            Framing::UntilEof => opener.segment_size() + TAG_LEN + 1,
            Framing::Exact { includes_final, .. } => {
                Self::exact_segment(opener.segment_size(), remaining.unwrap_or(0), includes_final).0
            }
        };
        (want > 0 && want <= capacity).then_some(want)
    }

    fn direct_prefill(&mut self, buf: &mut [u8]) -> usize {
        match self.carry.take() {
            Some(byte) => {
                buf[0] = byte;
                1
            }
            None => 0,
        }
    }

    fn direct_open(&mut self, buf: &mut [u8], filled: usize) -> Result<usize, CryptoError> {
        self.direct_open_inner(buf, filled).map_err(|e| self.fail(e))
    }

    fn direct_abort(&mut self, buf: &[u8], filled: usize) {
        self.buf.put(0, &buf[..filled]);
        self.filled = filled;
    }
}
