//! Helpers shared by the stream tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};

use kms_crypto::keys::PlaintextDataKey;
use kms_types::types::EncryptionContext;

pub fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn key(byte: u8) -> PlaintextDataKey {
    PlaintextDataKey::from_bytes(&[byte; 32]).unwrap()
}

pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// A reader that returns at most `chunk` bytes per call.
pub struct Trickle<R> {
    pub inner: R,
    pub chunk: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk);
        self.inner.read(&mut buf[..n])
    }
}

/// Writes `data` in pieces of `chunk` bytes.
pub fn write_chunked(w: &mut impl Write, data: &[u8], chunk: usize) {
    for piece in data.chunks(chunk.max(1)) {
        w.write_all(piece).unwrap();
    }
}

/// Reads everything with a read buffer of `chunk` bytes.
pub fn read_chunked(r: &mut impl Read, chunk: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; chunk.max(1)];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The bytes of `ranges` of `data`, concatenated.
pub fn fetch(data: &[u8], ranges: &[std::ops::Range<u64>]) -> Vec<u8> {
    ranges.iter().flat_map(|r| data[r.start as usize..r.end as usize].iter().copied()).collect()
}
