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
}

/// Encrypts plaintext input into a stream (header, then sealed segments).
pub(crate) struct EncryptPump {
    sealer: StreamSealer,
    /// Plaintext being collected, then the sealed segment; room for one segment, its tag and
    /// one byte of look-ahead (a full segment is only sealed once we know whether more follows).
    buf: Zeroizing<Vec<u8>>,
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
            buf: Zeroizing::new(vec![0; s + TAG_LEN + 1]),
            filled: 0,
            header_out: 0,
            out: 0..0,
            carry: None,
            finished: false,
        }
    }

    fn seal(&mut self, len: usize, last: bool) -> Result<(), CryptoError> {
        let tag = self.sealer.seal_segment(&mut self.buf[..len], last)?;
        self.buf[len..len + TAG_LEN].copy_from_slice(&tag);
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
            &self.buf[self.out.clone()]
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
            self.buf[0] = byte;
            self.filled = 1;
        }
        let s = self.sealer.segment_size();
        Ok(Some(&mut self.buf[self.filled..=s]))
    }

    fn advance(&mut self, n: usize) -> Result<(), CryptoError> {
        let s = self.sealer.segment_size();
        if n == 0 {
            return self.seal(self.filled, true);
        }
        self.filled += n;
        if self.filled == s + 1 {
            self.carry = Some(self.buf[s]);
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
    buf: Zeroizing<Vec<u8>>,
    filled: usize,
    out: std::ops::Range<usize>,
    carry: Option<u8>,
    failed: Option<CryptoError>,
    done: bool,
}

impl DecryptPump {
    pub(crate) fn single(data_key: &[u8], context: &EncryptionContext, part: Part) -> Self {
        let piece = Piece { part, framing: Framing::UntilEof, first_segment: 0, skip: 0, take: None };
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
            pieces.push_back(Piece { part: p.part, framing, first_segment: 0, skip: 0, take: None });
        }
        Ok(Self::new(data_key, context, pieces))
    }

    pub(crate) fn range(data_key: &[u8], context: &EncryptionContext, plan: &RangePlan) -> Self {
        let pieces = plan
            .pieces()
            .iter()
            .map(|p| Piece {
                part: p.part,
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
            buf: Zeroizing::new(vec![0; HEADER_LEN]),
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
        self.buf.iter_mut().for_each(|b| *b = 0);
        error
    }

    /// The length of the next segment and whether it is final, for exact framing.
    fn exact_segment(segment_size: usize, remaining: u64, includes_final: bool) -> (usize, bool) {
        let full = (segment_size + TAG_LEN) as u64;
        if remaining <= full { (remaining as usize, includes_final) } else { (full as usize, false) }
    }

    fn open(&mut self, len: usize, last: bool) -> Result<(), CryptoError> {
        let Phase::Body { opener, index, .. } = &mut self.phase else { unreachable!("open in body phase") };
        let plaintext = opener.open_segment(*index, last, &mut self.buf[..len])?.len();
        *index += 1;
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
                    let opener = StreamOpener::from_raw_key(&self.data_key, &self.context, piece.part, &self.buf)?;
                    let remaining = match piece.framing {
                        Framing::UntilEof => None,
                        Framing::Exact { body, .. } => Some(body),
                    };
                    // The header is authenticated: only now allocate a segment buffer.
                    // (At least a header long: the next part's header is read into it.)
                    let size = (opener.segment_size() + TAG_LEN + 1).max(HEADER_LEN);
                    self.buf = Zeroizing::new(vec![0; size]);
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
                            self.carry = Some(self.buf[s + TAG_LEN]);
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
        &self.buf[self.out.clone()]
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
            self.buf[0] = byte;
            self.filled = 1;
        }
        let Some(piece) = self.piece else {
            // Complete. Probe for appended bytes with a one-byte window.
            return Ok(Some(&mut self.buf[..1]));
        };
        let end = match (&self.phase, piece.framing) {
            (Phase::Header, _) => HEADER_LEN,
            (Phase::Body { opener, .. }, Framing::UntilEof) => opener.segment_size() + TAG_LEN + 1,
            (Phase::Body { opener, remaining, .. }, Framing::Exact { includes_final, .. }) => {
                Self::exact_segment(opener.segment_size(), remaining.unwrap_or(0), includes_final).0
            }
        };
        Ok(Some(&mut self.buf[self.filled..end]))
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
}
