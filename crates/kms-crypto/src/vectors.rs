//! The published test vectors of the formats this crate owns (`docs/vectors/`, described in
//! `docs/formats.md`), re-derived with this crate's code: one test per vector file, so a new
//! format version is one more file and one more test. The same files are checked by an
//! independent Python implementation written from the documentation alone
//! (`docs/vectors/check.py`, run by `cargo xtask test`).

use kms_types::types::EncryptionContext;
use serde_json::Value;

use crate::aead::{Algorithm, RandomNonceKey};
use crate::context::canonical_context;
use crate::envelope::{self, Binding, PreparedKek};
use crate::keys::{KeyEncryptionKey, PlaintextDataKey};
use crate::stream::{self, HEADER_LEN, Part, StreamOpener, StreamParams, StreamSealer};

/// A vector file, checked to be the format and version the test expects.
fn vectors(text: &str, format: &str, version: u64) -> Vec<Value> {
    let doc: Value = serde_json::from_str(text).expect("a vector file is JSON");
    assert_eq!(doc["format"], format);
    assert_eq!(doc["version"], version);
    let cases = doc["cases"].as_array().expect("cases").clone();
    assert!(!cases.is_empty());
    cases
}

fn bytes(case: &Value, field: &str) -> Vec<u8> {
    let text = case[field].as_str().unwrap_or_else(|| panic!("{field} is a hex string"));
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn number(case: &Value, field: &str) -> u32 {
    case[field].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or_else(|| panic!("{field} is a u32"))
}

fn context(case: &Value) -> EncryptionContext {
    serde_json::from_value(case["context"].clone()).expect("context is an object of strings")
}

/// What the case's envelope is bound to: its master key id, version and `context`.
fn binding<'a>(case: &'a Value, context: &'a EncryptionContext) -> Binding<'a> {
    Binding {
        master_key_id: case["master_key_id"].as_str().expect("master_key_id is a string"),
        master_key_version: number(case, "master_key_version"),
        context,
    }
}

fn algorithm(case: &Value) -> Algorithm {
    Algorithm::from_id(number(case, "algorithm") as u8).expect("a known algorithm")
}

#[test]
fn canonical_context_v1() {
    for case in vectors(include_str!("../../../docs/vectors/canonical-context-v1.json"), "canonical-context", 1) {
        assert_eq!(canonical_context(&context(&case)), bytes(&case, "encoding"), "{}", case["name"]);
    }
}

/// Version 1 is read only: every AES-256-GCM case opens to its plaintext and is bound to its
/// key id, version and context; the ChaCha20-Poly1305 case (an algorithm defined but never
/// written) is refused before any decryption, as no KEK is used with two algorithms.
#[test]
fn envelope_v1() {
    for case in vectors(include_str!("../../../docs/vectors/envelope-v1.json"), "envelope", 1) {
        let name = &case["name"];
        let context = context(&case);
        let binding = binding(&case, &context);
        let kek = PreparedKek::new(KeyEncryptionKey::from_bytes(&bytes(&case, "kek")).expect("32-byte KEK"));
        let expected = bytes(&case, "envelope");
        assert_eq!(expected[0], envelope::ENVELOPE_FORMAT_V1, "{name}");
        assert_eq!(bytes(&case, "nonce"), expected[2..envelope::V1_HEADER_LEN], "{name}");
        let aad = bytes(&case, "aad");
        assert_eq!(
            aad[..envelope::V1_HEADER_LEN],
            expected[..envelope::V1_HEADER_LEN],
            "{name}: the AAD starts with the header"
        );
        if algorithm(&case) != Algorithm::Aes256Gcm {
            assert_eq!(kek.open(&expected, &binding).unwrap_err(), crate::CryptoError::Malformed, "{name}");
            continue;
        }
        assert_eq!(*envelope::open(kek.key_encryption_key(), &expected, &binding).unwrap(), bytes(&case, "plaintext"));
        let other = Binding { master_key_version: binding.master_key_version + 1, ..binding };
        assert_eq!(kek.open(&expected, &other).unwrap_err(), crate::CryptoError::Unauthenticated, "{name}");
    }
}

/// Version 2, written: every case re-seals to the vector's bytes with the vector's salt, opens
/// to its plaintext, is bound to its key id, version and context, and refuses a changed byte.
/// The per-envelope key is re-derived with ring's HKDF as `docs/formats.md` says, and opens
/// the envelope's ciphertext under the all-zero nonce.
#[test]
fn envelope_v2() {
    use ring::{aead, hkdf};
    for case in vectors(include_str!("../../../docs/vectors/envelope-v2.json"), "envelope", 2) {
        let name = &case["name"];
        let context = context(&case);
        let binding = binding(&case, &context);
        assert_eq!(algorithm(&case), Algorithm::Aes256Gcm, "{name}");
        let kek_bytes = bytes(&case, "kek");
        let kek = PreparedKek::new(KeyEncryptionKey::from_bytes(&kek_bytes).expect("32-byte KEK"));
        let salt: [u8; envelope::SALT_LEN] = bytes(&case, "salt").try_into().expect("a 32-byte salt");
        let plaintext = bytes(&case, "plaintext");
        let expected = bytes(&case, "envelope");
        assert_eq!(kek.seal_with_salt(salt, &plaintext, &binding).unwrap(), expected, "{name}");
        assert_eq!(expected.len(), plaintext.len() + envelope::OVERHEAD, "{name}");
        assert_eq!(*kek.open(&expected, &binding).unwrap(), plaintext, "{name}");
        assert_eq!(*envelope::open(kek.key_encryption_key(), &expected, &binding).unwrap(), plaintext, "{name}");

        let aad = bytes(&case, "aad");
        assert_eq!(
            aad[..envelope::HEADER_LEN],
            expected[..envelope::HEADER_LEN],
            "{name}: the AAD starts with the header"
        );
        let mut derived = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &salt)
            .extract(&kek_bytes)
            .expand(&[b"kms-envelope-v2", &[1]], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut derived))
            .unwrap();
        assert_eq!(derived[..], bytes(&case, "derived_key"), "{name}");
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &derived).unwrap());
        let mut in_out = expected[envelope::HEADER_LEN..].to_vec();
        let zero = aead::Nonce::assume_unique_for_key([0; 12]);
        let opened = key.open_in_place(zero, aead::Aad::from(&aad), &mut in_out).expect("opens under the derived key");
        assert_eq!(opened, plaintext.as_slice(), "{name}");

        for other in [
            Binding { master_key_version: binding.master_key_version.wrapping_add(1), ..binding },
            Binding { master_key_id: "another", ..binding },
        ] {
            assert_eq!(kek.open(&expected, &other).unwrap_err(), crate::CryptoError::Unauthenticated, "{name}");
        }
        for i in 0..expected.len() {
            let mut tampered = expected.clone();
            tampered[i] ^= 1;
            // The version and algorithm bytes are framing (refused unread); the rest is sealed.
            let expected_err = if i < 2 { crate::CryptoError::Malformed } else { crate::CryptoError::Unauthenticated };
            assert_eq!(kek.open(&tampered, &binding).unwrap_err(), expected_err, "{name}: byte {i}");
        }
    }
}

#[test]
fn stream_v1() {
    for case in vectors(include_str!("../../../docs/vectors/stream-v1.json"), "stream", 1) {
        let name = &case["name"];
        let context = context(&case);
        let part = Part::number(number(&case, "part")).unwrap_or(Part::Whole);
        let params = StreamParams { algorithm: algorithm(&case), segment_size: number(&case, "segment_size") };
        let data_key = PlaintextDataKey::from_bytes(&bytes(&case, "data_key")).expect("16- or 32-byte data key");
        let mut random = [0u8; 39];
        random[..32].copy_from_slice(&bytes(&case, "salt"));
        random[32..].copy_from_slice(&bytes(&case, "nonce_prefix"));
        let mut sealer = StreamSealer::with_randomness(&data_key, &context, part, params, &random).unwrap();
        assert_eq!(sealer.header().as_bytes()[..], bytes(&case, "header"), "{name}");
        assert_eq!(sealer.header().commitment(), bytes(&case, "commitment"), "{name}");

        let plaintext = bytes(&case, "plaintext");
        let chunks: Vec<&[u8]> =
            if plaintext.is_empty() { vec![&[][..]] } else { plaintext.chunks(params.segment_size as usize).collect() };
        let segments: Vec<Value> = case["segments"].as_array().expect("segments").clone();
        assert_eq!(segments.len(), chunks.len(), "{name}");
        let segment_key = RandomNonceKey::new(params.algorithm, &bytes(&case, "segment_key")).unwrap();
        let mut whole = sealer.header().as_bytes().to_vec();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut sealed = chunk.to_vec();
            let tag = sealer.seal_segment(&mut sealed, last).unwrap();
            sealed.extend_from_slice(&tag);
            let expected = hex_value(&segments[i]);
            assert_eq!(sealed, expected, "{name}: segment {i}");
            // The vector's segment key and nonce rule open it, read as nonce ‖ ciphertext ‖ tag.
            let mut with_nonce = bytes(&case, "nonce_prefix");
            with_nonce.extend_from_slice(&(i as u32).to_be_bytes());
            with_nonce.push(u8::from(last));
            with_nonce.extend_from_slice(&expected);
            assert_eq!(&*segment_key.open(b"", &with_nonce).unwrap(), chunk, "{name}: segment {i}");
            whole.extend_from_slice(&sealed);
        }
        assert_eq!(whole, bytes(&case, "stream"), "{name}");
        assert_eq!(*stream::decrypt(&data_key, &context, part, &whole).unwrap(), plaintext, "{name}");
        let opener = StreamOpener::new(&data_key, &context, part, &whole[..HEADER_LEN]).unwrap();
        assert_eq!(opener.header().salt(), bytes(&case, "salt"));
        check_stream_key_schedule(&case, &context, part);
    }
}

/// The intermediate values of the key derivation (PRK, segment key, commitment key) follow
/// from one another as `docs/formats.md` says (HKDF-SHA256, RFC 5869, with ring's HKDF).
fn check_stream_key_schedule(case: &Value, context: &EncryptionContext, part: Part) {
    use ring::{hkdf, hmac};
    let header = bytes(case, "header");
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &bytes(case, "salt")), &bytes(case, "data_key"));
    assert_eq!(prk.as_ref(), bytes(case, "prk"));
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk.as_ref());
    let mut tail = header[..10].to_vec();
    tail.extend_from_slice(&part.as_u32().to_be_bytes());
    tail.extend_from_slice(&canonical_context(context));
    for (label, field) in
        [(&b"kms-stream-v1 segment key"[..], "segment_key"), (b"kms-stream-v1 commitment key", "commitment_key")]
    {
        let mut out = [0u8; 32];
        prk.expand(&[label, &tail], hkdf::HKDF_SHA256).and_then(|okm| okm.fill(&mut out)).unwrap();
        assert_eq!(out[..], bytes(case, field), "{field}");
    }
    let commitment = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &bytes(case, "commitment_key")), &header[..49]);
    assert_eq!(commitment.as_ref(), &header[49..]);
}

/// The bytes of a lowercase hex string (the vectors' notation), for every test of the crate.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex_value(value: &Value) -> Vec<u8> {
    bytes(&serde_json::json!({ "v": value }), "v")
}

/// A changed vector byte is refused, so the tests above cannot pass on a format that accepts
/// anything.
#[test]
fn tampered_vectors_are_refused() {
    let case = &vectors(include_str!("../../../docs/vectors/envelope-v1.json"), "envelope", 1)[0];
    let context = context(case);
    let binding = binding(case, &context);
    let kek = KeyEncryptionKey::from_bytes(&bytes(case, "kek")).unwrap();
    let mut envelope = bytes(case, "envelope");
    envelope[20] ^= 1;
    assert_eq!(envelope::open(&kek, &envelope, &binding).unwrap_err(), crate::CryptoError::Unauthenticated);

    let case = &vectors(include_str!("../../../docs/vectors/stream-v1.json"), "stream", 1)[0];
    let data_key = PlaintextDataKey::from_bytes(&bytes(case, "data_key")).unwrap();
    let mut whole = bytes(case, "stream");
    whole[HEADER_LEN - 1] ^= 1;
    assert_eq!(
        stream::decrypt(&data_key, &self::context(case), Part::Whole, &whole).unwrap_err(),
        crate::CryptoError::Unauthenticated
    );
}
