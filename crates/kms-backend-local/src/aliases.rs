//! Aliases in the key store: the `aliases` table of `keys.redb` (alias name → alias record),
//! written in a transaction of its own that also reads the `keys` table, so an alias is only
//! ever created or moved to a key the store holds.
//!
//! Alias record, version 1 (`docs/formats.md`, "Alias record"):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | record version, `0x01` |
//! | 8 | creation date, Unix seconds, big-endian signed |
//! | 8 | last update, Unix seconds, big-endian signed |
//! | rest | target key id, UTF-8 (a valid key id) |
//!
//! The table is created by the first alias written; a store without it has no aliases (older
//! stores open unchanged). Records are not sealed: the target is no secret, and whoever can
//! rewrite the store file to point an alias elsewhere gains nothing, since every caller is
//! authorized on the key the alias resolves to.

use std::ops::Bound;

use kms_core::aliases::check_alias_request;
use kms_types::alias::{
    AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, validate_alias_list_limit,
    validate_alias_name,
};
use kms_types::error::{KmsError, Result};
use kms_types::types::validate_key_id;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use time::OffsetDateTime;

use crate::backend::{LocalBackend, blocking};
use crate::store::{KEYS, storage};

/// Alias name → alias record.
pub(crate) const ALIASES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("aliases");
/// The alias record version written and read.
const RECORD_VERSION: u8 = 1;
const HEADER_LEN: usize = 17;

/// Encodes an alias record (version 1).
pub(crate) fn encode(entry: &AliasEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entry.target_key_id.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&entry.creation_date.unix_timestamp().to_be_bytes());
    out.extend_from_slice(&entry.last_updated_date.unix_timestamp().to_be_bytes());
    out.extend_from_slice(entry.target_key_id.as_bytes());
    out
}

/// Decodes the record of `alias_name`.
pub(crate) fn decode(alias_name: &str, bytes: &[u8]) -> Result<AliasEntry> {
    let corrupt = |why: &str| KmsError::backend(format!("the record of {alias_name} is unreadable: {why}"));
    if bytes.len() <= HEADER_LEN || bytes[0] != RECORD_VERSION {
        return Err(corrupt("not an alias record of version 1"));
    }
    let time = |at: usize| {
        let seconds = i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| corrupt("a date is out of range"))
    };
    let target_key_id = std::str::from_utf8(&bytes[HEADER_LEN..]).map_err(|_| corrupt("the target is not UTF-8"))?;
    validate_key_id("target_key_id", target_key_id).map_err(|_| corrupt("the target is not a key id"))?;
    Ok(AliasEntry {
        alias_name: alias_name.to_owned(),
        target_key_id: target_key_id.to_owned(),
        creation_date: time(1)?,
        last_updated_date: time(9)?,
    })
}

fn now_seconds() -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .map_err(|_| KmsError::backend("the clock is out of range"))
}

/// Whether a read-only open found no `aliases` table (no alias was ever written).
fn missing(e: &TableError) -> bool {
    matches!(e, TableError::TableDoesNotExist(_))
}

/// Every alias row (name, record as stored) in name order, in `txn` (a backup's snapshot);
/// none when no alias was ever written.
pub(crate) fn rows(txn: &ReadTransaction) -> Result<Vec<(String, Vec<u8>)>> {
    let table = match txn.open_table(ALIASES) {
        Ok(table) => table,
        Err(e) if missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(storage(e)),
    };
    let mut rows = Vec::new();
    for item in table.iter().map_err(storage)? {
        let (name, value) = item.map_err(storage)?;
        rows.push((name.value().to_owned(), value.value().to_vec()));
    }
    Ok(rows)
}

impl LocalBackend {
    /// Creates (`update = false`) or moves (`update = true`) an alias, in one transaction.
    pub(crate) async fn write_alias(&self, request: CreateAliasRequest, update: bool) -> Result<AliasEntry> {
        self.check_open()?;
        let db = self.inner.db()?;
        blocking(move || {
            let txn = db.begin_write().map_err(storage)?;
            let entry = {
                let target_exists = txn
                    .open_table(KEYS)
                    .map_err(storage)?
                    .get(request.target_key_id.as_str())
                    .map_err(storage)?
                    .is_some();
                check_alias_request(&request, target_exists)?;
                let mut aliases = txn.open_table(ALIASES).map_err(storage)?;
                let existing = aliases.get(request.alias_name.as_str()).map_err(storage)?.map(|v| v.value().to_vec());
                let now = now_seconds()?;
                let entry = match (existing, update) {
                    (Some(_), false) => return Err(KmsError::KeyAlreadyExists { key_id: request.alias_name }),
                    (None, true) => return Err(KmsError::key_not_found(&request.alias_name)),
                    (Some(bytes), true) => AliasEntry {
                        target_key_id: request.target_key_id,
                        last_updated_date: now,
                        ..decode(&request.alias_name, &bytes)?
                    },
                    (None, false) => AliasEntry {
                        alias_name: request.alias_name,
                        target_key_id: request.target_key_id,
                        creation_date: now,
                        last_updated_date: now,
                    },
                };
                aliases.insert(entry.alias_name.as_str(), encode(&entry).as_slice()).map_err(storage)?;
                entry
            };
            txn.commit().map_err(storage)?;
            Ok(entry)
        })
        .await
    }

    /// Removes an alias.
    pub(crate) async fn remove_alias(&self, alias_name: &str) -> Result<()> {
        validate_alias_name("alias_name", alias_name)?;
        self.check_open()?;
        let db = self.inner.db()?;
        let alias_name = alias_name.to_owned();
        blocking(move || {
            let txn = db.begin_write().map_err(storage)?;
            let removed =
                txn.open_table(ALIASES).map_err(storage)?.remove(alias_name.as_str()).map_err(storage)?.is_some();
            if !removed {
                return Err(KmsError::key_not_found(&alias_name));
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    /// The key an alias points at.
    pub(crate) async fn read_alias(&self, alias_name: &str) -> Result<String> {
        validate_alias_name("alias_name", alias_name)?;
        self.check_open()?;
        let db = self.inner.db()?;
        let alias_name = alias_name.to_owned();
        blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let table = match txn.open_table(ALIASES) {
                Ok(table) => table,
                Err(e) if missing(&e) => return Err(KmsError::key_not_found(&alias_name)),
                Err(e) => return Err(storage(e)),
            };
            let bytes = table.get(alias_name.as_str()).map_err(storage)?.map(|v| v.value().to_vec());
            let bytes = bytes.ok_or_else(|| KmsError::key_not_found(&alias_name))?;
            Ok(decode(&alias_name, &bytes)?.target_key_id)
        })
        .await
    }

    /// One page of aliases in name order: a range scan from the marker.
    pub(crate) async fn page_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        let limit = validate_alias_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_alias_name("marker", marker)?;
        }
        if let Some(key_id) = &request.key_id {
            validate_key_id("key_id", key_id)?;
        }
        self.check_open()?;
        let db = self.inner.db()?;
        blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let table = match txn.open_table(ALIASES) {
                Ok(table) => table,
                Err(e) if missing(&e) => {
                    return Ok(ListAliasesResponse { aliases: Vec::new(), next_marker: None, truncated: false });
                }
                Err(e) => return Err(storage(e)),
            };
            let start = request.marker.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let mut aliases = Vec::new();
            let mut truncated = false;
            for item in table.range::<&str>((start, Bound::Unbounded)).map_err(storage)? {
                let (name, value) = item.map_err(storage)?;
                let entry = decode(name.value(), value.value())?;
                if request.key_id.as_ref().is_some_and(|k| *k != entry.target_key_id) {
                    continue;
                }
                if aliases.len() == limit {
                    truncated = true;
                    break;
                }
                aliases.push(entry);
            }
            let next_marker = if truncated { aliases.last().map(|e: &AliasEntry| e.alias_name.clone()) } else { None };
            Ok(ListAliasesResponse { aliases, next_marker, truncated })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer of `docs/formats.md` ("Alias record").
    #[test]
    fn the_alias_record_matches_its_vector() {
        let entry = AliasEntry {
            alias_name: "alias/orders".into(),
            target_key_id: "orders-key".into(),
            creation_date: OffsetDateTime::from_unix_timestamp(1_796_205_941).unwrap(),
            last_updated_date: OffsetDateTime::from_unix_timestamp(1_796_206_000).unwrap(),
        };
        let hex: String = encode(&entry).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "01000000006b0fed75000000006b0fedb06f72646572732d6b6579");
        assert_eq!(decode("alias/orders", &encode(&entry)).unwrap(), entry);
    }

    /// `docs/vectors/local-alias-record-v1.json`, which `docs/vectors/check.py` also checks.
    #[test]
    fn local_alias_record_v1() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/vectors/local-alias-record-v1.json")).unwrap();
        assert_eq!((doc["format"].as_str(), doc["version"].as_u64()), (Some("local-alias-record"), Some(1)));
        for case in doc["cases"].as_array().unwrap() {
            let text = |k: &str| case[k].as_str().unwrap().to_owned();
            let time = |k: &str| OffsetDateTime::from_unix_timestamp(case[k].as_i64().unwrap()).unwrap();
            let entry = AliasEntry {
                alias_name: text("alias_name"),
                target_key_id: text("target_key_id"),
                creation_date: time("creation_date"),
                last_updated_date: time("last_updated_date"),
            };
            let hex: String = encode(&entry).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, text("value"), "{}", case["name"]);
            assert_eq!(decode(&entry.alias_name, &encode(&entry)).unwrap(), entry, "{}", case["name"]);
        }
    }

    #[test]
    fn damaged_records_are_backend_errors() {
        for bad in
            [&b""[..], b"\x01", b"\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0k", b"\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0a/b"]
        {
            let err = decode("alias/x", bad).unwrap_err();
            assert!(matches!(err, KmsError::Backend { .. }), "{bad:?}: {err:?}");
        }
    }
}
