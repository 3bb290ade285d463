//! Stream header parsing and the key-commitment check on arbitrary bytes: never a panic,
//! never an allocation sized by the input.
#![no_main]

use kms_crypto::keys::PlaintextDataKey;
use kms_crypto::stream::{Header, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, Part, StreamOpener};
use kms_types::types::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = Header::parse(data) {
        assert!((MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&header.segment_size()));
        assert_eq!(&header.as_bytes()[..], &data[..header.as_bytes().len()]);
    }
    let key = PlaintextDataKey::from_bytes(&[7; 32]).unwrap();
    // Random bytes cannot carry a valid commitment for this key.
    assert!(StreamOpener::new(&key, &EncryptionContext::new(), Part::Whole, data).is_err());
});
