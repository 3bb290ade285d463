//! Reading the known-answer vector files of `docs/vectors/` (`docs/formats.md`): every crate
//! that checks a format against its vector file reads it the same way.

use serde_json::Value;

/// The `cases` of a vector file, after checking that it is the file of `format` version
/// `version`. Panics (a test failure) on anything else.
pub fn cases(text: &str, format: &str, version: u64) -> Vec<Value> {
    let doc: Value = serde_json::from_str(text).expect("a vector file is JSON");
    assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some(format), Some(version)));
    doc["cases"].as_array().expect("cases").clone()
}

/// The bytes of a vector's hex string field. Panics if `value` is not a hex string.
pub fn hex(value: &Value) -> Vec<u8> {
    unhex(value.as_str().expect("a hex string"))
}

/// The bytes of a hex string. Panics on anything that is not hex.
pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex: {text}");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_file_yields_its_cases_and_hex_fields() {
        let text = r#"{"format":"demo","version":2,"cases":[{"bytes":"00ab"}]}"#;
        let cases = cases(text, "demo", 2);
        assert_eq!(hex(&cases[0]["bytes"]), [0x00, 0xab]);
        assert_eq!(unhex(""), Vec::<u8>::new());
    }

    #[test]
    #[should_panic(expected = "assertion `left == right` failed")]
    fn another_format_or_version_is_refused() {
        cases(r#"{"format":"demo","version":1,"cases":[]}"#, "demo", 2);
    }
}
