//! The tokio adapters behave like the std ones.
#![cfg(feature = "tokio")]

mod common;

use common::*;
use kms_crypto::CryptoError;
use kms_crypto::stream::{self, AsyncDecryptingReader, AsyncEncryptingReader, ObjectLayout, Part, StreamParams};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn async_round_trip_range_and_truncation() {
    let key = key(21);
    let ctx = context(&[("bucket", "b")]);
    let params = StreamParams { segment_size: 64, ..StreamParams::default() };
    for len in [0usize, 1, 63, 64, 65, 1000] {
        let pt = plaintext(len);
        let mut ct = Vec::new();
        AsyncEncryptingReader::new(&pt[..], &key, &ctx, Part::Whole, params)
            .unwrap()
            .read_to_end(&mut ct)
            .await
            .unwrap();
        assert_eq!(ct.len() as u64, stream::ciphertext_len(len as u64, 64).unwrap());
        assert_eq!(&*stream::decrypt(&key, &ctx, Part::Whole, &ct).unwrap(), &pt[..]);

        let mut back = Vec::new();
        AsyncDecryptingReader::new(&ct[..], &key, &ctx, Part::Whole).read_to_end(&mut back).await.unwrap();
        assert_eq!(back, pt);

        let layout = ObjectLayout::single(64, len as u64).unwrap();
        let mut whole = Vec::new();
        AsyncDecryptingReader::object(&ct[..], &key, &ctx, &layout).unwrap().read_to_end(&mut whole).await.unwrap();
        assert_eq!(whole, pt);
        if len > 2 {
            let plan = layout.plan(1..len as u64 - 1).unwrap();
            let fetched = fetch(&ct, &plan.fetch_ranges());
            let mut part = Vec::new();
            AsyncDecryptingReader::range(&fetched[..], &key, &ctx, &plan).read_to_end(&mut part).await.unwrap();
            assert_eq!(part, pt[1..len - 1]);
        }

        let mut out = Vec::new();
        let err = AsyncDecryptingReader::new(&ct[..ct.len() - 1], &key, &ctx, Part::Whole)
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.get_ref().unwrap().downcast_ref::<CryptoError>().is_some());
    }
}

#[tokio::test]
async fn async_reader_over_a_pipe_in_small_pieces() {
    let key = key(22);
    let ctx = context(&[]);
    let pt = plaintext(300_000);
    let ct = stream::encrypt(&key, &ctx, Part::Whole, StreamParams::default(), &pt).unwrap();
    let (mut tx, rx) = tokio::io::duplex(1000);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for piece in ct.chunks(777) {
            tx.write_all(piece).await.unwrap();
        }
    });
    let mut back = Vec::new();
    AsyncDecryptingReader::new(rx, &key, &ctx, Part::Whole).read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    assert_eq!(back, pt);
}
