//! Backup bundles of the key store: what `kms backup` writes and `kms restore` reads.
//!
//! A bundle is the verifier record and every stored record *as stored*: each record is
//! already sealed under the record KEK derived from the master key, so nothing in a bundle
//! is a key in the clear, and the master key is not in it (restoring needs it). The whole
//! bundle is authenticated: the SHA-256 digest of everything before the trailer is sealed
//! with AES-256-GCM under the record KEK, so a truncated, reordered or altered bundle, or one
//! made under another master key, is refused before anything is written.
//!
//! Layout, version 2 (integers big-endian; `docs/formats.md`, "Backup bundle"):
//!
//! ```text
//! magic "KMSBKUP\0" (8) | version u16 = 2 | verifier_len u32 | verifier (the .verifier.json bytes)
//! | count u64 | count × (flags u8 | id_len u16 | id | record_len u32 | record)
//! | alias_count u64 | alias_count × (name_len u16 | name | alias_record_len u32 | alias record)
//! | seal_len u32 | seal = AES-256-GCM(record KEK, aad "kms-local/v1/backup", SHA-256(all before))
//! ```
//!
//! `flags` bit 0: the key is in `PendingDeletion` (its row in `pending_deletion`); other bits
//! are zero. Records are in key-id order, each id at most once; aliases (rows of the `aliases`
//! table, [`crate::aliases`]) in name order, each name at most once. Version 1, written before
//! aliases were backed up, is version 2 without the alias section; it is still read (as a
//! bundle without aliases).

use kms_types::error::KmsError;
use kms_types::types::validate_key_id;
use ring::digest::{SHA256, digest};

use crate::master_key::{MasterSecret, RecordProtection};
use crate::record::MAX_RECORD_BYTES;

/// The first bytes of every bundle.
pub(crate) const MAGIC: &[u8; 8] = b"KMSBKUP\0";
/// The bundle layout this code writes.
pub(crate) const VERSION: u16 = 2;
/// The layout without aliases, still read.
const VERSION_WITHOUT_ALIASES: u16 = 1;
/// Longest alias record accepted (a valid one is at most 17 + 256 bytes).
const MAX_ALIAS_RECORD_BYTES: usize = 1024;
/// Associated data of the trailer's seal.
const SEAL_AAD: &[u8] = b"kms-local/v1/backup";
/// `flags` bit 0.
const FLAG_PENDING: u8 = 1;
/// Largest verifier record accepted (it is a few hundred bytes of JSON).
const MAX_VERIFIER_BYTES: usize = 64 * 1024;

/// One stored key in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key id.
    pub(crate) id: String,
    /// The sealed record, as the store holds it.
    pub(crate) record: Vec<u8>,
    /// Whether the key is in `PendingDeletion`.
    pub(crate) pending: bool,
}

/// A parsed and authenticated bundle.
#[derive(Debug)]
pub(crate) struct Bundle {
    /// The verifier record of the directory the bundle was taken from.
    pub(crate) verifier: Vec<u8>,
    /// Every key, in id order.
    pub(crate) entries: Vec<Entry>,
    /// Every alias (name, alias record as stored), in name order.
    pub(crate) aliases: Vec<(String, Vec<u8>)>,
}

/// Writes a bundle of `entries` (in id order), `aliases` (name and stored record, in name
/// order) and `verifier`, sealed under `protection`'s KEK. A store kept in the clear
/// (development mode) has no KEK to authenticate a bundle with, and is refused.
pub(crate) fn encode(
    verifier: &[u8],
    entries: &[Entry],
    aliases: &[(String, Vec<u8>)],
    protection: &RecordProtection,
) -> Result<Vec<u8>, KmsError> {
    let RecordProtection::Sealed(kek) = protection else {
        return Err(KmsError::configuration(
            "backend_config.master_key",
            "this key store keeps its records in the clear (insecure plaintext): there is no master key to seal a backup with",
        ));
    };
    let size = entries.iter().map(|e| 7 + e.id.len() + e.record.len()).sum::<usize>()
        + aliases.iter().map(|(name, record)| 6 + name.len() + record.len()).sum::<usize>();
    let mut out = Vec::with_capacity(8 + 2 + 4 + verifier.len() + 16 + size + 4 + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&len_u32(verifier.len())?.to_be_bytes());
    out.extend_from_slice(verifier);
    out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    for entry in entries {
        out.push(if entry.pending { FLAG_PENDING } else { 0 });
        let id_len = u16::try_from(entry.id.len()).map_err(|_| KmsError::backend("a key id is too long to back up"))?;
        out.extend_from_slice(&id_len.to_be_bytes());
        out.extend_from_slice(entry.id.as_bytes());
        out.extend_from_slice(&len_u32(entry.record.len())?.to_be_bytes());
        out.extend_from_slice(&entry.record);
    }
    out.extend_from_slice(&(aliases.len() as u64).to_be_bytes());
    for (name, record) in aliases {
        let name_len = u16::try_from(name.len()).map_err(|_| KmsError::backend("an alias is too long to back up"))?;
        out.extend_from_slice(&name_len.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&len_u32(record.len())?.to_be_bytes());
        out.extend_from_slice(record);
    }
    let seal = kek.seal(SEAL_AAD, digest(&SHA256, &out).as_ref())?;
    out.extend_from_slice(&len_u32(seal.len())?.to_be_bytes());
    out.extend_from_slice(&seal);
    Ok(out)
}

fn len_u32(len: usize) -> Result<u32, KmsError> {
    u32::try_from(len).map_err(|_| KmsError::backend("a backup field exceeds 4 GiB"))
}

/// The error of every malformed, truncated or altered bundle (one message: no oracle).
fn refused() -> KmsError {
    KmsError::invalid_request(
        "backup",
        "not a valid kms backup bundle: it is truncated, altered, or not a bundle of this format",
    )
}

/// Parses `bytes`, opens its verifier with `secret` and checks the seal over the whole bundle.
///
/// Errors: a malformed, truncated or altered bundle is `InvalidRequest` (field `backup`); a
/// bundle made under another master key (or another protection mode) is `Configuration`
/// (field `backend_config.master_key`); a bundle of a store kept in the clear is refused.
pub(crate) fn open(bytes: &[u8], secret: MasterSecret) -> Result<(RecordProtection, Bundle), KmsError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err(refused());
    }
    let version = u16::from_be_bytes(reader.array()?);
    if version != VERSION && version != VERSION_WITHOUT_ALIASES {
        return Err(KmsError::invalid_request(
            "backup",
            format!(
                "backup bundle version {version} is not supported; this kms reads versions {VERSION_WITHOUT_ALIASES} and {VERSION}"
            ),
        ));
    }
    let verifier_len = u32::from_be_bytes(reader.array()?) as usize;
    if verifier_len > MAX_VERIFIER_BYTES {
        return Err(refused());
    }
    let verifier = reader.take(verifier_len)?.to_vec();
    let count = u64::from_be_bytes(reader.array()?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let flags = reader.take(1)?[0];
        if flags & !FLAG_PENDING != 0 {
            return Err(refused());
        }
        let id_len = u16::from_be_bytes(reader.array()?) as usize;
        let id = std::str::from_utf8(reader.take(id_len)?).map_err(|_| refused())?.to_owned();
        let record_len = u32::from_be_bytes(reader.array()?) as usize;
        if record_len > MAX_RECORD_BYTES {
            return Err(refused());
        }
        let record = reader.take(record_len)?.to_vec();
        entries.push(Entry { id, record, pending: flags & FLAG_PENDING != 0 });
    }
    let mut aliases = Vec::new();
    if version == VERSION {
        let count = u64::from_be_bytes(reader.array()?);
        for _ in 0..count {
            let name_len = u16::from_be_bytes(reader.array()?) as usize;
            let name = std::str::from_utf8(reader.take(name_len)?).map_err(|_| refused())?.to_owned();
            let record_len = u32::from_be_bytes(reader.array()?) as usize;
            if record_len > MAX_ALIAS_RECORD_BYTES {
                return Err(refused());
            }
            aliases.push((name, reader.take(record_len)?.to_vec()));
        }
    }
    let body_len = reader.at;
    let seal_len = u32::from_be_bytes(reader.array()?) as usize;
    let seal = reader.take(seal_len)?;
    if reader.at != bytes.len() {
        return Err(refused());
    }

    let protection =
        RecordProtection::from_verifier(&verifier, secret, "in the backup bundle").map_err(|e| match e {
            KmsError::Configuration { .. } => e,
            _ => refused(),
        })?;
    let RecordProtection::Sealed(kek) = &protection else {
        return Err(refused());
    };
    let sealed_digest = kek.open(SEAL_AAD, seal).map_err(|_| refused())?;
    if sealed_digest.as_slice() != digest(&SHA256, &bytes[..body_len]).as_ref() {
        return Err(refused());
    }
    // Authenticated: what follows only guards against a bundle this code would not write.
    if entries.windows(2).any(|w| w[0].id >= w[1].id)
        || entries.iter().any(|e| validate_key_id("key_id", &e.id).is_err())
        || aliases.windows(2).any(|w| w[0].0 >= w[1].0)
        || aliases.iter().any(|(name, record)| crate::aliases::decode(name, record).is_err())
    {
        return Err(refused());
    }
    Ok((protection, Bundle { verifier, entries, aliases }))
}

/// A cursor over the bundle; running past the end is a truncated bundle.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], KmsError> {
        let end = self.at.checked_add(len).filter(|&end| end <= self.bytes.len()).ok_or_else(refused)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], KmsError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
}
