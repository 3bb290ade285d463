//! Lowercase hex of digests: SigV4's hashes and signatures, request ids, the audit log's
//! context digest, token hashes. A table, not `format!` per byte: the AWS path hex-encodes
//! three digests per request on each side, and `fmt` was one of its hot frames in
//! `cargo xtask bench aws`.

/// The lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends the lowercase hex of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_byte_is_two_lowercase_digits() {
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::hex(&all), expected);
        assert_eq!(super::hex(&[]), "");
        let mut out = String::from("id-");
        super::push_hex(&mut out, &[0x00, 0xab, 0xff]);
        assert_eq!(out, "id-00abff");
    }
}
