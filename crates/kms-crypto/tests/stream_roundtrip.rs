//! Streams round-trip through every API, for both ciphers, at the sizes where segment logic
//! can go wrong, whole and by random ranges, single-part and multipart.

mod common;

use std::io::Read;
use std::num::NonZeroUsize;

use common::*;
use kms_crypto::aead::Algorithm;
use kms_crypto::stream::{
    self, DecryptingReader, EncryptingReader, EncryptingWriter, HEADER_LEN, ObjectLayout, Part, PartLayout,
    StreamParams,
};
use proptest::prelude::*;

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Aes256Gcm), Just(Algorithm::ChaCha20Poly1305)]
}

/// A segment size and a length at or near its boundaries, or many segments long.
fn sized() -> impl Strategy<Value = (u32, usize)> {
    prop_oneof![Just(16u32), Just(64u32), Just(1000u32)].prop_flat_map(|s| {
        let s_us = s as usize;
        let len = prop_oneof![
            Just(0usize),
            Just(1),
            Just(s_us - 1),
            Just(s_us),
            Just(s_us + 1),
            Just(3 * s_us),
            (2 * s_us..12 * s_us),
        ];
        (Just(s), len)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_api_round_trips(
        alg in algorithm(),
        (segment_size, len) in sized(),
        write_chunk in 1usize..200,
        read_chunk in 1usize..200,
        threads in 1usize..5,
    ) {
        let key = key(1);
        let ctx = context(&[("bucket", "b"), ("object", "o")]);
        let params = StreamParams { algorithm: alg, segment_size };
        let pt = plaintext(len);
        let expected_len = stream::ciphertext_len(len as u64, segment_size).unwrap();

        let ct = stream::encrypt(&key, &ctx, Part::Whole, params, &pt).unwrap();
        prop_assert_eq!(ct.len() as u64, expected_len);
        prop_assert_eq!(stream::plaintext_len(expected_len, segment_size).unwrap(), len as u64);
        prop_assert_eq!(&*stream::decrypt(&key, &ctx, Part::Whole, &ct).unwrap(), &pt[..]);

        let parallel = stream::encrypt_parallel(&key, &ctx, Part::Whole, params, &pt, NonZeroUsize::new(threads).unwrap()).unwrap();
        prop_assert_eq!(parallel.len(), ct.len());
        prop_assert_eq!(&*stream::decrypt(&key, &ctx, Part::Whole, &parallel).unwrap(), &pt[..]);

        let mut writer = EncryptingWriter::new(Vec::new(), &key, &ctx, Part::Whole, params).unwrap();
        write_chunked(&mut writer, &pt, write_chunk);
        let written = writer.finish().unwrap();
        prop_assert_eq!(written.len(), ct.len());
        let mut reader = DecryptingReader::new(Trickle { inner: &written[..], chunk: read_chunk }, &key, &ctx, Part::Whole);
        prop_assert_eq!(read_chunked(&mut reader, read_chunk).unwrap(), pt.clone());

        let mut enc_reader = EncryptingReader::new(Trickle { inner: &pt[..], chunk: write_chunk }, &key, &ctx, Part::Whole, params).unwrap();
        let from_reader = read_chunked(&mut enc_reader, read_chunk).unwrap();
        prop_assert_eq!(from_reader.len(), ct.len());
        let layout = ObjectLayout::single(segment_size, len as u64).unwrap();
        prop_assert_eq!(&*stream::decrypt_object(&key, &ctx, &layout, &from_reader).unwrap(), &pt[..]);
    }

    #[test]
    fn random_ranges_decrypt_from_the_covering_segments_only(
        alg in algorithm(),
        (segment_size, len) in sized(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let key = key(2);
        let ctx = context(&[("k", "v")]);
        let pt = plaintext(len);
        let ct = stream::encrypt(&key, &ctx, Part::Whole, StreamParams { algorithm: alg, segment_size }, &pt).unwrap();
        let layout = ObjectLayout::single(segment_size, len as u64).unwrap();
        prop_assert_eq!(layout.ciphertext_len(), ct.len() as u64);
        let (a, b) = (a.index(len + 1), b.index(len + 1));
        let range = a.min(b) as u64..a.max(b) as u64;
        let plan = layout.plan(range.clone()).unwrap();
        let s = segment_size as u64;
        if range.is_empty() {
            prop_assert!(plan.pieces().is_empty());
        } else {
            // Only the header and the segments that hold the range are fetched.
            let segments = (range.end - 1) / s - range.start / s + 1;
            prop_assert!(plan.fetch_len() <= HEADER_LEN as u64 + segments * (s + 16));
        }
        let fetched = fetch(&ct, &plan.fetch_ranges());
        let got = stream::decrypt_range(&key, &ctx, &plan, &fetched).unwrap();
        prop_assert_eq!(&*got, &pt[range.start as usize..range.end as usize]);
        let mut reader = DecryptingReader::range(Trickle { inner: &fetched[..], chunk: 7 }, &key, &ctx, &plan);
        prop_assert_eq!(read_chunked(&mut reader, 13).unwrap(), pt[range.start as usize..range.end as usize].to_vec());
    }

    #[test]
    fn multipart_parts_concatenate_into_one_object(
        alg in algorithm(),
        part_lens in proptest::collection::vec(0usize..300, 1..5),
        gaps in proptest::collection::vec(1u32..4, 4),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let key = key(3);
        let ctx = context(&[("bucket", "b")]);
        let segment_size = 64;
        let params = StreamParams { algorithm: alg, segment_size };
        let total: usize = part_lens.iter().sum();
        let pt = plaintext(total);
        let mut ct = Vec::new();
        let mut parts = Vec::new();
        let (mut offset, mut number) = (0, 0);
        for (i, len) in part_lens.iter().enumerate() {
            number += gaps[i];
            let part = Part::number(number).unwrap();
            // Parts are encrypted independently, as separate uploads would be.
            ct.extend(stream::encrypt(&key, &ctx, part, params, &pt[offset..offset + len]).unwrap());
            parts.push(PartLayout { part, plaintext_len: *len as u64 });
            offset += len;
        }
        let layout = ObjectLayout::multipart(segment_size, parts).unwrap();
        prop_assert_eq!(layout.ciphertext_len(), ct.len() as u64);
        prop_assert_eq!(&*stream::decrypt_object(&key, &ctx, &layout, &ct).unwrap(), &pt[..]);
        let mut reader = DecryptingReader::object(Trickle { inner: &ct[..], chunk: 50 }, &key, &ctx, &layout).unwrap();
        let mut whole = Vec::new();
        reader.read_to_end(&mut whole).unwrap();
        prop_assert_eq!(&whole, &pt);

        let (a, b) = (a.index(total + 1), b.index(total + 1));
        let range = a.min(b) as u64..a.max(b) as u64;
        let plan = layout.plan(range.clone()).unwrap();
        let fetched = fetch(&ct, &plan.fetch_ranges());
        let got = stream::decrypt_range(&key, &ctx, &plan, &fetched).unwrap();
        prop_assert_eq!(&*got, &pt[range.start as usize..range.end as usize]);
    }
}

#[test]
fn default_segment_size_many_segments() {
    let key = key(4);
    let ctx = context(&[]);
    let pt = plaintext(5 * 65536 + 123);
    let ct = stream::encrypt(&key, &ctx, Part::Whole, StreamParams::default(), &pt).unwrap();
    assert_eq!(ct.len(), HEADER_LEN + pt.len() + 6 * 16);
    let mut reader = DecryptingReader::new(&ct[..], &key, &ctx, Part::Whole);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    assert_eq!(out, pt);
    let layout = ObjectLayout::single(65536, pt.len() as u64).unwrap();
    let plan = layout.plan(65530..131080).unwrap();
    assert_eq!(plan.pieces()[0].first_segment, 0);
    let got = stream::decrypt_range(&key, &ctx, &plan, &fetch(&ct, &plan.fetch_ranges())).unwrap();
    assert_eq!(&*got, &pt[65530..131080]);
}

#[test]
fn each_stream_gets_a_fresh_salt_and_prefix() {
    let key = key(5);
    let ctx = context(&[]);
    let a = stream::encrypt(&key, &ctx, Part::Whole, StreamParams::default(), b"same").unwrap();
    let b = stream::encrypt(&key, &ctx, Part::Whole, StreamParams::default(), b"same").unwrap();
    assert_ne!(a[10..49], b[10..49]);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn sealer_enforces_the_segment_rules() {
    use kms_crypto::CryptoError;
    use kms_crypto::stream::StreamSealer;
    let key = key(6);
    let ctx = context(&[]);
    let params = StreamParams { algorithm: Algorithm::Aes256Gcm, segment_size: 16 };
    let mut sealer = StreamSealer::new(&key, &ctx, Part::Whole, params).unwrap();
    assert!(matches!(sealer.seal_segment(&mut [0; 15], false), Err(CryptoError::InvalidArgument { .. })));
    assert!(matches!(sealer.seal_segment(&mut [0; 17], true), Err(CryptoError::InvalidArgument { .. })));
    sealer.seal_segment(&mut [0; 16], false).unwrap();
    assert!(matches!(sealer.seal_segment(&mut [], true), Err(CryptoError::InvalidArgument { .. })));
    sealer.seal_segment(&mut [0; 3], true).unwrap();
    assert!(matches!(sealer.seal_segment(&mut [0; 3], true), Err(CryptoError::InvalidArgument { .. })));
    assert_eq!(sealer.segments_sealed(), 2);
    for bad in [0, 15, 4 * 1024 * 1024 + 1, u32::MAX] {
        let params = StreamParams { algorithm: Algorithm::Aes256Gcm, segment_size: bad };
        assert!(matches!(StreamSealer::new(&key, &ctx, Part::Whole, params), Err(CryptoError::InvalidArgument { .. })));
    }
}

/// A reader that fails with `WouldBlock` every other call, like a non-blocking source.
struct Flaky<'a> {
    data: &'a [u8],
    tick: bool,
    chunk: usize,
}

impl std::io::Read for Flaky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tick = !self.tick;
        if self.tick {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn readers_resume_after_transient_input_errors() {
    let key = key(7);
    let ctx = context(&[]);
    let pt = plaintext(1000);
    let ct =
        stream::encrypt(&key, &ctx, Part::Whole, StreamParams { segment_size: 64, ..StreamParams::default() }, &pt)
            .unwrap();
    for read_size in [10, 81, 4096] {
        let mut reader = DecryptingReader::new(Flaky { data: &ct, tick: false, chunk: 50 }, &key, &ctx, Part::Whole);
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(out, pt, "read size {read_size}");
    }
}

/// Segments larger than the adapters' first input window (4 KiB): their buffers fill in
/// growing windows, and a multipart object reuses one buffer across its parts. Every read
/// size, from a byte to more than a segment, and every input chunking gives the same bytes.
#[test]
fn segments_larger_than_the_first_window_round_trip() {
    let key = key(8);
    let ctx = context(&[("bucket", "b")]);
    for segment_size in [20_000u32, 65_536] {
        let s = segment_size as usize;
        let params = StreamParams { segment_size, ..StreamParams::default() };
        for len in [0, 1, 5000, s - 1, s, s + 1, 3 * s + 7] {
            let pt = plaintext(len);
            let ct = stream::encrypt(&key, &ctx, Part::Whole, params, &pt).unwrap();
            for chunk in [1000, 4097, s + 100] {
                let mut enc =
                    EncryptingReader::new(Trickle { inner: &pt[..], chunk }, &key, &ctx, Part::Whole, params).unwrap();
                let sealed = read_chunked(&mut enc, 3000).unwrap();
                assert_eq!(sealed.len(), ct.len(), "segment {s}, length {len}, chunk {chunk}");
                assert_eq!(&*stream::decrypt(&key, &ctx, Part::Whole, &sealed).unwrap(), &pt[..]);
            }
            for read_size in [1, 4096, s + 16, s + 17, 1 << 20] {
                let mut dec = DecryptingReader::new(Trickle { inner: &ct[..], chunk: 5000 }, &key, &ctx, Part::Whole);
                assert_eq!(
                    read_chunked(&mut dec, read_size).unwrap(),
                    pt,
                    "segment {s}, length {len}, read {read_size}"
                );
            }
        }

        let lens = [2 * s + 5, 0, s, 1];
        let total: usize = lens.iter().sum();
        let pt = plaintext(total);
        let (mut ct, mut parts, mut offset) = (Vec::new(), Vec::new(), 0);
        for (i, len) in lens.iter().enumerate() {
            let part = Part::number(i as u32 + 1).unwrap();
            ct.extend(stream::encrypt(&key, &ctx, part, params, &pt[offset..offset + len]).unwrap());
            parts.push(PartLayout { part, plaintext_len: *len as u64 });
            offset += len;
        }
        let layout = ObjectLayout::multipart(segment_size, parts).unwrap();
        for read_size in [999, 1 << 20] {
            let mut dec =
                DecryptingReader::object(Trickle { inner: &ct[..], chunk: 7000 }, &key, &ctx, &layout).unwrap();
            assert_eq!(read_chunked(&mut dec, read_size).unwrap(), pt, "multipart, read {read_size}");
        }
    }
}
