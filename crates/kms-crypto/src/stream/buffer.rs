//! Whole-buffer encryption (single-threaded and parallel) and decryption.

use std::num::NonZeroUsize;

use kms_types::types::EncryptionContext;
use zeroize::{Zeroize, Zeroizing};

use super::HEADER_LEN;
use super::keys::{Part, StreamOpener, StreamParams, StreamSealer};
use super::layout::{ObjectLayout, RangePlan, ciphertext_len, segment_count};
use super::pump::{DecryptPump, Pump};
use crate::aead::TAG_LEN;
use crate::error::CryptoError;
use crate::keys::PlaintextDataKey;

/// Encrypts `plaintext` into one stream (header and segments), on the calling thread.
pub fn encrypt(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    params: StreamParams,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let sealer = StreamSealer::new(data_key, context, part, params)?;
    seal_all(&sealer, plaintext, NonZeroUsize::MIN)
}

/// Like [`encrypt`], with the segments spread over `threads` threads (segments are
/// independent, so the output is the same stream a single thread would write with the same
/// salt and nonce prefix).
pub fn encrypt_parallel(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    params: StreamParams,
    plaintext: &[u8],
    threads: NonZeroUsize,
) -> Result<Vec<u8>, CryptoError> {
    let sealer = StreamSealer::new(data_key, context, part, params)?;
    seal_all(&sealer, plaintext, threads)
}

/// Encrypts `plaintext` into `out`, which must be exactly
/// [`ciphertext_len`]`(plaintext.len())` bytes long, spreading the segments over `threads`
/// threads. For callers that reuse one output buffer across objects. On failure `out` is
/// wiped (a segment's plaintext is copied there to be sealed in place).
pub fn encrypt_into(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    params: StreamParams,
    plaintext: &[u8],
    out: &mut [u8],
    threads: NonZeroUsize,
) -> Result<(), CryptoError> {
    let sealer = StreamSealer::new(data_key, context, part, params)?;
    seal_into(&sealer, plaintext, out, threads)
}

/// [`encrypt`] into a `Vec` the caller keeps and reuses, spreading the segments over
/// `threads` threads: `out` is resized to the stream's length and overwritten. Bytes it
/// already holds are not zero-filled first, so a buffer reused for objects of one size costs
/// no memset and no allocation (a ciphertext is no secret: `out` is not wiped on drop). On
/// failure `out` is wiped and left empty (a segment's plaintext is copied there to be sealed).
pub fn encrypt_into_vec(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    params: StreamParams,
    plaintext: &[u8],
    out: &mut Vec<u8>,
    threads: NonZeroUsize,
) -> Result<(), CryptoError> {
    let result = StreamSealer::new(data_key, context, part, params).and_then(|sealer| {
        let total = ciphertext_len(plaintext.len() as u64, sealer.segment_size() as u32)?;
        out.resize(usize::try_from(total).map_err(|_| CryptoError::invalid("plaintext", "too large"))?, 0);
        seal_into(&sealer, plaintext, out, threads)
    });
    if result.is_err() {
        // `seal_into` wiped what it wrote; what `out` held before is an earlier ciphertext.
        out.clear();
    }
    result
}

pub(crate) fn seal_all(sealer: &StreamSealer, plaintext: &[u8], threads: NonZeroUsize) -> Result<Vec<u8>, CryptoError> {
    let total = ciphertext_len(plaintext.len() as u64, sealer.segment_size() as u32)?;
    let mut out = vec![0u8; usize::try_from(total).map_err(|_| CryptoError::invalid("plaintext", "too large"))?];
    seal_into(sealer, plaintext, &mut out, threads)?;
    Ok(out)
}

/// Seals `plaintext` into `out`; on failure wipes `out`, where a segment's plaintext may
/// have been copied to be sealed in place.
fn seal_into(
    sealer: &StreamSealer,
    plaintext: &[u8],
    out: &mut [u8],
    threads: NonZeroUsize,
) -> Result<(), CryptoError> {
    let result = seal_into_unwiped(sealer, plaintext, out, threads);
    if result.is_err() {
        out.zeroize();
    }
    result
}

fn seal_into_unwiped(
    sealer: &StreamSealer,
    plaintext: &[u8],
    out: &mut [u8],
    threads: NonZeroUsize,
) -> Result<(), CryptoError> {
    let s = sealer.segment_size();
    let total = ciphertext_len(plaintext.len() as u64, s as u32)?;
    if out.len() as u64 != total {
        return Err(CryptoError::invalid("out", "must be exactly ciphertext_len(plaintext.len()) bytes"));
    }
    out[..HEADER_LEN].copy_from_slice(sealer.header().as_bytes());
    let body = &mut out[HEADER_LEN..];
    let segments = segment_count(plaintext.len() as u64, s as u32);
    if plaintext.is_empty() {
        let tag = sealer.seal_at(0, &mut [], true)?;
        body.copy_from_slice(&tag);
        return Ok(());
    }
    let too_large = CryptoError::invalid("plaintext", "too large");
    let per_thread = usize::try_from(segments.div_ceil(threads.get() as u64)).map_err(|_| too_large)?;
    if threads.get() == 1 || per_thread as u64 == segments {
        return seal_chunk(sealer, 0, segments, plaintext, body);
    }
    std::thread::scope(|scope| {
        let mut chunks = plaintext.chunks(per_thread * s).zip(body.chunks_mut(per_thread * (s + TAG_LEN))).enumerate();
        // The first chunk is sealed on the calling thread (which would otherwise only wait).
        let (_, (first_pt, first_ct)) = chunks.next().expect("a non-empty plaintext has a chunk");
        let workers: Vec<_> = chunks
            .map(|(t, (pt, ct))| scope.spawn(move || seal_chunk(sealer, (t * per_thread) as u64, segments, pt, ct)))
            .collect();
        let here = seal_chunk(sealer, 0, segments, first_pt, first_ct);
        let joined = workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        here.and(joined)
    })
}

fn seal_chunk(
    sealer: &StreamSealer,
    first: u64,
    segments: u64,
    plaintext: &[u8],
    ciphertext: &mut [u8],
) -> Result<(), CryptoError> {
    let s = sealer.segment_size();
    for (i, (pt, ct)) in plaintext.chunks(s).zip(ciphertext.chunks_mut(s + TAG_LEN)).enumerate() {
        let index = first + i as u64;
        let (data, tag_out) = ct.split_at_mut(pt.len());
        data.copy_from_slice(pt);
        let tag = sealer.seal_at(index, data, index + 1 == segments)?;
        tag_out.copy_from_slice(&tag);
    }
    Ok(())
}

/// Decrypts a whole single stream (as written by [`encrypt`] or `EncryptingWriter`).
///
/// Allocates a fresh output of the ciphertext's length each call, which is zeroized when it
/// is dropped (a memset of the whole plaintext): for a 256 MiB object that allocation, its
/// first-touch page faults and the final wipe cost about as much as the decryption itself.
/// Callers decrypting many objects reuse one buffer with [`decrypt_into`].
pub fn decrypt(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut out = Zeroizing::new(Vec::new());
    decrypt_into(data_key, context, part, ciphertext, &mut out)?;
    Ok(out)
}

/// [`decrypt`] into a buffer the caller keeps and reuses: on success `out` holds exactly the
/// plaintext. Each segment is copied once, straight to its place in `out`, and opened there.
///
/// `out` zeroizes itself when dropped. Its capacity is reused; when it is too small it is
/// wiped before it grows (a reallocation would otherwise leave a copy of the plaintext it
/// held behind, unwiped). On any failure `out` is wiped and left empty: plaintext of
/// segments that did authenticate before the failure is never left in it.
pub fn decrypt_into(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    ciphertext: &[u8],
    out: &mut Zeroizing<Vec<u8>>,
) -> Result<(), CryptoError> {
    prepare(out, ciphertext.len());
    let result = open_stream_append(data_key.expose_secret(), context, part, None, ciphertext, out);
    wipe_on_error(out, result)
}

/// Decrypts a whole object laid out as `layout` (for a multipart object: the parts'
/// streams, concatenated in order). Allocates its output as [`decrypt`] does; see
/// [`decrypt_object_into`] to reuse one.
pub fn decrypt_object(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    layout: &ObjectLayout,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut out = Zeroizing::new(Vec::new());
    decrypt_object_into(data_key, context, layout, ciphertext, &mut out)?;
    Ok(out)
}

/// [`decrypt_object`] into a reused buffer, as [`decrypt_into`]: `out` holds exactly the
/// object's plaintext on success, and is wiped and empty on any failure.
pub fn decrypt_object_into(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    layout: &ObjectLayout,
    ciphertext: &[u8],
    out: &mut Zeroizing<Vec<u8>>,
) -> Result<(), CryptoError> {
    prepare(out, ciphertext.len());
    if ciphertext.len() as u64 != layout.ciphertext_len() {
        return Err(CryptoError::Unauthenticated);
    }
    let result = (0..layout.parts().len()).try_for_each(|i| {
        let range = layout.part_ciphertext_range(i);
        // Within `ciphertext`, whose length is the layout's: the offsets fit in usize.
        let stream = &ciphertext[range.start as usize..range.end as usize];
        let part = layout.parts()[i].part;
        open_stream_append(data_key.expose_secret(), context, part, Some(layout.segment_size()), stream, out)
    });
    wipe_on_error(out, result)
}

/// Decrypts a ranged read: `fetched` is the concatenation of `plan.fetch_ranges()` of the
/// object's ciphertext. Returns exactly the plaintext range the plan was made for. Allocates
/// its output as [`decrypt`] does; see [`decrypt_range_into`] to reuse one.
pub fn decrypt_range(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    plan: &RangePlan,
    fetched: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut out = Zeroizing::new(Vec::new());
    decrypt_range_into(data_key, context, plan, fetched, &mut out)?;
    Ok(out)
}

/// [`decrypt_range`] into a reused buffer, as [`decrypt_into`]: `out` holds exactly the
/// range's plaintext on success, and is wiped and empty on any failure.
pub fn decrypt_range_into(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    plan: &RangePlan,
    fetched: &[u8],
    out: &mut Zeroizing<Vec<u8>>,
) -> Result<(), CryptoError> {
    prepare(out, fetched.len());
    if fetched.len() as u64 != plan.fetch_len() {
        return Err(CryptoError::Unauthenticated);
    }
    let result = drain(DecryptPump::range(data_key.expose_secret(), context, plan), fetched, out);
    wipe_on_error(out, result)
}

/// Empties `out` and makes room for `bound` bytes without a reallocation during the call. A
/// buffer that must grow is wiped first: growing copies it, and the old block is freed unwiped.
fn prepare(out: &mut Zeroizing<Vec<u8>>, bound: usize) {
    if out.capacity() < bound {
        out.zeroize();
        out.reserve_exact(bound);
    }
    out.clear();
}

/// On failure, wipes what the call put in `out` and empties it.
fn wipe_on_error(out: &mut Zeroizing<Vec<u8>>, result: Result<(), CryptoError>) -> Result<(), CryptoError> {
    if result.is_err() {
        out.as_mut_slice().zeroize();
        out.clear();
    }
    result
}

/// Appends the plaintext of the single stream `ciphertext` (header and segments, nothing
/// else) to `out`, whose spare capacity must hold it. `segment_size`: what the caller's
/// layout assumes, which the header must declare. Fails as the reader does: a short header is
/// `Malformed`, any damage to the segments (truncated, reordered, extended) `Unauthenticated`.
/// On failure `out` may hold plaintext of segments that authenticated: the caller wipes it.
fn open_stream_append(
    data_key: &[u8],
    context: &EncryptionContext,
    part: Part,
    segment_size: Option<u32>,
    ciphertext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let (header, body) = ciphertext.split_at_checked(HEADER_LEN).ok_or(CryptoError::Malformed)?;
    let opener = StreamOpener::from_raw_key(data_key, context, part, header)?;
    if segment_size.is_some_and(|s| s != opener.header().segment_size()) {
        // The layout does not describe this stream: its offsets would be wrong.
        return Err(CryptoError::Malformed);
    }
    if body.is_empty() {
        // Even an empty stream has its one (empty, tagged) final segment.
        return Err(CryptoError::Unauthenticated);
    }
    let count = body.len().div_ceil(opener.segment_size() + TAG_LEN);
    for (i, segment) in body.chunks(opener.segment_size() + TAG_LEN).enumerate() {
        let len = segment.len().checked_sub(TAG_LEN).ok_or(CryptoError::Unauthenticated)?;
        let (data, tag) = segment.split_at(len);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::Unauthenticated)?;
        let start = out.len();
        out.extend_from_slice(data);
        opener.open_detached(i as u64, i + 1 == count, &mut out[start..], tag)?;
    }
    Ok(())
}

/// Runs a decrypting pump over an in-memory input, appending its output to `out` (whose
/// spare capacity holds it: the plaintext is never longer than the input).
fn drain(mut pump: DecryptPump, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
    loop {
        let ready = pump.output();
        if !ready.is_empty() {
            out.extend_from_slice(ready);
            let n = ready.len();
            pump.consume(n);
            continue;
        }
        let Some(space) = pump.input()? else { return Ok(()) };
        let n = space.len().min(input.len());
        space[..n].copy_from_slice(&input[..n]);
        input = &input[n..];
        pump.advance(n)?;
    }
}
