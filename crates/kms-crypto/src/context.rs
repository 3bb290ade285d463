//! The canonical encoding of an encryption context, the bytes bound as associated data.
//!
//! Version 1 (`docs/formats.md`, "Canonical encryption context"):
//!
//! ```text
//! 0x01                                  format version
//! u64 BE  n                             number of entries
//! n times, sorted by key bytes:
//!   u64 BE len(key)   ‖ key   (UTF-8)
//!   u64 BE len(value) ‖ value (UTF-8)
//! ```
//!
//! Every field is length-prefixed, so the encoding is injective: two different contexts never
//! encode the same, whatever bytes (`=`, `,`, NUL, ...) their keys and values contain. Entries
//! are sorted by key, so the order a map was built in cannot matter. The empty context encodes
//! as `01 00 00 00 00 00 00 00 00`.

use kms_types::types::EncryptionContext;

/// Version byte of the canonical context encoding.
pub const CONTEXT_FORMAT_VERSION: u8 = 1;

/// The canonical, versioned encoding of `context` (see the [module docs](self)).
///
/// ```
/// use kms_crypto::context::canonical_context;
/// use kms_types::types::EncryptionContext;
///
/// let mut a = EncryptionContext::new();
/// a.insert("bucket".into(), "photos".into());
/// a.insert("object".into(), "cat.jpg".into());
/// let b: EncryptionContext = [("object", "cat.jpg"), ("bucket", "photos")]
///     .into_iter()
///     .map(|(k, v)| (k.to_owned(), v.to_owned()))
///     .collect();
/// assert_eq!(canonical_context(&a), canonical_context(&b));
/// ```
pub fn canonical_context(context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical_context_len(context));
    put_canonical_context(&mut out, context);
    out
}

/// Length of [`canonical_context`]`(context)`, without encoding it.
pub(crate) fn canonical_context_len(context: &EncryptionContext) -> usize {
    1 + 8 + context.iter().map(|(k, v)| 16 + k.len() + v.len()).sum::<usize>()
}

/// Appends [`canonical_context`]`(context)` to `out` (no intermediate buffer).
pub(crate) fn put_canonical_context(out: &mut Vec<u8>, context: &EncryptionContext) {
    out.push(CONTEXT_FORMAT_VERSION);
    put_u64(out, context.len());
    // `EncryptionContext` is a `BTreeMap<String, String>`: iteration is in byte order of the keys.
    for (key, value) in context {
        put_bytes(out, key.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_be_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn empty_context() {
        assert_eq!(canonical_context(&ctx(&[])), [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn known_answer() {
        let encoded = canonical_context(&ctx(&[("object", "cat.jpg"), ("bucket", "b")]));
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0, 2];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 6]);
        expected.extend_from_slice(b"bucket");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(b"b");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 6]);
        expected.extend_from_slice(b"object");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        expected.extend_from_slice(b"cat.jpg");
        assert_eq!(encoded, expected);
    }

    #[test]
    fn separators_cannot_collide() {
        let pairs = [
            ctx(&[("a", "b,c=d")]),
            ctx(&[("a", "b"), ("c", "d")]),
            ctx(&[("a=b", "")]),
            ctx(&[("a", "=b")]),
            ctx(&[("", "ab")]),
            ctx(&[("ab", "")]),
            ctx(&[("a\0", "b")]),
            ctx(&[("a", "\0b")]),
            ctx(&[]),
        ];
        for (i, a) in pairs.iter().enumerate() {
            for b in &pairs[i + 1..] {
                assert_ne!(canonical_context(a), canonical_context(b), "{a:?} vs {b:?}");
            }
        }
    }
}
