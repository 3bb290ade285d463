//! The tamper matrix: every way of altering a stream, or opening it with the wrong key,
//! context or part number, is a `Crypto` error, never `Ok` and never unauthenticated bytes.

mod common;

use std::io::{ErrorKind, Read};

use common::*;
use kms_crypto::CryptoError;
use kms_crypto::aead::Algorithm;
use kms_crypto::keys::PlaintextDataKey;
use kms_crypto::stream::{self, DecryptingReader, HEADER_LEN, Header, ObjectLayout, Part, PartLayout, StreamParams};
use kms_types::error::KmsError;
use kms_types::types::EncryptionContext;

const S: usize = 16;
const SEG: usize = S + 16;
const LEN: usize = 40; // segments of 16, 16 and 8 bytes

struct Fixture {
    key: PlaintextDataKey,
    ctx: EncryptionContext,
    pt: Vec<u8>,
    ct: Vec<u8>,
}

fn fixture(algorithm: Algorithm) -> Fixture {
    let key = key(9);
    let ctx = context(&[("bucket", "b"), ("object", "o")]);
    let pt = plaintext(LEN);
    let ct = stream::encrypt(&key, &ctx, Part::Whole, StreamParams { algorithm, segment_size: S as u32 }, &pt).unwrap();
    assert_eq!(ct.len(), HEADER_LEN + LEN + 3 * 16);
    Fixture { key, ctx, pt, ct }
}

fn segment(ct: &[u8], i: usize) -> &[u8] {
    let start = HEADER_LEN + i * SEG;
    &ct[start..(start + SEG).min(ct.len())]
}

/// Opens `ct` with every decrypting API and asserts each fails with a crypto error, and that
/// the reader released only plaintext of segments that precede any damage.
fn assert_rejected(f: &Fixture, ct: &[u8], key: &PlaintextDataKey, ctx: &EncryptionContext, part: Part, what: &str) {
    let err = stream::decrypt(key, ctx, part, ct).expect_err(what);
    assert_eq!(KmsError::from(err).code(), "crypto_error", "{what}: {err:?}");

    let layout = match part {
        Part::Whole => ObjectLayout::single(S as u32, LEN as u64).unwrap(),
        Part::Number(_) => {
            ObjectLayout::multipart(S as u32, vec![PartLayout { part, plaintext_len: LEN as u64 }]).unwrap()
        }
    };
    if ct.len() as u64 == layout.ciphertext_len() {
        let r = stream::decrypt_object(key, ctx, &layout, ct);
        assert!(matches!(r, Err(CryptoError::Malformed | CryptoError::Unauthenticated)), "{what}: object: {r:?}");
    }

    for chunk in [1, 7, 64] {
        let mut reader = DecryptingReader::new(Trickle { inner: ct, chunk }, key, ctx, part);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<CryptoError>()).expect("a CryptoError inside");
        assert!(matches!(inner, CryptoError::Malformed | CryptoError::Unauthenticated), "{what}");
        // Whatever came out is a prefix of the real plaintext, in whole segments.
        assert!(out.len() % S == 0 && f.pt.starts_with(&out), "{what}: released {} bytes", out.len());
        // The error sticks.
        let again = reader.read(&mut [0; 8]).map_err(|e| e.kind());
        assert_eq!(again.err(), Some(ErrorKind::InvalidData), "{what}: error did not stick");
    }
}

fn each_algorithm(test: impl Fn(&Fixture)) {
    for alg in Algorithm::ALL {
        test(&fixture(alg));
    }
}

#[test]
fn every_single_bit_flip() {
    each_algorithm(|f| {
        for bit in 0..f.ct.len() * 8 {
            let mut ct = f.ct.clone();
            ct[bit / 8] ^= 1 << (bit % 8);
            assert_rejected(f, &ct, &f.key, &f.ctx, Part::Whole, &format!("bit {bit}"));
        }
    });
}

#[test]
fn truncation_at_and_inside_every_segment() {
    each_algorithm(|f| {
        for len in 0..f.ct.len() {
            assert_rejected(f, &f.ct[..len], &f.key, &f.ctx, Part::Whole, &format!("truncated to {len}"));
        }
    });
}

#[test]
fn swapped_duplicated_dropped_segments_and_appended_bytes() {
    each_algorithm(|f| {
        let header = &f.ct[..HEADER_LEN];
        let (s0, s1, s2) = (segment(&f.ct, 0), segment(&f.ct, 1), segment(&f.ct, 2));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("swap 0 and 1", [header, s1, s0, s2].concat()),
            ("swap 1 and 2", [header, s0, s2, s1].concat()),
            ("duplicate 0", [header, s0, s0, s1, s2].concat()),
            ("duplicate 1", [header, s0, s1, s1, s2].concat()),
            ("duplicate last", [header, s0, s1, s2, s2].concat()),
            ("drop 0", [header, s1, s2].concat()),
            ("drop 1", [header, s0, s2].concat()),
            ("drop last", [header, s0, s1].concat()),
            ("only last", [header, s2].concat()),
            ("append a byte", [&f.ct[..], &[0]].concat()),
            ("append a stream", [&f.ct[..], &f.ct[..]].concat()),
            ("header twice", [header, &f.ct[..]].concat()),
            ("empty", vec![]),
            ("header only", header.to_vec()),
        ];
        for (what, ct) in &cases {
            assert_rejected(f, ct, &f.key, &f.ctx, Part::Whole, what);
        }
        // Segments of another stream under the same key and context do not splice in.
        let other = stream::encrypt(
            &f.key,
            &f.ctx,
            Part::Whole,
            StreamParams { algorithm: Header::parse(&f.ct).unwrap().algorithm(), segment_size: S as u32 },
            &f.pt,
        )
        .unwrap();
        assert_rejected(f, &[header, segment(&other, 0), s1, s2].concat(), &f.key, &f.ctx, Part::Whole, "spliced");
        assert_rejected(f, &[&other[..HEADER_LEN], s0, s1, s2].concat(), &f.key, &f.ctx, Part::Whole, "other header");
    });
}

#[test]
fn wrong_key_context_or_part_fails_at_the_header() {
    each_algorithm(|f| {
        let wrong_contexts = [
            context(&[]),
            context(&[("bucket", "b")]),
            context(&[("bucket", "b"), ("object", "O")]),
            context(&[("bucket", "b"), ("object", "o"), ("x", "")]),
        ];
        for ctx in &wrong_contexts {
            assert_rejected(f, &f.ct, &f.key, ctx, Part::Whole, &format!("context {ctx:?}"));
        }
        assert_rejected(f, &f.ct, &key(10), &f.ctx, Part::Whole, "wrong key");
        let short = PlaintextDataKey::from_bytes(&[9; 16]).unwrap();
        assert_rejected(f, &f.ct, &short, &f.ctx, Part::Whole, "key prefix");
        assert_rejected(f, &f.ct, &f.key, &f.ctx, Part::number(1).unwrap(), "part 1 for whole");
        // The commitment catches these before any segment: the opener itself refuses.
        let opener = stream::StreamOpener::new(&key(10), &f.ctx, Part::Whole, &f.ct);
        assert_eq!(opener.unwrap_err(), CryptoError::Unauthenticated);
        stream::StreamOpener::new(&f.key, &f.ctx, Part::Whole, &f.ct).unwrap();
    });
}

#[test]
fn multipart_parts_are_bound_to_their_numbers_and_order() {
    let key = key(11);
    let ctx = context(&[("bucket", "b")]);
    let params = StreamParams { algorithm: Algorithm::Aes256Gcm, segment_size: S as u32 };
    let (p1, p2) = (Part::number(1).unwrap(), Part::number(2).unwrap());
    let pt1 = plaintext(20);
    let pt2 = plaintext(20).into_iter().map(|b| b ^ 0xFF).collect::<Vec<_>>();
    let c1 = stream::encrypt(&key, &ctx, p1, params, &pt1).unwrap();
    let c2 = stream::encrypt(&key, &ctx, p2, params, &pt2).unwrap();
    let layout = |a: Part, b: Part| {
        ObjectLayout::multipart(
            S as u32,
            vec![PartLayout { part: a, plaintext_len: 20 }, PartLayout { part: b, plaintext_len: 20 }],
        )
        .unwrap()
    };
    let good = [&c1[..], &c2[..]].concat();
    assert_eq!(
        &*stream::decrypt_object(&key, &ctx, &layout(p1, p2), &good).unwrap(),
        &[&pt1[..], &pt2[..]].concat()[..]
    );

    let swapped = [&c2[..], &c1[..]].concat();
    let p3 = Part::number(3).unwrap();
    let cases = [
        ("swapped parts", swapped.clone(), layout(p1, p2)),
        ("wrong numbers", good.clone(), layout(p2, p3)),
        ("part 2 twice", [&c2[..], &c2[..]].concat(), layout(p1, p2)),
    ];
    for (what, ct, layout) in &cases {
        let err = stream::decrypt_object(&key, &ctx, layout, ct).expect_err(what);
        assert_eq!(KmsError::from(err).code(), "crypto_error", "{what}");
        let mut out = Vec::new();
        let err = DecryptingReader::object(&ct[..], &key, &ctx, layout).unwrap().read_to_end(&mut out).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}");
    }
    // A part opened alone under the wrong number, or as a whole object.
    assert_eq!(stream::decrypt(&key, &ctx, p2, &c1).err(), Some(CryptoError::Unauthenticated));
    assert_eq!(stream::decrypt(&key, &ctx, Part::Whole, &c1).err(), Some(CryptoError::Unauthenticated));
    // A dropped part is caught when the layout (from the object's metadata) lists it.
    let mut out = Vec::new();
    let err = DecryptingReader::object(&c1[..], &key, &ctx, &layout(p1, p2)).unwrap().read_to_end(&mut out);
    assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidData);
}

#[test]
fn tampered_ranged_reads_fail() {
    let f = fixture(Algorithm::Aes256Gcm);
    let layout = ObjectLayout::single(S as u32, LEN as u64).unwrap();
    for range in [0..1, 10..20, 16..32, 30..40, 39..40, 0..40] {
        let plan = layout.plan(range.clone()).unwrap();
        let fetched = fetch(&f.ct, &plan.fetch_ranges());
        assert_eq!(
            &*stream::decrypt_range(&f.key, &f.ctx, &plan, &fetched).unwrap(),
            &f.pt[range.start as usize..range.end as usize]
        );
        for bit in 0..fetched.len() * 8 {
            let mut bad = fetched.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = stream::decrypt_range(&f.key, &f.ctx, &plan, &bad);
            assert!(
                matches!(r, Err(CryptoError::Malformed | CryptoError::Unauthenticated)),
                "{range:?} bit {bit}: {r:?}"
            );
            let mut out = Vec::new();
            let r = DecryptingReader::range(&bad[..], &f.key, &f.ctx, &plan).read_to_end(&mut out);
            assert_eq!(r.map_err(|e| e.kind()).err(), Some(ErrorKind::InvalidData), "{range:?} bit {bit}");
        }
        for len in 0..fetched.len() {
            let mut out = Vec::new();
            let r = DecryptingReader::range(&fetched[..len], &f.key, &f.ctx, &plan).read_to_end(&mut out);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidData, "{range:?} truncated to {len}");
        }
        let short = stream::decrypt_range(&f.key, &f.ctx, &plan, &fetched[..fetched.len() - 1]);
        // A fetch one byte short is a truncated stream: it fails authentication.
        assert_eq!(short.err(), Some(CryptoError::Unauthenticated), "{range:?}");
        let wrong_key = stream::decrypt_range(&key(1), &f.ctx, &plan, &fetched);
        assert_eq!(wrong_key.err(), Some(CryptoError::Unauthenticated), "{range:?}");
    }
    // Segments fetched from the wrong offset (a shifted plan) do not decrypt.
    let plan = layout.plan(16..32).unwrap();
    let shifted: Vec<u8> = [&f.ct[..HEADER_LEN], segment(&f.ct, 0)].concat();
    assert_eq!(stream::decrypt_range(&f.key, &f.ctx, &plan, &shifted).err(), Some(CryptoError::Unauthenticated));
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    let f = fixture(Algorithm::Aes256Gcm);
    let mut huge = f.ct.clone();
    huge[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(Header::parse(&huge).unwrap_err(), CryptoError::Malformed);
    assert_eq!(stream::decrypt(&f.key, &f.ctx, Part::Whole, &huge).unwrap_err(), CryptoError::Malformed);
    for (at, value) in [(0, b'X'), (4, 2), (5, 0), (5, 3)] {
        let mut bad = f.ct.clone();
        bad[at] = value;
        assert_eq!(Header::parse(&bad).unwrap_err(), CryptoError::Malformed, "byte {at}");
    }
    assert_eq!(Header::parse(&f.ct[..HEADER_LEN - 1]).unwrap_err(), CryptoError::Malformed);
    let header = Header::parse(&f.ct).unwrap();
    assert_eq!(header.segment_size(), S as u32);
    assert_eq!(header.as_bytes(), &f.ct[..HEADER_LEN]);
    assert_eq!(format!("{header:?}"), "Header { algorithm: Aes256Gcm, segment_size: 16, .. }");
}

#[test]
fn large_read_buffers_never_see_unauthenticated_plaintext() {
    // With a read buffer larger than a segment, the reader opens segments in the caller's
    // buffer; a failed segment must leave no plaintext there.
    let f = fixture(Algorithm::Aes256Gcm);
    let mut ct = f.ct.clone();
    ct[HEADER_LEN + SEG + 3] ^= 0x40; // damage segment 1
    let mut reader = DecryptingReader::new(&ct[..], &f.key, &f.ctx, Part::Whole);
    let mut buf = vec![0xEE; 4096];
    assert_eq!(reader.read(&mut buf).unwrap(), S);
    assert_eq!(&buf[..S], &f.pt[..S]);
    buf.fill(0xEE);
    assert_eq!(reader.read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    assert!(buf[..S].iter().all(|&b| b == 0 || b == 0xEE), "plaintext of a forged segment leaked");
    assert!(!buf.windows(4).any(|w| f.pt[S..2 * S].windows(4).any(|p| p == w)), "segment 1 plaintext leaked");
}

#[test]
fn a_layout_with_another_segment_size_is_refused() {
    let f = fixture(Algorithm::Aes256Gcm);
    // Same total length is impossible to arrange in general; the header check fires first.
    let layout = ObjectLayout::single(32, LEN as u64).unwrap();
    let mut out = Vec::new();
    let err = DecryptingReader::object(&f.ct[..], &f.key, &f.ctx, &layout).unwrap().read_to_end(&mut out).unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<CryptoError>()).copied();
    assert_eq!(inner, Some(CryptoError::Malformed));
    assert!(out.is_empty());
    let plan = layout.plan(0..10).unwrap();
    let fetched = fetch(&f.ct, &plan.fetch_ranges());
    assert_eq!(stream::decrypt_range(&f.key, &f.ctx, &plan, &fetched).unwrap_err(), CryptoError::Malformed);
}
