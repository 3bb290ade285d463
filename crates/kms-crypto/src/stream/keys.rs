//! The stream header, the per-object key derivation and the segment sealer and opener.
//!
//! The segments are sealed and opened through the [`ObjectCipher`] of the header's algorithm
//! (a [`SuiteCipher`], statically dispatched): the stream adds the per-object key, the nonces
//! and the framing; the suite's implementation does the AEAD.

use std::fmt;
use std::num::NonZeroU32;

use kms_types::types::EncryptionContext;
use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use super::{
    DEFAULT_SEGMENT_SIZE, HEADER_LEN, MAGIC, MAX_SEGMENT_SIZE, MAX_SEGMENTS, MIN_SEGMENT_SIZE, STREAM_FORMAT_VERSION,
};
use crate::aead::{Algorithm, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::cipher::{ObjectCipher, SuiteCipher};
use crate::context::canonical_context;
use crate::error::CryptoError;
use crate::keys::PlaintextDataKey;
use crate::rand::fill as fill_random;

/// Length of the salt in the header.
pub const SALT_LEN: usize = 32;
/// Length of the nonce prefix in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the key-commitment value in the header.
pub const COMMITMENT_LEN: usize = 32;

const FIELDS_LEN: usize = 10; // magic, version, algorithm, segment size
const SALT_AT: usize = FIELDS_LEN;
const PREFIX_AT: usize = SALT_AT + SALT_LEN;
const COMMITMENT_AT: usize = PREFIX_AT + NONCE_PREFIX_LEN;

const KEY_LABEL: &[u8] = b"kms-stream-v1 segment key";
const COMMITMENT_LABEL: &[u8] = b"kms-stream-v1 commitment key";

/// Which part of an object a stream is: the whole object, or part `n` of an S3 multipart upload.
///
/// The part number is bound into the key derivation: a part opened under another number fails
/// at its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Part {
    /// A single-part object (encoded as part number 0).
    #[default]
    Whole,
    /// Part `n` (S3 numbers parts from 1) of a multipart object.
    Number(NonZeroU32),
}

impl Part {
    /// Part `n` of a multipart object; `None` for 0.
    pub fn number(n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(Self::Number)
    }

    /// The number bound into the derivation: 0 for [`Part::Whole`].
    pub fn as_u32(self) -> u32 {
        match self {
            Self::Whole => 0,
            Self::Number(n) => n.get(),
        }
    }
}

/// How to encrypt a stream: algorithm and plaintext segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamParams {
    /// The AEAD algorithm of the segments.
    pub algorithm: Algorithm,
    /// Plaintext bytes per segment, [`MIN_SEGMENT_SIZE`]..=[`MAX_SEGMENT_SIZE`]
    /// (default [`DEFAULT_SEGMENT_SIZE`], 64 KiB).
    pub segment_size: u32,
}

impl Default for StreamParams {
    fn default() -> Self {
        Self { algorithm: Algorithm::Aes256Gcm, segment_size: DEFAULT_SEGMENT_SIZE }
    }
}

pub(crate) fn check_segment_size(segment_size: u32) -> Result<(), CryptoError> {
    if (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
        Ok(())
    } else {
        Err(CryptoError::invalid("segment_size", "must be between 16 bytes and 4 MiB"))
    }
}

/// A parsed stream header. Parsing checks only the framing (magic, version, algorithm, segment
/// size range); the key commitment is checked by [`StreamOpener::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER_LEN],
    algorithm: Algorithm,
    segment_size: u32,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes` (longer input is fine: the rest is
    /// the body). Refuses a short input, another magic or version, an unknown algorithm and
    /// segment sizes outside the limits, before anything is allocated for them.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; HEADER_LEN] =
            bytes.get(..HEADER_LEN).and_then(|b| b.try_into().ok()).ok_or(CryptoError::Malformed)?;
        if bytes[..4] != MAGIC || bytes[4] != STREAM_FORMAT_VERSION {
            return Err(CryptoError::Malformed);
        }
        let algorithm = Algorithm::from_id(bytes[5]).ok_or(CryptoError::Malformed)?;
        let segment_size = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        check_segment_size(segment_size).map_err(|_| CryptoError::Malformed)?;
        Ok(Self { bytes, algorithm, segment_size })
    }

    /// The header bytes, as written at the start of the stream.
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    /// The algorithm of the segments.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The random salt of the key derivation.
    pub fn salt(&self) -> &[u8] {
        &self.bytes[SALT_AT..PREFIX_AT]
    }

    /// The random nonce prefix.
    pub fn nonce_prefix(&self) -> &[u8] {
        &self.bytes[PREFIX_AT..COMMITMENT_AT]
    }

    /// The key-commitment value.
    pub fn commitment(&self) -> &[u8] {
        &self.bytes[COMMITMENT_AT..]
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("algorithm", &self.algorithm)
            .field("segment_size", &self.segment_size)
            .finish_non_exhaustive()
    }
}

/// The per-stream keys: the segment key and the commitment key, both from HKDF-SHA256.
fn derive(
    data_key: &[u8],
    header_fields: &[u8],
    algorithm: Algorithm,
    context: &EncryptionContext,
    part: Part,
) -> Result<(SuiteCipher, hmac::Key), CryptoError> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &header_fields[SALT_AT..PREFIX_AT]);
    let prk = salt.extract(data_key);
    let context = canonical_context(context);
    let part = part.as_u32().to_be_bytes();
    let fields = &header_fields[..FIELDS_LEN];
    let key_info = [KEY_LABEL, fields, &part, &context];
    let commitment_info = [COMMITMENT_LABEL, fields, &part, &context];
    let mut segment_key = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&key_info, algorithm.ring())
        .and_then(|okm| okm.fill(&mut segment_key[..]))
        .map_err(|_| CryptoError::Malformed)?;
    let commitment_key =
        hmac::Key::from(prk.expand(&commitment_info, hmac::HMAC_SHA256).map_err(|_| CryptoError::Malformed)?);
    Ok((SuiteCipher::new(algorithm, &segment_key[..])?, commitment_key))
}

fn nonce(prefix: &[u8], index: u64, last: bool) -> Result<[u8; NONCE_LEN], CryptoError> {
    let index = u32::try_from(index).map_err(|_| CryptoError::Malformed)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    Ok(nonce)
}

/// Encrypts the segments of one stream, in order.
///
/// Every segment but the last has exactly `segment_size` plaintext bytes; the last has
/// 1..=`segment_size` bytes, or 0 only when it is also the first (an empty stream).
pub struct StreamSealer {
    cipher: SuiteCipher,
    header: Header,
    next: u64,
    finished: bool,
}

impl StreamSealer {
    /// A sealer with a fresh random salt and nonce prefix.
    pub fn new(
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        part: Part,
        params: StreamParams,
    ) -> Result<Self, CryptoError> {
        let mut random = [0u8; SALT_LEN + NONCE_PREFIX_LEN];
        fill_random(&mut random)?;
        Self::with_randomness(data_key, context, part, params, &random)
    }

    /// The test seam for known-answer vectors: salt ‖ nonce prefix given.
    pub(crate) fn with_randomness(
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        part: Part,
        params: StreamParams,
        random: &[u8; SALT_LEN + NONCE_PREFIX_LEN],
    ) -> Result<Self, CryptoError> {
        check_segment_size(params.segment_size)?;
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4] = STREAM_FORMAT_VERSION;
        bytes[5] = params.algorithm.id();
        bytes[6..10].copy_from_slice(&params.segment_size.to_be_bytes());
        bytes[SALT_AT..COMMITMENT_AT].copy_from_slice(random);
        let (cipher, commitment_key) = derive(data_key.expose_secret(), &bytes, params.algorithm, context, part)?;
        let commitment = hmac::sign(&commitment_key, &bytes[..COMMITMENT_AT]);
        bytes[COMMITMENT_AT..].copy_from_slice(commitment.as_ref());
        let header = Header { bytes, algorithm: params.algorithm, segment_size: params.segment_size };
        Ok(Self { cipher, header, next: 0, finished: false })
    }

    /// The header, to write before the first segment.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> usize {
        self.header.segment_size as usize
    }

    /// Encrypts the next segment in place and returns its tag, to write right after it.
    ///
    /// Refuses (as [`CryptoError::InvalidArgument`]) a segment of the wrong size, a segment
    /// after the last one, and more than [`MAX_SEGMENTS`] segments.
    pub fn seal_segment(&mut self, segment: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], CryptoError> {
        if self.finished {
            return Err(CryptoError::invalid("segment", "the stream is already finished"));
        }
        check_segment_len(segment.len(), self.segment_size(), self.next, last)?;
        let tag = self.seal_at(self.next, segment, last)?;
        self.next += 1;
        self.finished = last;
        Ok(tag)
    }

    /// Number of segments sealed so far.
    pub fn segments_sealed(&self) -> u64 {
        self.next
    }

    /// Seals the segment at `index` (no order or size checks: the parallel encryptor checks).
    pub(crate) fn seal_at(&self, index: u64, segment: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], CryptoError> {
        if index >= MAX_SEGMENTS {
            return Err(CryptoError::invalid("plaintext", "a stream holds at most 2^32 segments"));
        }
        let nonce = nonce(self.header.nonce_prefix(), index, last)?;
        self.cipher.seal_in_place(&nonce, &[], segment)
    }
}

pub(crate) fn check_segment_len(len: usize, segment_size: usize, index: u64, last: bool) -> Result<(), CryptoError> {
    let ok = if last { len <= segment_size && (len > 0 || index == 0) } else { len == segment_size };
    if ok { Ok(()) } else { Err(CryptoError::invalid("segment", "wrong segment length")) }
}

impl fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSealer").field("header", &self.header).field("next", &self.next).finish_non_exhaustive()
    }
}

/// Decrypts the segments of one stream, in any order (random access).
///
/// Created from the header only after its key commitment checks out, so a wrong data key,
/// context or part number fails here, before any segment is opened.
pub struct StreamOpener {
    cipher: SuiteCipher,
    header: Header,
}

impl StreamOpener {
    /// Parses `header` (its first [`HEADER_LEN`] bytes) and checks its key commitment.
    pub fn new(
        data_key: &PlaintextDataKey,
        context: &EncryptionContext,
        part: Part,
        header: &[u8],
    ) -> Result<Self, CryptoError> {
        Self::from_raw_key(data_key.expose_secret(), context, part, header)
    }

    pub(crate) fn from_raw_key(
        data_key: &[u8],
        context: &EncryptionContext,
        part: Part,
        header: &[u8],
    ) -> Result<Self, CryptoError> {
        let header = Header::parse(header)?;
        let (cipher, commitment_key) = derive(data_key, header.as_bytes(), header.algorithm, context, part)?;
        hmac::verify(&commitment_key, &header.bytes[..COMMITMENT_AT], header.commitment())
            .map_err(|_| CryptoError::Unauthenticated)?;
        Ok(Self { cipher, header })
    }

    /// The (authenticated) header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> usize {
        self.header.segment_size as usize
    }

    /// Opens segment number `index` in place. `in_out` holds `ciphertext ‖ tag`; `last` says
    /// whether the caller expects it to be the stream's final segment. Returns the plaintext,
    /// the front of `in_out`. On failure the contents of `in_out` must be discarded.
    pub fn open_segment<'a>(&self, index: u64, last: bool, in_out: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        let len = in_out.len().checked_sub(TAG_LEN).ok_or(CryptoError::Unauthenticated)?;
        let (segment, tag) = in_out.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| CryptoError::Unauthenticated)?;
        self.open_detached(index, last, segment, tag)?;
        Ok(segment)
    }

    /// Opens segment number `index` in place when its tag is elsewhere: `segment` holds the
    /// ciphertext alone (the whole-buffer decryptors copy it straight to its plaintext
    /// position in the caller's buffer and open it there, one copy in all). On failure the
    /// contents of `segment` must be discarded.
    pub(crate) fn open_detached(
        &self,
        index: u64,
        last: bool,
        segment: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        if index >= MAX_SEGMENTS || check_segment_len(segment.len(), self.segment_size(), index, last).is_err() {
            return Err(CryptoError::Unauthenticated);
        }
        let nonce = nonce(self.header.nonce_prefix(), index, last)?;
        self.cipher.open_in_place(&nonce, &[], segment, tag)
    }
}

impl fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamOpener").field("header", &self.header).finish_non_exhaustive()
    }
}
