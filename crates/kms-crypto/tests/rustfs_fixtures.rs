//! kms's RustFS readers against fixtures written by an independent Python implementation of
//! RustFS's formats (`tests/fixtures/rustfs/generate.py`), plus tampered and truncated inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kms_crypto::cipher::{Aes256GcmCipher, ObjectCipher};
use kms_crypto::keys::KeyEncryptionKey;
use kms_crypto::rustfs::envelope::{DataKeyEnvelope, EnvelopeKeySpec};
use kms_crypto::rustfs::object::ObjectHeaders;
use kms_crypto::rustfs::record::{AtRestProtection, KeyRecord, KeyStatus, OpenedWith, RecordKeks};
use kms_crypto::rustfs::stream::{
    NonceLayout, StreamPart, decrypt_multipart_stream, decrypt_multipart_stream_with_layouts, decrypt_stream,
    decrypt_stream_with_layout,
};
use kms_crypto::rustfs::{MasterKeyString, RustfsError};
use kms_types::types::EncryptionContext;
use serde_json::Value;
use time::OffsetDateTime;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rustfs")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn master_key() -> MasterKeyString {
    MasterKeyString::new(manifest()["master_key"].as_str().unwrap().to_owned())
}

fn salt() -> Vec<u8> {
    std::fs::read(fixtures().join("keydir/.master-key.salt")).unwrap()
}

fn read_record(dir: &str, key_id: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(dir).join(format!("{key_id}.key"))).unwrap()
}

fn parse(key_id: &str) -> KeyRecord {
    KeyRecord::parse(key_id, &read_record("keydir", key_id)).unwrap()
}

fn material(key_id: &str) -> KeyEncryptionKey {
    let hex = manifest()["keys"][key_id]["material_hex"].as_str().unwrap().to_owned();
    KeyEncryptionKey::from_bytes(&unhex(&hex)).unwrap()
}

/// Rewrites one field of a record's JSON.
fn with_field(json: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut map: serde_json::Map<String, Value> = serde_json::from_slice(json).unwrap();
    map.insert(field.to_owned(), value);
    serde_json::to_vec_pretty(&map).unwrap()
}

#[test]
fn every_record_of_the_directory_opens_to_the_python_material_with_its_metadata() {
    let keks = RecordKeks::derive(&master_key(), Some(&salt())).unwrap();
    let manifest = manifest();
    let expected = manifest["keys"].as_object().unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures().join("keydir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".key").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = expected.keys().cloned().collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert_eq!(on_disk.len(), 10);

    for (key_id, want) in expected {
        let record = parse(key_id);
        let (key, opened_with) = record.open(Some(&keks)).unwrap_or_else(|e| panic!("{key_id}: {e}"));
        assert_eq!(key.expose_secret(), unhex(want["material_hex"].as_str().unwrap()), "{key_id}");
        assert_eq!(format!("{opened_with:?}"), want["opened_with"].as_str().unwrap(), "{key_id}");
        assert_eq!(format!("{:?}", record.status), want["status"].as_str().unwrap(), "{key_id}");
        assert_eq!(record.description.as_deref(), want["description"].as_str(), "{key_id}");
        let tags: BTreeMap<String, String> = serde_json::from_value(want["tags"].clone()).unwrap();
        assert_eq!(record.tags, tags, "{key_id}");
        assert_eq!(record.unknown_fields as u64, want["unknown_fields"].as_u64().unwrap(), "{key_id}");
        assert_eq!(record.version, 1);
        assert_eq!(record.deletion_date.is_some(), !want["deletion_date"].is_null(), "{key_id}");
    }
}

#[test]
fn protection_markers_dates_and_states_read_as_written() {
    assert_eq!(parse("app-data").protection, AtRestProtection::EncryptedMasterKey);
    assert_eq!(parse("legacy-sha256").protection, AtRestProtection::LegacyUnspecified);
    assert_eq!(parse("dev-plain").protection, AtRestProtection::PlaintextDevOnly);
    assert!(!parse("dev-plain").is_sealed() && parse("app-data").is_sealed());
    assert_eq!(
        parse("app-data").created_at,
        OffsetDateTime::from_unix_timestamp_nanos(1_796_208_899_308_289_095).unwrap()
    );
    // 12:00 in Paris at +02:00 is 10:00 UTC.
    assert_eq!(parse("retired").created_at.unix_timestamp(), 1_790_848_800);
    assert_eq!(parse("retired").status, KeyStatus::Disabled);
    let doomed = parse("doomed");
    assert_eq!(doomed.status, KeyStatus::PendingDeletion);
    assert_eq!(doomed.deletion_date.unwrap().unix_timestamp(), 1_798_675_200);
    assert!(!format!("{doomed:?}").contains(&manifest()["keys"]["doomed"]["material_hex"].as_str().unwrap()[..8]));
}

#[test]
fn a_wrong_master_key_opens_only_the_plaintext_records() {
    let keks = RecordKeks::derive(&MasterKeyString::new("not the master key".into()), Some(&salt())).unwrap();
    for key_id in ["app-data", "retired", "doomed", "legacy-argon2", "legacy-sha256"] {
        assert_eq!(parse(key_id).open(Some(&keks)).unwrap_err(), RustfsError::Unauthenticated, "{key_id}");
    }
    for key_id in ["dev-plain", "legacy-plain"] {
        assert_eq!(parse(key_id).open(Some(&keks)).unwrap().1, OpenedWith::Plaintext);
    }
}

#[test]
fn without_the_salt_only_legacy_records_open_and_without_a_master_key_none_sealed_does() {
    let keks = RecordKeks::derive(&master_key(), None).unwrap();
    assert_eq!(parse("app-data").open(Some(&keks)).unwrap_err(), RustfsError::Unauthenticated);
    assert_eq!(parse("legacy-sha256").open(Some(&keks)).unwrap().1, OpenedWith::LegacySha256);
    assert!(matches!(parse("app-data").open(None), Err(RustfsError::Malformed(_))));
    for key_id in ["dev-one", "dev-two"] {
        let record = KeyRecord::parse(key_id, &read_record("plaindir", key_id)).unwrap();
        let (key, opened_with) = record.open(None).unwrap();
        assert_eq!(opened_with, OpenedWith::Plaintext);
        let want = manifest()["plain_keys"][key_id]["material_hex"].as_str().unwrap().to_owned();
        assert_eq!(key.expose_secret(), unhex(&want));
    }
    let wrong_salt = RecordKeks::derive(&master_key(), Some(&[0u8; 15])).unwrap_err();
    assert!(matches!(wrong_salt, RustfsError::Malformed(_)));
}

#[test]
fn tampered_and_truncated_records_are_refused_with_their_kind() {
    let keks = RecordKeks::derive(&master_key(), Some(&salt())).unwrap();
    let json = read_record("keydir", "app-data");
    let record: Value = serde_json::from_slice(&json).unwrap();

    // A flipped bit in the sealed material, or in its nonce, fails the tag.
    let sealed = record["encrypted_key_material"].as_str().unwrap();
    let mut bytes = base64_decode(sealed);
    bytes[5] ^= 1;
    let tampered = with_field(&json, "encrypted_key_material", Value::String(base64_encode(&bytes)));
    assert_eq!(
        KeyRecord::parse("app-data", &tampered).unwrap().open(Some(&keks)).unwrap_err(),
        RustfsError::Unauthenticated
    );
    let mut nonce: Vec<u8> = serde_json::from_value(record["nonce"].clone()).unwrap();
    nonce[0] ^= 1;
    let tampered = with_field(&json, "nonce", serde_json::to_value(nonce).unwrap());
    assert_eq!(
        KeyRecord::parse("app-data", &tampered).unwrap().open(Some(&keks)).unwrap_err(),
        RustfsError::Unauthenticated
    );

    // Truncated material, nonce or file.
    let short = with_field(&json, "encrypted_key_material", Value::String(base64_encode(&bytes[..47])));
    assert!(matches!(KeyRecord::parse("app-data", &short), Err(RustfsError::Malformed(_))));
    let short = with_field(&json, "nonce", serde_json::json!([1, 2, 3]));
    assert!(matches!(KeyRecord::parse("app-data", &short), Err(RustfsError::Malformed(_))));
    for cut in [0, 1, json.len() / 2, json.len() - 1] {
        assert!(matches!(KeyRecord::parse("app-data", &json[..cut]), Err(RustfsError::Malformed(_))), "{cut}");
    }

    // Structure: another file name, unknown versions and markers, other algorithms, duplicates.
    assert!(matches!(KeyRecord::parse("other", &json), Err(RustfsError::Malformed(_))));
    let v2 = with_field(&json, "format_version", 2.into());
    assert!(matches!(KeyRecord::parse("app-data", &v2), Err(RustfsError::Unsupported(_))));
    let marker = with_field(&json, "at_rest_protection", "hsm".into());
    assert!(matches!(KeyRecord::parse("app-data", &marker), Err(RustfsError::Unsupported(_))));
    let algorithm = with_field(&json, "algorithm", "AES_128".into());
    assert!(matches!(KeyRecord::parse("app-data", &algorithm), Err(RustfsError::Unsupported(_))));
    let sealed_as_plain = with_field(&json, "at_rest_protection", "plaintext-dev-only".into());
    assert!(matches!(KeyRecord::parse("app-data", &sealed_as_plain), Err(RustfsError::Malformed(_))));
    let text = String::from_utf8(json.clone()).unwrap();
    let duplicate = text.replacen("\"status\": \"Active\",", "\"status\": \"Active\",\n  \"status\": \"Disabled\",", 1);
    assert_ne!(duplicate, text);
    assert!(matches!(KeyRecord::parse("app-data", duplicate.as_bytes()), Err(RustfsError::Malformed(_))));
    let bad_date = with_field(&json, "created_at", "last tuesday".into());
    assert!(matches!(KeyRecord::parse("app-data", &bad_date), Err(RustfsError::Malformed(_))));
}

fn envelopes() -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(fixtures().join("envelopes.json")).unwrap()).unwrap()
}

#[test]
fn every_envelope_unwraps_with_its_exact_context() {
    let cases = envelopes();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = case["envelope"].as_str().unwrap().as_bytes();
        assert!(DataKeyEnvelope::looks_like(bytes), "{name}");
        let envelope = DataKeyEnvelope::parse(bytes).unwrap();
        assert_eq!(envelope.master_key_id, case["master_key_id"].as_str().unwrap());
        assert_eq!(envelope.master_key_version, None);
        let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
        assert_eq!(envelope.context, context, "{name}");
        let key = material(&envelope.master_key_id);
        let plaintext = envelope.unwrap(&key, &context).unwrap();
        assert_eq!(&plaintext[..], unhex(case["plaintext_hex"].as_str().unwrap()), "{name}");
        if envelope.key_spec == EnvelopeKeySpec::Aes128 {
            assert_eq!(plaintext.len(), 16);
        }

        // kms compares contexts as maps, in full: no skip for an empty request, no extra pairs.
        let mut extra = context.clone();
        extra.insert("extra".into(), "pair".into());
        assert_eq!(envelope.unwrap(&key, &extra).unwrap_err(), RustfsError::Unauthenticated, "{name}");
        if !context.is_empty() {
            assert_eq!(envelope.unwrap(&key, &EncryptionContext::new()).unwrap_err(), RustfsError::Unauthenticated);
        }
        let wrong = material(if envelope.master_key_id == "default" { "app-data" } else { "default" });
        assert_eq!(envelope.unwrap(&wrong, &context).unwrap_err(), RustfsError::Unauthenticated, "{name}");
    }
}

#[test]
fn tampered_and_truncated_envelopes_are_refused() {
    let case = &envelopes()[1];
    let bytes = case["envelope"].as_str().unwrap().as_bytes().to_vec();
    let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
    let key = material("app-data");
    let mut json: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
    let mut wrapped: Vec<u8> = serde_json::from_value(json["encrypted_key"].clone()).unwrap();
    wrapped[0] ^= 0x80;
    json.insert("encrypted_key".into(), serde_json::to_value(&wrapped).unwrap());
    let tampered = DataKeyEnvelope::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(tampered.unwrap(&key, &context).unwrap_err(), RustfsError::Unauthenticated);

    wrapped[0] ^= 0x80;
    wrapped.pop();
    json.insert("encrypted_key".into(), serde_json::to_value(&wrapped).unwrap());
    let truncated = DataKeyEnvelope::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(truncated.unwrap(&key, &context).unwrap_err(), RustfsError::Unauthenticated);
    json.insert("encrypted_key".into(), serde_json::json!([1, 2, 3]));
    assert!(matches!(DataKeyEnvelope::parse(&serde_json::to_vec(&json).unwrap()), Err(RustfsError::Malformed(_))));
    json.insert("encrypted_key".into(), serde_json::to_value(vec![0u8; 48]).unwrap());
    json.insert("key_spec".into(), "AES_512".into());
    assert!(matches!(DataKeyEnvelope::parse(&serde_json::to_vec(&json).unwrap()), Err(RustfsError::Malformed(_))));

    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(!DataKeyEnvelope::looks_like(&bytes[..cut]));
        assert!(matches!(DataKeyEnvelope::parse(&bytes[..cut]), Err(RustfsError::Malformed(_))), "{cut}");
    }
    assert!(!DataKeyEnvelope::looks_like(b"\x01kms binary ciphertext"));
    assert!(!DataKeyEnvelope::looks_like(br#"{"key_id":"x"}"#));
}

fn object(name: &str) -> (BTreeMap<String, String>, Vec<u8>) {
    let dir = fixtures().join("objects");
    let headers = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.headers.json"))).unwrap()).unwrap();
    (headers, std::fs::read(dir.join(format!("{name}.body"))).unwrap())
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

const SIZES: [usize; 6] = [0, 1, 8191, 8192, 8193, 100_000];

#[test]
fn whole_objects_of_every_size_decrypt_to_the_python_plaintext() {
    let key = material("app-data");
    for size in SIZES {
        let (headers, body) = object(&format!("object-{size}"));
        assert_eq!(body.len(), size, "the body is as long as the plaintext");
        let parsed = ObjectHeaders::from_headers(&headers).unwrap();
        assert_eq!(parsed.master_key_id, "app-data");
        assert_eq!(parsed.context["object_key"], format!("dir/object-{size}.bin"));
        assert_eq!(&parsed.decrypt(&key, &body).unwrap()[..], pattern(size), "{size}");
        assert_eq!(parsed.decrypt(&material("default"), &body).unwrap_err(), RustfsError::Unauthenticated);
    }
}

#[test]
fn truncated_extended_or_altered_objects_are_refused() {
    let key = material("app-data");
    for size in SIZES {
        let (headers, body) = object(&format!("object-{size}"));
        let parsed = ObjectHeaders::from_headers(&headers).unwrap();
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(parsed.decrypt(&key, &longer).unwrap_err(), RustfsError::Unauthenticated, "{size}");
        if size > 0 {
            assert_eq!(parsed.decrypt(&key, &body[..size - 1]).unwrap_err(), RustfsError::Unauthenticated);
            assert_eq!(parsed.decrypt(&key, &body[..size / 2]).unwrap_err(), RustfsError::Unauthenticated);
            let mut flipped = body.clone();
            flipped[size / 2] ^= 1;
            assert_eq!(parsed.decrypt(&key, &flipped).unwrap_err(), RustfsError::Unauthenticated);
        }
    }

    let (headers, body) = object("object-8193");
    // The same context as a map, written differently: the AAD is the exact string, so it fails.
    let context = &headers["x-rustfs-encryption-context"];
    let mut spaced = headers.clone();
    spaced.insert("x-rustfs-encryption-context".into(), context.replace(",", ", "));
    let parsed = ObjectHeaders::from_headers(&spaced).unwrap();
    assert_eq!(parsed.decrypt(&key, &body).unwrap_err(), RustfsError::Unauthenticated);
    // Another algorithm, or another object's tag or envelope.
    let (other, _) = object("object-8191");
    for header in ["algorithm", "tag", "iv", "key"] {
        let name = format!("x-rustfs-encryption-{header}");
        let mut swapped = headers.clone();
        let value = if header == "algorithm" { "ChaCha20Poly1305".to_owned() } else { other[&name].clone() };
        swapped.insert(name, value);
        let parsed = ObjectHeaders::from_headers(&swapped).unwrap();
        assert_eq!(parsed.decrypt(&key, &body).unwrap_err(), RustfsError::Unauthenticated, "{header}");
    }
    // Missing or broken headers.
    for header in ["key-id", "algorithm", "iv", "tag", "key", "context"] {
        let mut missing = headers.clone();
        missing.remove(&format!("x-rustfs-encryption-{header}"));
        assert!(matches!(ObjectHeaders::from_headers(&missing), Err(RustfsError::Malformed(_))), "{header}");
    }
    let mut short_iv = headers.clone();
    short_iv.insert("x-rustfs-encryption-iv".into(), "AAAA".into());
    assert!(matches!(ObjectHeaders::from_headers(&short_iv), Err(RustfsError::Malformed(_))));
    let mut algorithm = headers.clone();
    algorithm.insert("x-rustfs-encryption-algorithm".into(), "AES128".into());
    assert!(matches!(ObjectHeaders::from_headers(&algorithm), Err(RustfsError::Unsupported(_))));
    let mut other_key = headers.clone();
    other_key.insert("x-rustfs-encryption-key-id".into(), "default".into());
    assert!(matches!(ObjectHeaders::from_headers(&other_key), Err(RustfsError::Malformed(_))));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A streaming object's body, data key (unwrapped with the header's context) and base nonce.
fn stream(name: &str) -> (Vec<u8>, zeroize::Zeroizing<Vec<u8>>, [u8; 12]) {
    let dir = fixtures().join("streams");
    let headers: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.headers.json"))).unwrap()).unwrap();
    let envelope = DataKeyEnvelope::parse(&base64_decode(&headers["x-rustfs-encryption-key"])).unwrap();
    let context: EncryptionContext = serde_json::from_str(&headers["x-rustfs-encryption-context"]).unwrap();
    let data_key = envelope.unwrap(&material(&envelope.master_key_id), &context).unwrap();
    let nonce = base64_decode(&headers["x-rustfs-encryption-iv"]).try_into().unwrap();
    (std::fs::read(dir.join(format!("{name}.body"))).unwrap(), data_key, nonce)
}

/// The byte offsets where each block header (and the end header) starts.
fn block_starts(body: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut at = 0;
    while body[at] == 0 {
        let len = usize::from(body[at + 1]) | usize::from(body[at + 2]) << 8 | usize::from(body[at + 3]) << 16;
        at += 8 + len - 4;
        starts.push(at);
    }
    starts
}

#[test]
fn streaming_objects_of_every_size_and_layout_decrypt_to_the_python_plaintext() {
    let manifest = manifest();
    let streams = manifest["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 8);
    for case in streams {
        let name = case["name"].as_str().unwrap();
        let size = case["size"].as_u64().unwrap();
        let (body, key, nonce) = stream(name);
        let plaintext = decrypt_stream(&key, &nonce, &body, size).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&plaintext[..], pattern(size as usize), "{name}");
    }
    assert_eq!(block_starts(&stream("stream-short-reads").0).len(), 6, "4 short blocks + 1 + the end");
}

#[test]
fn streams_cut_anywhere_extended_reordered_or_altered_are_refused() {
    for name in ["stream-8193", "stream-100000", "stream-short-reads"] {
        let (body, key, nonce) = stream(name);
        let size = manifest()["streams"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["size"]
            .as_u64()
            .unwrap();
        let open = |bytes: &[u8], len: u64| decrypt_stream(&key, &nonce, bytes, len);
        let starts = block_starts(&body);
        let end = *starts.last().unwrap();

        // Cut at the last block boundary and a forged end header: only the length tells.
        let mut cut = body[..starts[starts.len() - 2]].to_vec();
        cut.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(open(&cut, size).unwrap_err(), RustfsError::Unauthenticated, "{name}");
        // Without the end header (RustFS's own reader accepts this), mid-block, mid-header.
        for cut in [end, end - 1, starts[1] + 3, starts[1] + 20] {
            assert_eq!(open(&body[..cut], size).unwrap_err(), RustfsError::Unauthenticated, "{name} {cut}");
        }
        // Trailing bytes, a wrong expected length, a flipped byte, two blocks swapped.
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(open(&longer, size).unwrap_err(), RustfsError::Unauthenticated);
        assert_eq!(open(&body, size - 1).unwrap_err(), RustfsError::Unauthenticated);
        assert_eq!(open(&body, size + 1).unwrap_err(), RustfsError::Unauthenticated);
        let mut flipped = body.clone();
        flipped[starts[1] - 5] ^= 1;
        assert_eq!(open(&flipped, size).unwrap_err(), RustfsError::Unauthenticated);
        if name == "stream-100000" {
            let mut swapped = body[starts[1]..starts[2]].to_vec();
            swapped.extend_from_slice(&body[..starts[1]]);
            swapped.extend_from_slice(&body[starts[2]..]);
            assert_eq!(open(&swapped, size).unwrap_err(), RustfsError::Unauthenticated);
        }
        // Structure: an unknown block type, a length shorter than its CRC.
        let mut typed = body.clone();
        typed[0] = 7;
        assert!(matches!(open(&typed, size), Err(RustfsError::Malformed(_))));
        let mut short = body.clone();
        short[1..4].copy_from_slice(&[2, 0, 0]);
        assert!(matches!(open(&short, size), Err(RustfsError::Malformed(_))));
        // Another data key.
        assert_eq!(decrypt_stream(&[0; 32], &nonce, &body, size).unwrap_err(), RustfsError::Unauthenticated);
    }
}

/// A multipart object: body, data key (unwrapped with the context RustFS's S3 server asks for:
/// the stored caller context plus `{bucket: "bucket/key"}`), base nonce, and its part list.
fn multipart(name: &str) -> (Vec<u8>, zeroize::Zeroizing<Vec<u8>>, [u8; 12], Vec<StreamPart>) {
    let manifest = manifest();
    let case = manifest["multipart"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    let dir = fixtures().join("multipart");
    let headers: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.headers.json"))).unwrap()).unwrap();
    let mut context: EncryptionContext =
        headers.get("x-rustfs-encryption-context").map(|json| serde_json::from_str(json).unwrap()).unwrap_or_default();
    let (bucket, key) = (case["bucket"].as_str().unwrap(), case["object_key"].as_str().unwrap());
    context.entry(bucket.to_owned()).or_insert_with(|| format!("{bucket}/{key}"));
    let envelope = DataKeyEnvelope::parse(&base64_decode(&headers["x-rustfs-encryption-key"])).unwrap();
    let data_key = envelope.unwrap(&material(&envelope.master_key_id), &context).unwrap();
    let nonce = base64_decode(&headers["x-rustfs-encryption-iv"]).try_into().unwrap();
    let parts = case["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| StreamPart {
            number: p["number"].as_u64().unwrap() as u32,
            plaintext_len: p["size"].as_u64().unwrap(),
        })
        .collect();
    (std::fs::read(dir.join(format!("{name}.body"))).unwrap(), data_key, nonce, parts)
}

/// The byte offsets where each part's segment starts, and the body's end.
fn segment_starts(body: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut at = 0;
    while at < body.len() {
        at += *block_starts(&body[at..]).last().unwrap() + 8;
        starts.push(at);
    }
    starts
}

#[test]
fn multipart_objects_of_every_layout_decrypt_to_the_python_plaintext() {
    let manifest = manifest();
    let cases = manifest["multipart"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (body, key, nonce, parts) = multipart(name);
        let (plaintext, layouts) = decrypt_multipart_stream_with_layouts(&key, &nonce, &body, &parts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let total: u64 = parts.iter().map(|p| p.plaintext_len).sum();
        assert_eq!(&plaintext[..], pattern(total as usize), "{name}");
        let expected = match case["layout"].as_str().unwrap() {
            "counter" => NonceLayout::Counter,
            "legacy-part-counter" => NonceLayout::LegacyPartCounter,
            _ => NonceLayout::LegacyPartSingleNonce,
        };
        for (part, layout) in parts.iter().zip(&layouts) {
            // An empty part has no block to tell its layout by.
            if part.plaintext_len > 0 {
                assert_eq!(*layout, expected, "{name} part {}", part.number);
            }
        }
        assert_eq!(segment_starts(&body).len(), parts.len() + 1, "{name}");
    }
    // A multipart body is not a single-part one, and the other way round.
    let (body, key, nonce, parts) = multipart("multipart-one");
    assert_eq!(decrypt_stream(&key, &nonce, &body, parts[0].plaintext_len).unwrap_err(), RustfsError::Unauthenticated);
    let (single, single_key, single_nonce) = stream("stream-100000");
    let as_part = [StreamPart { number: 1, plaintext_len: 100_000 }];
    assert_eq!(
        decrypt_multipart_stream(&single_key, &single_nonce, &single, &as_part).unwrap_err(),
        RustfsError::Unauthenticated
    );
}

#[test]
fn multipart_objects_with_parts_reordered_dropped_duplicated_or_cut_are_refused() {
    let (body, key, nonce, parts) = multipart("multipart-3");
    let open = |bytes: &[u8], parts: &[StreamPart]| decrypt_multipart_stream(&key, &nonce, bytes, parts);
    assert!(open(&body, &parts).is_ok());
    let seg = segment_starts(&body);
    let part = |i: usize| &body[seg[i]..seg[i + 1]];
    let joined = |order: &[usize]| order.iter().flat_map(|&i| part(i).to_vec()).collect::<Vec<u8>>();

    // Reordered, duplicated, dropped parts (with the part list as stored, and with a list
    // rewritten to match the new body's lengths).
    for (order, what) in [(vec![1, 0, 2], "swapped"), (vec![0, 0, 2], "duplicated"), (vec![0, 1, 1], "duplicated last")]
    {
        assert_eq!(open(&joined(&order), &parts).unwrap_err(), RustfsError::Unauthenticated, "{what}");
        let relabelled: Vec<StreamPart> = order
            .iter()
            .zip(&parts)
            .map(|(&i, listed)| StreamPart { number: listed.number, plaintext_len: parts[i].plaintext_len })
            .collect();
        assert_eq!(open(&joined(&order), &relabelled).unwrap_err(), RustfsError::Unauthenticated, "{what}");
    }
    for dropped in 0..3 {
        let order: Vec<usize> = (0..3).filter(|&i| i != dropped).collect();
        assert_eq!(open(&joined(&order), &parts).unwrap_err(), RustfsError::Unauthenticated, "drop {dropped}");
        let listed: Vec<StreamPart> = order.iter().map(|&i| parts[i]).collect();
        // Each part authenticates alone, so a body and a part list both missing the same part
        // read: the part list is the object's metadata, trusted like the expected length.
        assert!(open(&joined(&order), &listed).is_ok(), "drop {dropped}, list rewritten too");
    }
    // A part's blocks under another part number.
    let mut renumbered = parts.clone();
    renumbered[2].number = 4;
    assert_eq!(open(&body, &renumbered).unwrap_err(), RustfsError::Unauthenticated);

    // Part 1 cut at a block boundary with a forged end header: its listed length tells.
    let blocks = block_starts(part(0));
    let mut cut = part(0)[..blocks[blocks.len() - 2]].to_vec();
    cut.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0]);
    cut.extend_from_slice(&body[seg[1]..]);
    assert_eq!(open(&cut, &parts).unwrap_err(), RustfsError::Unauthenticated);
    // Without the last end header, trailing bytes, a flipped byte, a wrong listed length.
    assert_eq!(open(&body[..body.len() - 8], &parts).unwrap_err(), RustfsError::Unauthenticated);
    let mut longer = body.clone();
    longer.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(open(&longer, &parts).unwrap_err(), RustfsError::Unauthenticated);
    let mut flipped = body.clone();
    flipped[seg[1] + 30] ^= 1;
    assert_eq!(open(&flipped, &parts).unwrap_err(), RustfsError::Unauthenticated);
    let mut wrong_len = parts.clone();
    wrong_len[2].plaintext_len += 1;
    assert_eq!(open(&body, &wrong_len).unwrap_err(), RustfsError::Unauthenticated);
    // A malformed part list; another data key.
    assert_eq!(open(&body, &[]).unwrap_err(), RustfsError::Malformed("stream part list"));
    let unsorted = [parts[1], parts[0], parts[2]];
    assert_eq!(open(&body, &unsorted).unwrap_err(), RustfsError::Malformed("stream part number"));
    assert_eq!(decrypt_multipart_stream(&[7; 32], &nonce, &body, &parts).unwrap_err(), RustfsError::Unauthenticated);
}

#[test]
fn older_layouts_read_with_their_limit_and_a_segment_mixing_layouts_is_refused() {
    for name in ["multipart-legacy-counter", "multipart-legacy-single"] {
        let (body, key, nonce, parts) = multipart(name);
        assert!(decrypt_multipart_stream(&key, &nonce, &body, &parts).is_ok(), "{name}");
    }
    let (body, key, nonce) = stream("stream-single-nonce");
    let size = 3 * 8192 + 17;
    let starts = block_starts(&body);
    // The documented limit: blocks 1 and 2 of a single-nonce stream swapped still authenticate.
    let mut swapped = body[..starts[1]].to_vec();
    swapped.extend_from_slice(&body[starts[2]..starts[3]]);
    swapped.extend_from_slice(&body[starts[1]..starts[2]]);
    swapped.extend_from_slice(&body[starts[3]..]);
    let (reordered, layout) = decrypt_stream_with_layout(&key, &nonce, &swapped, size).unwrap();
    assert_eq!(layout, NonceLayout::SingleNonce);
    assert_ne!(&reordered[..], pattern(size as usize), "reordering is not detected in the single-nonce layout");
    // Block 1 resealed under the counter layout's nonce: blocks 0-1 fit the counter layout,
    // blocks 0, 2, 3 the single-nonce one, no layout fits them all.
    let cipher = Aes256GcmCipher::new(&key).unwrap();
    let mut counter_nonce = nonce;
    counter_nonce[11] = counter_nonce[11].wrapping_add(1);
    assert_ne!(counter_nonce[11], 0, "the fixture's nonce does not carry");
    let (ciphertext, tag) = cipher.encrypt(&pattern(2 * 8192)[8192..], &counter_nonce, &[]).unwrap();
    let mut mixed = body.clone();
    let block_1 = starts[1] + 8 + 2; // after the header and the 2-byte varint of 8192
    mixed[block_1..block_1 + 8192].copy_from_slice(&ciphertext);
    mixed[block_1 + 8192..block_1 + 8192 + 16].copy_from_slice(&tag);
    assert_eq!(decrypt_stream(&key, &nonce, &mixed, size).unwrap_err(), RustfsError::Unauthenticated);
    // ... while the same block in a two-block counter stream reads.
    let mut two = mixed[..starts[2]].to_vec();
    two.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0]);
    let (plaintext, layout) = decrypt_stream_with_layout(&key, &nonce, &two, 2 * 8192).unwrap();
    assert_eq!((&plaintext[..], layout), (&pattern(2 * 8192)[..], NonceLayout::Counter));
}
