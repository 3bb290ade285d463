//! The SSE vocabulary's tests: customer keys, request headers, contexts, metadata.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;

use super::*;

/// The field an `InvalidRequest` names; panics on success or on any other error kind.
fn invalid_field<T: std::fmt::Debug>(result: Result<T>) -> String {
    match result {
        Err(KmsError::InvalidRequest { field, .. }) => field,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

/// MD5 of 32 zero bytes, computed independently
/// (Python: `base64.b64encode(hashlib.md5(bytes(32)).digest())`).
#[test]
fn customer_key_md5_is_checked() {
    let key = [0u8; 32];
    let md5 = "cLyPS3KoaSFGi/joRB3OUQ==";
    assert_eq!(CustomerKey::md5_of(&key), md5);
    let k = CustomerKey::new(&key, md5).unwrap();
    assert_eq!(k.key_md5(), md5);
    let err = CustomerKey::new(&key, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == headers::SSE_C_KEY_MD5));
    let err = CustomerKey::new(&[0u8; 16], md5).unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == headers::SSE_C_KEY));
    let k = CustomerKey::from_base64(&B64.encode(key), md5).unwrap();
    assert_eq!(k.expose_secret(), &key);
    assert_eq!(invalid_field(CustomerKey::from_base64("%%%", md5)), headers::SSE_C_KEY);
}

#[test]
fn customer_key_debug_shows_no_key_material() {
    // Distinct bytes, so every encoding of the key is recognisable in the output.
    let key: [u8; 32] = std::array::from_fn(|i| 0xA0 + i as u8);
    let k = CustomerKey::new(&key, &CustomerKey::md5_of(&key)).unwrap();
    let shown = format!("{k:?} {k:#?}");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    for encoding in [B64.encode(key), hex, format!("{key:?}"), format!("{:?}", &key[..4])] {
        assert!(!shown.contains(&encoding[..12]), "{encoding} in {shown}");
    }
    assert!(shown.contains("[REDACTED]"), "{shown}");
    assert!(shown.contains(&CustomerKey::md5_of(&key)), "the MD5 is not secret and helps debugging: {shown}");
}

#[test]
fn request_headers_select_the_mode() {
    fn parse(pairs: &[(&str, &str)]) -> Result<Option<SseMode>> {
        SseMode::from_request_headers(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }
    assert!(parse(&[]).unwrap().is_none());
    assert_eq!(parse(&[(headers::SSE, "AES256")]).unwrap().unwrap().kind(), SseKind::S3);
    let ctx = B64.encode(br#"{"tenant":"a"}"#);
    match parse(&[(headers::SSE, "aws:kms"), (headers::SSE_KMS_KEY_ID, "k1"), (headers::SSE_CONTEXT, &ctx)])
        .unwrap()
        .unwrap()
    {
        SseMode::Kms { key_id, context } => {
            assert_eq!(key_id.as_deref(), Some("k1"));
            assert_eq!(context["tenant"], "a");
        }
        other => panic!("{other:?}"),
    }
    let key = B64.encode([0u8; 32]);
    let sse_c = [
        (headers::SSE_C_ALGORITHM, "AES256"),
        (headers::SSE_C_KEY, key.as_str()),
        (headers::SSE_C_KEY_MD5, "cLyPS3KoaSFGi/joRB3OUQ=="),
    ];
    assert_eq!(parse(&sse_c).unwrap().unwrap().kind(), SseKind::Customer);

    let bad: &[&[(&str, &str)]] = &[
        &[(headers::SSE, "aws:kms2")],
        &[(headers::SSE, "AES256"), (headers::SSE_KMS_KEY_ID, "k")],
        &[(headers::SSE_KMS_KEY_ID, "k")],
        &[(headers::SSE, "aws:kms"), (headers::SSE_CONTEXT, "not base64!")],
        &[(headers::SSE, "aws:kms"), (headers::SSE_CONTEXT, "WzFd")], // [1]
        &[(headers::SSE_C_ALGORITHM, "AES128"), (headers::SSE_C_KEY, &key)],
        &[(headers::SSE_C_ALGORITHM, "AES256"), (headers::SSE_C_KEY, &key)],
        &[(headers::SSE_C_KEY, &key)],
        &[(headers::SSE, "AES256"), sse_c[0], sse_c[1], sse_c[2]],
    ];
    for case in bad {
        assert!(matches!(parse(case), Err(KmsError::InvalidRequest { .. })), "{case:?}");
    }
}

#[test]
fn context_always_names_the_object_and_refuses_reserved_keys() {
    let caller: EncryptionContext = [("tenant".to_owned(), "a".to_owned())].into();
    let ctx = object_encryption_context("b", "k/1", SseKind::Kms, &caller).unwrap();
    assert_eq!(ctx[CONTEXT_BUCKET], "b");
    assert_eq!(ctx[CONTEXT_OBJECT], "k/1");
    assert_eq!(ctx[CONTEXT_MODE], "SSE-KMS");
    assert_eq!(ctx["tenant"], "a");
    let reserved: EncryptionContext = [(CONTEXT_BUCKET.to_owned(), "x".to_owned())].into();
    assert_eq!(invalid_field(object_encryption_context("b", "k", SseKind::Kms, &reserved)), "encryption_context");
    assert_eq!(invalid_field(object_encryption_context("", "k", SseKind::S3, &EncryptionContext::new())), "bucket");
    assert_eq!(invalid_field(object_encryption_context("b", "", SseKind::S3, &EncryptionContext::new())), "object_key");
}

fn kms_metadata() -> ObjectMetadata {
    let mut m = ObjectMetadata::new(SseKind::Kms, 65536);
    m.master_key_id = Some("k1".into());
    m.master_key_version = Some(2);
    m.wrapped_data_key = vec![1, 2, 3];
    m.context = [("tenant".to_owned(), "a".to_owned())].into();
    m.plaintext_size = 5;
    m.ciphertext_size = kms_crypto::stream::ciphertext_len(5, 65536).unwrap();
    m
}

/// The documented JSON shape, byte for byte (docs/sse-integration.md, "Internal metadata").
#[test]
fn json_shape_is_the_documented_one() {
    let m = kms_metadata();
    let json = m.to_json();
    assert_eq!(
        json,
        r#"{"v":1,"mode":"SSE-KMS","algorithm":"AES-256-GCM","stream_version":1,"segment_size":65536,"master_key_id":"k1","master_key_version":2,"wrapped_data_key":"AQID","context":{"tenant":"a"},"plaintext_size":5,"ciphertext_size":102}"#
    );
    assert_eq!(ObjectMetadata::from_json(&json).unwrap(), m);
    let mut c = ObjectMetadata::new(SseKind::Customer, 65536);
    c.wrapped_data_key = vec![9];
    c.customer_key_salt = Some(vec![0; 3]);
    c.customer_key_verifier = Some(vec![255; 3]);
    c.parts = Some(vec![PartInfo { number: 1, plaintext_size: 0, ciphertext_size: 97 }]);
    c.ciphertext_size = 97;
    let json = c.to_json();
    assert_eq!(
        json,
        r#"{"v":1,"mode":"SSE-C","algorithm":"AES-256-GCM","stream_version":1,"segment_size":65536,"wrapped_data_key":"CQ==","customer_key_salt":"AAAA","customer_key_verifier":"////","plaintext_size":0,"ciphertext_size":97,"parts":[{"number":1,"plaintext_size":0,"ciphertext_size":97}]}"#
    );
    assert_eq!(ObjectMetadata::from_json(&json).unwrap(), c);
}

#[test]
fn malformed_metadata_is_refused_naming_the_field() {
    let json = kms_metadata().to_json();
    for (from, to, field) in [
        (r#""v":1"#, r#""v":2"#, "metadata.v"),
        (r#""AES-256-GCM""#, r#""AES-128-GCM""#, "metadata.algorithm"),
        (r#""stream_version":1"#, r#""stream_version":9"#, "metadata.stream_version"),
        (r#""segment_size":65536"#, r#""segment_size":8"#, "metadata.segment_size"),
        (r#""master_key_version":2,"#, "", "metadata.mode"),
        (r#""SSE-KMS""#, r#""SSE-C""#, "metadata.mode"),
        (r#""SSE-KMS""#, r#""SSE-S3""#, "metadata.context"),
    ] {
        let err = ObjectMetadata::from_json(&json.replace(from, to)).unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { field: ref f, .. } if f == field), "{from}: {err:?}");
    }
    for broken in [r#"{"v":1}"#, "", "[]", &json.replace(r#""v":1"#, r#""v":1,"extra":0"#)] {
        assert!(invalid_field(ObjectMetadata::from_json(broken)).starts_with("metadata"), "{broken}");
    }
    let mut sizes = kms_metadata();
    sizes.ciphertext_size += 1;
    assert_eq!(invalid_field(sizes.layout()), "metadata");
}

#[test]
fn headers_per_mode() {
    let kms = kms_metadata().response_headers(None);
    assert_eq!(kms.get("X-Amz-Server-Side-Encryption"), Some("aws:kms"));
    assert_eq!(kms.get(headers::SSE_KMS_KEY_ID), Some("k1"));
    assert_eq!(kms.get(headers::SSE_CONTEXT), Some(B64.encode(br#"{"tenant":"a"}"#).as_str()));
    let mut s3 = ObjectMetadata::new(SseKind::S3, 65536);
    s3.master_key_id = Some("default".into());
    assert_eq!(s3.response_headers(None).iter().collect::<Vec<_>>(), vec![(headers::SSE, "AES256")]);
    let c = ObjectMetadata::new(SseKind::Customer, 65536);
    let key = CustomerKey::new(&[0; 32], "cLyPS3KoaSFGi/joRB3OUQ==").unwrap();
    let h = c.response_headers(Some(&key));
    assert_eq!(h.get(headers::SSE_C_ALGORITHM), Some("AES256"));
    assert_eq!(h.get(headers::SSE_C_KEY_MD5), Some("cLyPS3KoaSFGi/joRB3OUQ=="));
    assert_eq!(h.len(), 2);
}

#[test]
fn completing_a_multipart_upload_checks_the_parts() {
    let mut upload = kms_metadata();
    upload.plaintext_size = 0;
    upload.ciphertext_size = 0;
    upload.parts = Some(Vec::new());
    let part = |number, size| PartInfo {
        number,
        plaintext_size: size,
        ciphertext_size: kms_crypto::stream::ciphertext_len(size, 65536).unwrap(),
    };
    let done = upload.complete_multipart(vec![part(1, 100), part(3, 7)]).unwrap();
    assert_eq!(done.plaintext_size, 107);
    assert_eq!(done.layout().unwrap().parts().len(), 2);
    assert_eq!(invalid_field(done.complete_multipart(vec![part(4, 1)])), "upload", "already completed");
    invalid_field(upload.complete_multipart(vec![]));
    invalid_field(upload.complete_multipart(vec![part(2, 1), part(1, 1)]));
    invalid_field(upload.complete_multipart(vec![part(1, 1), part(1, 1)]));
    invalid_field(upload.complete_multipart(vec![part(0, 1)]));
    invalid_field(upload.complete_multipart(vec![part(10_001, 1)]));
    let mut lying = part(1, 10);
    lying.ciphertext_size += 1;
    invalid_field(upload.complete_multipart(vec![lying]));
    assert_eq!(invalid_field(kms_metadata().complete_multipart(vec![part(1, 1)])), "upload", "not a multipart upload");
}
