//! Known-answer vectors of the streaming format (the same four cases as
//! `docs/vectors/stream-v1.json`, which `docs/vectors/check.py` re-derives in Python).

use kms_types::types::EncryptionContext;

use super::keys::{Part, StreamParams, StreamSealer};
use super::{buffer, decrypt};
use crate::aead::Algorithm;
use crate::keys::PlaintextDataKey;
use crate::vectors::hex;
use std::num::NonZeroUsize;

fn context() -> EncryptionContext {
    [("bucket", "photos"), ("object", "cat.jpg")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Data key 00..1f, salt 40..5f, nonce prefix 70..76.
fn sealed(data_key: &[u8], context: &EncryptionContext, part: Part, params: StreamParams, plaintext: &[u8]) -> Vec<u8> {
    let mut random = [0u8; 39];
    random[..32].copy_from_slice(&(0x40u8..0x60).collect::<Vec<_>>());
    random[32..].copy_from_slice(&(0x70u8..0x77).collect::<Vec<_>>());
    let key = PlaintextDataKey::from_bytes(data_key).unwrap();
    let sealer = StreamSealer::with_randomness(&key, context, part, params, &random).unwrap();
    let single = buffer::seal_all(&sealer, plaintext, NonZeroUsize::MIN).unwrap();
    let parallel = buffer::seal_all(&sealer, plaintext, NonZeroUsize::new(3).unwrap()).unwrap();
    assert_eq!(single, parallel);
    assert_eq!(&*decrypt(&key, context, part, &single).unwrap(), plaintext);
    single
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn known_answer_vectors() {
    let data_key: Vec<u8> = (0..32).collect();
    let plaintext: Vec<u8> = (0..40).collect();
    let small = |algorithm| StreamParams { algorithm, segment_size: 16 };
    let cases = [
        (sealed(&data_key, &context(), Part::Whole, small(Algorithm::Aes256Gcm), &plaintext), AES_WHOLE),
        (
            sealed(&data_key, &context(), Part::number(3).unwrap(), small(Algorithm::ChaCha20Poly1305), &plaintext),
            CHACHA_PART3,
        ),
        (sealed(&data_key, &EncryptionContext::new(), Part::Whole, StreamParams::default(), &[]), AES_EMPTY),
        (sealed(&data_key[..16], &context(), Part::Whole, small(Algorithm::Aes256Gcm), &plaintext[..16]), AES128_KEY),
    ];
    for (i, (got, expected)) in cases.iter().enumerate() {
        assert_eq!(to_hex(got), *expected, "case {i}");
        assert_eq!(got, &hex(expected));
    }
}

const AES_WHOLE: &str = "4b4d5353010100000010404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f70717273747576f8934afb8e6304f1109efa975081f0554ba2b4ba63a27bc4e680aba26349a2736d8736343f635255beddf167147198872360e053d35d826f334cd626137efb669d2644ca1e9b86a0a7fb87cc7516763f98b36bdc144d48f15a13dc352468bcd183072add9051a203e055cf1b71df720aeec99c64b745860a";
const CHACHA_PART3: &str = "4b4d5353010200000010404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f70717273747576bede4d6fc1483f1c37e3351f750bb36452d9a793168b2474e1cba51c523763ff76238f2df6a719fcc7f91e8cddb4bac67d62b97cde29a9d45ebc9ef188732f65a0f3ca0813943f450b26f97394274ef3f41d918d857bbc0d5a5dc3669a40d59c6713d9678df986efb4366e85370a2e986dba5c17d7002c18";
const AES_EMPTY: &str = "4b4d5353010100010000404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f7071727374757689a9ae999c61b56d6b5c6b7c43818847b33d5814e9c4977e6525106d7bb1ed7edf40cdfa651e28c04c5aa6d256dcd1c4";
const AES128_KEY: &str = "4b4d5353010100000010404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f707172737475764133c383cd7818c5340d22615c1641edb2d9a972b6f6fbb1ea4ffcabac8c97e874db705607d3ed238040ee9d4499df617870c2c57a09b2490dcb88ebdb2ff203";
