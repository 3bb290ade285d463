//! Envelope parsing and opening on arbitrary bytes: never a panic, never `Ok` for a forgery.
#![no_main]

use kms_crypto::envelope::{self, Binding};
use kms_crypto::keys::{KeyEncryptionKey, WrappedDataKey};
use kms_types::types::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kek = KeyEncryptionKey::from_bytes(&[9; 32]).unwrap();
    let context = EncryptionContext::new();
    let binding = Binding { master_key_id: "fuzz", master_key_version: 1, context: &context };
    let _ = envelope::is_envelope(data);
    assert!(envelope::open(&kek, data, &binding).is_err());
    assert!(envelope::unwrap_data_key(&kek, &WrappedDataKey::from(data.to_vec()), &binding).is_err());
});
