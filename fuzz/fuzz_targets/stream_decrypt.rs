//! Stream decryption of hostile input. The input drives two things:
//! 1. it is decrypted as a stream as is (hostile headers and framing);
//! 2. it picks a plaintext and segment size, a real stream is made from them, and the rest of
//!    the input mutates it (byte edits, truncation, extension). Decryption must then return
//!    the original plaintext if the stream is unchanged and an error otherwise: never a panic,
//!    never different plaintext.
#![no_main]

use std::io::Read;

use kms_crypto::aead::Algorithm;
use kms_crypto::keys::PlaintextDataKey;
use kms_crypto::stream::{self, DecryptingReader, ObjectLayout, Part, StreamParams};
use kms_types::types::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = PlaintextDataKey::from_bytes(&[3; 32]).unwrap();
    let ctx = EncryptionContext::new();
    assert!(stream::decrypt(&key, &ctx, Part::Whole, data).is_err());
    let mut sink = Vec::new();
    assert!(DecryptingReader::new(data, &key, &ctx, Part::Whole).read_to_end(&mut sink).is_err());

    let [control, size, edits @ ..] = data else { return };
    let algorithm = if control & 1 == 0 { Algorithm::Aes256Gcm } else { Algorithm::ChaCha20Poly1305 };
    let segment_size = 16 + u32::from(control >> 1);
    let plaintext: Vec<u8> = (0..usize::from(*size) * 3).map(|i| i as u8).collect();
    let params = StreamParams { algorithm, segment_size };
    let original = stream::encrypt(&key, &ctx, Part::Whole, params, &plaintext).unwrap();
    let mut ct = original.clone();
    for edit in edits.chunks(3) {
        match edit {
            [0, n, _] => ct.truncate(ct.len().saturating_sub(usize::from(*n) + 1)),
            [1, b, _] => ct.push(*b),
            [_, at, x] if !ct.is_empty() => {
                let i = usize::from(*at) * 7 % ct.len();
                ct[i] ^= x;
            }
            _ => {}
        }
    }
    let unchanged = ct == original;
    match stream::decrypt(&key, &ctx, Part::Whole, &ct) {
        Ok(pt) => assert!(unchanged && *pt == plaintext),
        Err(_) => assert!(!unchanged),
    }
    let mut out = Vec::new();
    match DecryptingReader::new(&ct[..], &key, &ctx, Part::Whole).read_to_end(&mut out) {
        Ok(_) => assert!(unchanged && out == plaintext),
        Err(_) => assert!(!unchanged && plaintext.starts_with(&out)),
    }
    let layout = ObjectLayout::single(segment_size, plaintext.len() as u64).unwrap();
    if let Some(&first) = edits.first() {
        let start = u64::from(first).min(layout.plaintext_len());
        let plan = layout.plan(start..layout.plaintext_len()).unwrap();
        let fetched: Vec<u8> =
            plan.fetch_ranges().iter().flat_map(|r| ct.get(r.start as usize..r.end as usize).unwrap_or(&[]).to_vec()).collect();
        if let Ok(range) = stream::decrypt_range(&key, &ctx, &plan, &fetched) {
            assert_eq!(&range[..], &plaintext[start as usize..]);
        }
    }
});
