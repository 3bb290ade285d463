//! Whole-buffer encryption (single-threaded and parallel) and decryption.

use std::num::NonZeroUsize;

use kms_types::types::EncryptionContext;
use zeroize::Zeroizing;

use super::HEADER_LEN;
use super::keys::{Part, StreamParams, StreamSealer};
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
/// threads. For callers that reuse one output buffer across objects.
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

pub(crate) fn seal_all(sealer: &StreamSealer, plaintext: &[u8], threads: NonZeroUsize) -> Result<Vec<u8>, CryptoError> {
    let total = ciphertext_len(plaintext.len() as u64, sealer.segment_size() as u32)?;
    let mut out = vec![0u8; usize::try_from(total).map_err(|_| CryptoError::invalid("plaintext", "too large"))?];
    seal_into(sealer, plaintext, &mut out, threads)?;
    Ok(out)
}

fn seal_into(
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
pub fn decrypt(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    part: Part,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    drain(DecryptPump::single(data_key.expose_secret(), context, part), ciphertext)
}

/// Decrypts a whole object laid out as `layout` (for a multipart object: the parts'
/// streams, concatenated in order).
pub fn decrypt_object(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    layout: &ObjectLayout,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.len() as u64 != layout.ciphertext_len() {
        return Err(CryptoError::Unauthenticated);
    }
    drain(DecryptPump::object(data_key.expose_secret(), context, layout)?, ciphertext)
}

/// Decrypts a ranged read: `fetched` is the concatenation of `plan.fetch_ranges()` of the
/// object's ciphertext. Returns exactly the plaintext range the plan was made for.
pub fn decrypt_range(
    data_key: &PlaintextDataKey,
    context: &EncryptionContext,
    plan: &RangePlan,
    fetched: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if fetched.len() as u64 != plan.fetch_len() {
        return Err(CryptoError::Unauthenticated);
    }
    drain(DecryptPump::range(data_key.expose_secret(), context, plan), fetched)
}

/// Runs a decrypting pump over an in-memory input.
fn drain(mut pump: DecryptPump, mut input: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    // The plaintext is never longer than the input: reserve once, so the buffer is never
    // reallocated (a reallocation would leave an unzeroized copy behind).
    let mut out = Zeroizing::new(Vec::with_capacity(input.len()));
    loop {
        let ready = pump.output();
        if !ready.is_empty() {
            out.extend_from_slice(ready);
            let n = ready.len();
            pump.consume(n);
            continue;
        }
        let Some(space) = pump.input()? else { return Ok(out) };
        let n = space.len().min(input.len());
        space[..n].copy_from_slice(&input[..n]);
        input = &input[n..];
        pump.advance(n)?;
    }
}
