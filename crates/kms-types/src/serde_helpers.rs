//! Serde adapters for the documented wire shapes: whole-second durations, standard base64.

/// `Duration` as a whole number of seconds.
pub mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as whole seconds (sub-second parts are truncated).
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    /// Deserializes from whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// `Vec<u8>` as standard (padded) base64.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes bytes as standard base64.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        // The bytes may be a secret (`SecretBytes` serializes through here): the encoded copy
        // is wiped when it is dropped, like the bytes themselves.
        let mut encoded = zeroize::Zeroizing::new(String::with_capacity(value.len().div_ceil(3) * 4));
        STANDARD.encode_string(value, &mut encoded);
        serializer.serialize_str(&encoded)
    }

    /// Deserializes standard base64 into bytes; anything else is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(deserializer)?);
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("invalid base64 (expected standard, padded base64)"))
    }
}
