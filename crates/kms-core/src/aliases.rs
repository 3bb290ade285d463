//! [`AliasTable`]: the rules of aliases (see [`kms_types::alias`]) over an ordered map, for
//! backends to keep in memory and persist their own way. The caller says whether a target key
//! exists; the table checks names, uniqueness, paging and filtering.

use std::collections::BTreeMap;
use std::ops::Bound;

use kms_types::alias::{
    AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest, is_alias,
    validate_alias_list_limit, validate_alias_name,
};
use kms_types::error::{KmsError, Result};
use kms_types::types::validate_key_id;
use time::OffsetDateTime;

/// Aliases by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasTable {
    entries: BTreeMap<String, AliasEntry>,
}

impl AliasTable {
    /// A table holding `entries` (as loaded by a backend; names are checked).
    pub fn from_entries(entries: impl IntoIterator<Item = AliasEntry>) -> Result<Self> {
        let mut table = Self::default();
        for entry in entries {
            validate_alias_name("alias_name", &entry.alias_name)?;
            if table.entries.insert(entry.alias_name.clone(), entry).is_some() {
                return Err(KmsError::backend("an alias is stored twice"));
            }
        }
        Ok(table)
    }

    /// Every alias, in name order.
    pub fn entries(&self) -> impl Iterator<Item = &AliasEntry> {
        self.entries.values()
    }

    /// Adds an alias; `target_exists` says whether its key exists.
    pub fn create(&mut self, request: CreateAliasRequest, target_exists: bool) -> Result<AliasEntry> {
        check_alias_request(&request, target_exists)?;
        if self.entries.contains_key(&request.alias_name) {
            return Err(KmsError::KeyAlreadyExists { key_id: request.alias_name });
        }
        let now = OffsetDateTime::now_utc();
        let entry = AliasEntry {
            alias_name: request.alias_name,
            target_key_id: request.target_key_id,
            creation_date: now,
            last_updated_date: now,
        };
        self.entries.insert(entry.alias_name.clone(), entry.clone());
        Ok(entry)
    }

    /// Points an existing alias at another key.
    pub fn update(&mut self, request: UpdateAliasRequest, target_exists: bool) -> Result<AliasEntry> {
        check_alias_request(&request, target_exists)?;
        let entry =
            self.entries.get_mut(&request.alias_name).ok_or_else(|| KmsError::key_not_found(&request.alias_name))?;
        entry.target_key_id = request.target_key_id;
        entry.last_updated_date = OffsetDateTime::now_utc();
        Ok(entry.clone())
    }

    /// Removes an alias.
    pub fn delete(&mut self, alias_name: &str) -> Result<AliasEntry> {
        validate_alias_name("alias_name", alias_name)?;
        self.entries.remove(alias_name).ok_or_else(|| KmsError::key_not_found(alias_name))
    }

    /// The key an alias points at.
    pub fn resolve(&self, alias_name: &str) -> Result<String> {
        validate_alias_name("alias_name", alias_name)?;
        self.entries.get(alias_name).map(|e| e.target_key_id.clone()).ok_or_else(|| KmsError::key_not_found(alias_name))
    }

    /// One page in name order, after `marker`, of the aliases of `key_id` (or all).
    pub fn list(&self, request: &ListAliasesRequest) -> Result<ListAliasesResponse> {
        let limit = validate_alias_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_alias_name("marker", marker)?;
        }
        if let Some(key_id) = &request.key_id {
            validate_key_id("key_id", key_id)?;
        }
        let start = request.marker.as_ref().map_or(Bound::Unbounded, |m| Bound::Excluded(m.clone()));
        let mut matching = self
            .entries
            .range((start, Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| request.key_id.as_ref().is_none_or(|k| &e.target_key_id == k));
        let aliases: Vec<AliasEntry> = matching.by_ref().take(limit).cloned().collect();
        let truncated = matching.next().is_some();
        let next_marker = if truncated { aliases.last().map(|e| e.alias_name.clone()) } else { None };
        Ok(ListAliasesResponse { aliases, next_marker, truncated })
    }
}

/// Checks a create or update: the name, a target that is a key id (not an alias) and exists.
pub fn check_alias_request(request: &CreateAliasRequest, target_exists: bool) -> Result<()> {
    validate_alias_name("alias_name", &request.alias_name)?;
    if is_alias(&request.target_key_id) {
        return Err(KmsError::invalid_request("target_key_id", "an alias points at a key, not at an alias"));
    }
    validate_key_id("target_key_id", &request.target_key_id)?;
    if !target_exists {
        return Err(KmsError::key_not_found(&request.target_key_id));
    }
    Ok(())
}
