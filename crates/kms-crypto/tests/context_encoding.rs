//! The canonical context encoding is injective and ignores insertion order.

use kms_crypto::context::canonical_context;
use kms_types::types::EncryptionContext;
use proptest::prelude::*;

fn contexts() -> impl Strategy<Value = EncryptionContext> {
    // Small alphabets make near-collisions (shared prefixes, separators) likely.
    proptest::collection::btree_map("[a=,\\x00]{0,4}", "[a=,\\x00]{0,4}", 0..4)
}

proptest! {
    #[test]
    fn different_contexts_encode_differently(a in contexts(), b in contexts()) {
        prop_assert_eq!(a == b, canonical_context(&a) == canonical_context(&b));
    }

    #[test]
    fn insertion_order_does_not_matter(
        (entries, shuffled) in contexts()
            .prop_map(|c| c.into_iter().collect::<Vec<_>>())
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let mut a = EncryptionContext::new();
        for (k, v) in entries { a.insert(k, v); }
        let mut b = EncryptionContext::new();
        for (k, v) in shuffled { b.insert(k, v); }
        prop_assert_eq!(canonical_context(&a), canonical_context(&b));
    }

    #[test]
    fn decodable_length(a in contexts()) {
        let encoded = canonical_context(&a);
        let expected = 9 + a.iter().map(|(k, v)| 16 + k.len() + v.len()).sum::<usize>();
        prop_assert_eq!(encoded.len(), expected);
        prop_assert_eq!(encoded[0], 1);
    }
}
