//! Request bodies: JSON objects parsed into the request types, every failure naming the field
//! at fault (`docs/http-api.md`, "Errors").

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parses JSON, naming the offending field on failure.
///
/// Every request body is a JSON object, and so is every value the documents promise as one:
/// serde would otherwise fill a struct (or an internally tagged enum such as `master_key`)
/// from an array by position. A body that is not an object is refused before its fields are
/// read; an array standing where the parsed value has an object, at any depth, is refused
/// after ([`array_where_an_object_belongs`]).
pub(crate) fn parse_json<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && is_valid_json(bytes) {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // serde_json reports a non-string where an enum is expected (`{"key_spec": 256}`) as a
        // syntax error although the document is valid JSON: that is a bad value of the field.
        if (inner.is_syntax() || inner.is_eof()) && !(path != "." && !path.is_empty() && is_valid_json(bytes)) {
            return ApiError::invalid("body", format!("malformed JSON: {inner}"));
        }
        if inner.is_syntax() {
            return ApiError::invalid(path, "must be one of the documented string values");
        }
        let message = strip_position(&inner.to_string());
        let field = if path == "." || path.is_empty() {
            // Missing and unknown fields are reported at the parent; the name is in backticks.
            message.split('`').nth(1).map(str::to_owned).unwrap_or_else(|| "body".into())
        } else {
            path
        };
        ApiError::invalid(field, message)
    })?;
    de.end().map_err(|e| ApiError::invalid("body", format!("malformed JSON: {e}")))?;
    // Only a body with an array in it can have one where an object belongs.
    if bytes.contains(&b'[') {
        array_where_an_object_belongs(bytes, &value)?;
    }
    Ok(value)
}

/// Compares the shape of the body with the shape of what was parsed from it (serialized back):
/// wherever the parsed value is an object, the body must have had an object, not an array.
/// Both copies are zeroized afterwards (they may hold a token or a plaintext).
fn array_where_an_object_belongs<T: Serialize>(bytes: &[u8], parsed: &T) -> Result<(), ApiError> {
    let (Ok(mut input), Ok(mut output)) = (serde_json::from_slice(bytes), serde_json::to_value(parsed)) else {
        return Ok(());
    };
    let found = first_array_for_object(&input, &output, "");
    zeroize_strings(&mut input);
    zeroize_strings(&mut output);
    match found {
        Some(path) => Err(ApiError::invalid(path, "must be a JSON object")),
        None => Ok(()),
    }
}

fn first_array_for_object(input: &serde_json::Value, output: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let at = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (input, output) {
        (Value::Array(_), Value::Object(_)) => Some(if path.is_empty() { "body".to_owned() } else { path.to_owned() }),
        (Value::Object(i), Value::Object(o)) => {
            i.iter().find_map(|(k, v)| o.get(k).and_then(|out| first_array_for_object(v, out, &at(k))))
        }
        (Value::Array(i), Value::Array(o)) => {
            i.iter().zip(o).enumerate().find_map(|(n, (v, out))| first_array_for_object(v, out, &at(&n.to_string())))
        }
        _ => None,
    }
}

fn zeroize_strings(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        _ => {}
    }
}

fn is_valid_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use kms_types::types::{CreateKeyRequest, DecryptRequest, GenerateDataKeyRequest};

    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<GenerateDataKeyRequest>(br#"{"key_id": 5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("key_id"));
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = parse_json::<GenerateDataKeyRequest>(br#"{"key_id":"a","bogus":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"));
        let e = parse_json::<GenerateDataKeyRequest>(br#"{}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("key_id"));
        let e = parse_json::<GenerateDataKeyRequest>(br#"{"key_id":"a","encryption_context":{"a":1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("encryption_context.a"));
        let e = parse_json::<DecryptRequest>(br#"{"ciphertext_blob":"@@"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ciphertext_blob"));
        let e = parse_json::<GenerateDataKeyRequest>(br#"{"key_id":"a""#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        let e = parse_json::<GenerateDataKeyRequest>(br#"{"key_id":"a"} trailing"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert_eq!(parse_json::<GenerateDataKeyRequest>(br#"{"key_id":"a"}"#).unwrap().key_id, "a");
    }

    #[test]
    fn a_json_array_is_refused_where_an_object_is_promised() {
        for body in [&b"[]"[..], b"[\"name\"]", b" [\"aes128\", {\"a\":\"b\"}]", b"\"text\"", b"5", b"null"] {
            let e = parse_json::<CreateKeyRequest>(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.field.as_deref(), Some("body"), "{}", String::from_utf8_lossy(body));
            assert!(e.message.contains("JSON object"), "{}", e.message);
        }
        let e = parse_json::<crate::api::DescriptionBody>(b"[\"set by position\"]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        let e = parse_json::<crate::api::DataKeyBody>(b"[\"aes128\", {\"a\":\"b\"}]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert_eq!(parse_json::<CreateKeyRequest>(b" {}").unwrap(), CreateKeyRequest::default());
    }

    #[test]
    fn a_json_array_is_refused_where_a_nested_object_is_promised() {
        use kms_types::api_types::ConfigureKmsRequest;
        let body = br#"{"backend_type":"local","key_dir":"k","master_key":["env","V"]}"#;
        let e = parse_json::<ConfigureKmsRequest>(body).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("master_key"), "{}", e.message);
        let body = br#"{"backend_type":"vault","address":"http://a","auth_method":["token","s.secret"]}"#;
        let e = parse_json::<ConfigureKmsRequest>(body).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("auth_method"));
        assert!(!e.message.contains("s.secret"));
        // Arrays where the documents promise arrays, and brackets inside strings, are fine.
        assert_eq!(parse_json::<crate::api::UntagBody>(br#"{"tag_keys":["a","b"]}"#).unwrap().tag_keys, ["a", "b"]);
        let ok = br#"{"backend_type":"local","key_dir":"k[1]","master_key":{"type":"env","var":"V"}}"#;
        let parsed = parse_json::<ConfigureKmsRequest>(ok).unwrap();
        assert!(matches!(&parsed, ConfigureKmsRequest::Local(local) if local.key_dir == "k[1]"), "{parsed:?}");
    }

    #[test]
    fn a_non_string_enum_value_names_its_field() {
        for body in [&br#"{"key_spec":256}"#[..], br#"{"key_spec":null}"#] {
            let e = parse_json::<crate::api::DataKeyBody>(body).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("key_spec"), "{}", e.message);
            assert!(!e.message.contains("malformed"), "{}", e.message);
        }
        for (body, field) in [(&br#"{"key_usage":5}"#[..], "key_usage"), (br#"{"origin":5}"#, "origin")] {
            let e = parse_json::<CreateKeyRequest>(body).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{}: {}", String::from_utf8_lossy(body), e.message);
            assert!(!e.message.contains("malformed"), "{}", e.message);
        }
        // Broken JSON is still reported as such.
        let e = parse_json::<CreateKeyRequest>(br#"{"key_usage":5"#).unwrap_err();
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
    }
}
