//! The whole-buffer `*_into` variants: one caller buffer reused across objects gives the same
//! bytes as the allocating functions, and a failed call (tampered, truncated, reordered,
//! wrong key) leaves no plaintext of that call, nor of the object decrypted before it, in the
//! reused buffer.

mod common;

use std::num::NonZeroUsize;

use common::*;
use kms_crypto::CryptoError;
use kms_crypto::aead::Algorithm;
use kms_crypto::stream::{self, HEADER_LEN, ObjectLayout, Part, PartLayout, StreamParams};
use zeroize::Zeroizing;

const S: usize = 64;
const SEG: usize = S + 16;

fn params() -> StreamParams {
    StreamParams { algorithm: Algorithm::Aes256Gcm, segment_size: S as u32 }
}

fn one_thread() -> NonZeroUsize {
    NonZeroUsize::MIN
}

/// A buffer already holding the plaintext of an earlier object, as a reused buffer does.
fn used_buffer(earlier: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(earlier.to_vec())
}

#[test]
fn a_reused_buffer_round_trips_objects_of_every_size() {
    let key = key(1);
    let ctx = context(&[("bucket", "b")]);
    let mut sealed = Vec::new();
    let mut opened = Zeroizing::new(Vec::new());
    // Growing, shrinking, empty and exact-multiple sizes through the same two buffers.
    for len in [3 * S + 5, 0, 10 * S, 1, S, 4 * S - 1, 2] {
        let pt = plaintext(len);
        stream::encrypt_into_vec(&key, &ctx, Part::Whole, params(), &pt, &mut sealed, one_thread()).unwrap();
        assert_eq!(sealed.len() as u64, stream::ciphertext_len(len as u64, S as u32).unwrap(), "len {len}");
        assert_eq!(&*stream::decrypt(&key, &ctx, Part::Whole, &sealed).unwrap(), &pt[..], "len {len}");
        stream::decrypt_into(&key, &ctx, Part::Whole, &sealed, &mut opened).unwrap();
        assert_eq!(&opened[..], &pt[..], "len {len}");
    }
}

#[test]
fn encrypting_into_a_vec_on_two_threads_writes_a_stream_one_thread_reads() {
    let key = key(2);
    let ctx = context(&[]);
    let pt = plaintext(33 * S + 7);
    let mut sealed = vec![0xEE; 5];
    stream::encrypt_into_vec(&key, &ctx, Part::Whole, params(), &pt, &mut sealed, NonZeroUsize::new(2).unwrap())
        .unwrap();
    let mut opened = used_buffer(b"an earlier object");
    stream::decrypt_into(&key, &ctx, Part::Whole, &sealed, &mut opened).unwrap();
    assert_eq!(&opened[..], &pt[..]);
}

#[test]
fn a_failed_decryption_leaves_the_reused_buffer_empty() {
    let key = key(3);
    let ctx = context(&[("object", "o")]);
    let pt = plaintext(3 * S + 10); // segments of 64, 64, 64 and 10 bytes
    let ct = stream::encrypt(&key, &ctx, Part::Whole, params(), &pt).unwrap();
    let seg = |i: usize| HEADER_LEN + i * SEG..(HEADER_LEN + (i + 1) * SEG).min(ct.len());

    let mut tampered_last = ct.clone();
    *tampered_last.last_mut().unwrap() ^= 1;
    let mut tampered_middle = ct.clone();
    tampered_middle[seg(2).start + 3] ^= 0x80;
    let mut reordered = ct.clone();
    reordered[seg(0)].copy_from_slice(&ct[seg(1)]);
    reordered[seg(1)].copy_from_slice(&ct[seg(0)]);
    let without_final = ct[..seg(3).start].to_vec();
    let extended = [&ct[..], &[0u8; 16][..]].concat();
    let mut header = ct.clone();
    header[HEADER_LEN - 1] ^= 1;
    let cases: [(&str, &[u8], CryptoError); 8] = [
        ("tampered final segment", &tampered_last, CryptoError::Unauthenticated),
        ("tampered middle segment", &tampered_middle, CryptoError::Unauthenticated),
        ("reordered segments", &reordered, CryptoError::Unauthenticated),
        ("final segment dropped", &without_final, CryptoError::Unauthenticated),
        ("truncated inside a segment", &ct[..ct.len() - 5], CryptoError::Unauthenticated),
        ("bytes appended", &extended, CryptoError::Unauthenticated),
        ("header commitment changed", &header, CryptoError::Unauthenticated),
        ("truncated inside the header", &ct[..HEADER_LEN - 1], CryptoError::Malformed),
    ];
    let earlier = plaintext(5 * S).into_iter().map(|b| b ^ 0x5A).collect::<Vec<_>>();
    for (what, bad, expected) in cases {
        let mut out = used_buffer(&earlier);
        let err = stream::decrypt_into(&key, &ctx, Part::Whole, bad, &mut out).expect_err(what);
        assert_eq!(err, expected, "{what}");
        // Segments before the damage did authenticate: their plaintext must not stay either.
        assert!(out.is_empty(), "{what}: {} bytes left in the buffer", out.len());
        assert_eq!(stream::decrypt(&key, &ctx, Part::Whole, bad).unwrap_err(), expected, "{what}");
    }

    let mut out = used_buffer(&earlier);
    let err = stream::decrypt_into(&common::key(4), &ctx, Part::Whole, &ct, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0), "wrong key");
    let err = stream::decrypt_into(&key, &context(&[]), Part::Whole, &ct, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0), "wrong context");
    // The buffer is still usable after a failure.
    stream::decrypt_into(&key, &ctx, Part::Whole, &ct, &mut out).unwrap();
    assert_eq!(&out[..], &pt[..]);
}

#[test]
fn objects_and_ranges_decrypt_into_a_reused_buffer_and_fail_empty() {
    let key = key(5);
    let ctx = context(&[("bucket", "b")]);
    let (p1, p2) = (Part::number(1).unwrap(), Part::number(2).unwrap());
    let (pt1, pt2) = (plaintext(2 * S + 3), plaintext(S));
    let c1 = stream::encrypt(&key, &ctx, p1, params(), &pt1).unwrap();
    let c2 = stream::encrypt(&key, &ctx, p2, params(), &pt2).unwrap();
    let parts = |a, b| {
        vec![PartLayout { part: a, plaintext_len: pt1.len() as u64 }, PartLayout { part: b, plaintext_len: S as u64 }]
    };
    let layout = ObjectLayout::multipart(S as u32, parts(p1, p2)).unwrap();
    let object = [&c1[..], &c2[..]].concat();
    let whole = [&pt1[..], &pt2[..]].concat();

    let mut out = used_buffer(&plaintext(7));
    stream::decrypt_object_into(&key, &ctx, &layout, &object, &mut out).unwrap();
    assert_eq!(&out[..], &whole[..]);
    assert_eq!(&*stream::decrypt_object(&key, &ctx, &layout, &object).unwrap(), &whole[..]);

    // The first part authenticates, the second does not: nothing of either is left.
    let mut damaged = object.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let err = stream::decrypt_object_into(&key, &ctx, &layout, &damaged, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0));
    // The second part opened under another part number fails at its header.
    let renumbered = ObjectLayout::multipart(S as u32, parts(p1, Part::number(3).unwrap())).unwrap();
    let mut out = used_buffer(&whole);
    let err = stream::decrypt_object_into(&key, &ctx, &renumbered, &object, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0));
    let other_size = ObjectLayout::multipart(2 * S as u32, parts(p1, p2)).unwrap();
    let err = stream::decrypt_object_into(&key, &ctx, &other_size, &object, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0), "the lengths no longer match");

    let plan = layout.plan(S as u64 + 1..pt1.len() as u64 + 5).unwrap();
    let fetched = fetch(&object, &plan.fetch_ranges());
    let mut out = used_buffer(&whole);
    stream::decrypt_range_into(&key, &ctx, &plan, &fetched, &mut out).unwrap();
    assert_eq!(&out[..], &whole[S + 1..pt1.len() + 5]);
    let mut bad = fetched.clone();
    *bad.last_mut().unwrap() ^= 1;
    let err = stream::decrypt_range_into(&key, &ctx, &plan, &bad, &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0));
    let err = stream::decrypt_range_into(&key, &ctx, &plan, &fetched[1..], &mut out).unwrap_err();
    assert_eq!((err, out.len()), (CryptoError::Unauthenticated, 0), "short fetch");
}

#[test]
fn encrypting_into_a_vec_with_bad_parameters_leaves_it_empty() {
    let mut sealed = vec![0xEE; 100];
    let bad = StreamParams { algorithm: Algorithm::Aes256Gcm, segment_size: 8 };
    let err = stream::encrypt_into_vec(&key(7), &context(&[]), Part::Whole, bad, b"x", &mut sealed, one_thread())
        .unwrap_err();
    assert!(matches!(err, CryptoError::InvalidArgument { .. }), "{err:?}");
    assert!(sealed.is_empty());
}

#[test]
fn encrypt_into_a_slice_of_the_wrong_length_is_refused() {
    let key = key(6);
    let ctx = context(&[]);
    let pt = plaintext(100);
    let mut out = vec![0u8; stream::ciphertext_len(100, S as u32).unwrap() as usize + 1];
    let err = stream::encrypt_into(&key, &ctx, Part::Whole, params(), &pt, &mut out, one_thread()).unwrap_err();
    assert!(matches!(err, CryptoError::InvalidArgument { field: "out", .. }), "{err:?}");
}
