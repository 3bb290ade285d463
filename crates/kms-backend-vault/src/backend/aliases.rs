//! Aliases in KV v2, one record per alias next to the key records (format and path:
//! [`crate::alias_record`]), with the rules of `kms_types::alias` and the local backend:
//! a create is a create-only write (check-and-set 0), so two servers cannot both take a name;
//! a move is a check-and-set write against the version read; a target must be a key this
//! backend holds a record of.
//!
//! Aliases are read at the active node and never cached: a move made through another kms
//! server is seen by the next call. A key purged later leaves its aliases naming nothing
//! (resolving gives its id, using it gives `KeyNotFound`), as on the local backend.
//!
//! Retries: a write whose reply was lost is read back; found exactly as written, it landed.
//! If it cannot be read back, the manager's retry of a create may answer `KeyAlreadyExists`
//! for the alias the lost write made, and a retried delete `KeyNotFound`.

use kms_core::aliases::check_alias_request;
use kms_types::alias::{
    AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, validate_alias_list_limit,
    validate_alias_name,
};

use super::*;
use crate::alias_record::{ALIAS_FOLDER, AliasRecord, alias_name_of, entry_name, parse_alias_record};

impl Inner {
    fn alias_path(&self, area: &str, alias_name: &str) -> String {
        format!("{}/{area}/{}/{ALIAS_FOLDER}/{}", self.kv, self.prefix, entry_name(alias_name))
    }

    /// The record of an alias and its KV version; `KeyNotFound` naming the alias when absent.
    async fn read_alias(&self, alias_name: &str) -> Result<(AliasRecord, u64)> {
        let path = self.alias_path("data", alias_name);
        let reply = match self.call(Route::Active, Method::Get, &path, None).await {
            Ok(reply) => reply,
            Err(e) if e.status() == Some(404) => return Err(KmsError::key_not_found(alias_name)),
            Err(e) => return Err(e.into_kms("read an alias")),
        };
        let data = reply.as_ref().and_then(|v| v.get("data")).cloned().unwrap_or(Value::Null);
        let version = data.get("metadata").and_then(|m| m.get("version")).and_then(Value::as_u64).unwrap_or(0);
        let record = data.get("data").cloned().unwrap_or(Value::Null);
        if record.is_null() {
            // A deleted (not destroyed) version: as absent.
            return Err(KmsError::key_not_found(alias_name));
        }
        let record = parse_alias_record(alias_name, record)
            .ok_or_else(|| KmsError::backend(format!("the record of {alias_name} is unreadable")))?;
        Ok((record, version))
    }

    /// Writes an alias record with check-and-set against `cas` (0: create only); a write whose
    /// reply was lost counts as done when the record now is exactly ours.
    async fn write_alias(&self, record: &AliasRecord, cas: u64) -> std::result::Result<(), CallError> {
        let path = self.alias_path("data", &record.alias_name);
        let body = serde_json::to_vec(&json!({ "options": { "cas": cas }, "data": record }))
            .map_err(|e| CallError::Decode(e.to_string()))?;
        match self.call(Route::Active, Method::Post, &path, Some(body)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_lost() => match self.read_alias(&record.alias_name).await {
                Ok((now, version)) if version == cas + 1 && &now == record => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether `key_id` names a key this backend holds (in any state, readable or not).
    async fn key_exists(&self, key_id: &str) -> Result<bool> {
        match self.load(key_id).await {
            Ok(_) => Ok(true),
            Err(KmsError::KeyNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks a create or update, including that its target exists.
    async fn check_alias(&self, request: &CreateAliasRequest) -> Result<()> {
        check_alias_request(request, true)?;
        let exists = self.key_exists(&request.target_key_id).await?;
        check_alias_request(request, exists)
    }

    pub(super) async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.check_alias(&request).await?;
        let now = whole_seconds_now();
        let record = AliasRecord::new(AliasEntry {
            alias_name: request.alias_name,
            target_key_id: request.target_key_id,
            creation_date: now,
            last_updated_date: now,
        });
        match self.write_alias(&record, 0).await {
            Ok(()) => Ok(record.entry()),
            Err(e) if e.says("check-and-set") => Err(KmsError::KeyAlreadyExists { key_id: record.alias_name }),
            Err(e) => Err(e.into_kms("write an alias")),
        }
    }

    pub(super) async fn update_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.check_alias(&request).await?;
        for attempt in 1..=CAS_ATTEMPTS {
            let (mut record, version) = self.read_alias(&request.alias_name).await?;
            record.target_key_id.clone_from(&request.target_key_id);
            record.last_updated_date = whole_seconds_now();
            match self.write_alias(&record, version).await {
                Ok(()) => return Ok(record.entry()),
                Err(e) if e.says("check-and-set") => {
                    tokio::time::sleep(backoff(attempt, Duration::from_millis(5), Duration::from_millis(500))).await;
                }
                Err(e) => return Err(e.into_kms("write an alias")),
            }
        }
        Err(KmsError::backend(format!("update_alias: {} kept changing under concurrent updates", request.alias_name)))
    }

    pub(super) async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        validate_alias_name("alias_name", alias_name)?;
        // KV deletes an absent entry without complaint: read first, for `KeyNotFound`.
        self.read_alias(alias_name).await?;
        let path = self.alias_path("metadata", alias_name);
        match self.call(Route::Active, Method::Delete, &path, None).await {
            Err(e) if e.status() != Some(404) => Err(e.into_kms("delete an alias")),
            _ => Ok(()),
        }
    }

    pub(super) async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        validate_alias_name("alias_name", alias_name)?;
        Ok(self.read_alias(alias_name).await?.0.target_key_id)
    }

    /// Alias names after `after`, ascending, at most `limit` (KV `LIST` with `after`/`limit`,
    /// filtered and sorted here too for servers that ignore them).
    async fn list_alias_names(&self, after: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        let folder = format!("{}/metadata/{}/{ALIAS_FOLDER}/", self.kv, self.prefix);
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", entry_name(after)));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let reply = match self.call_with(Route::Active, Method::List, &folder, &query, None).await {
            Ok(reply) => reply,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e.into_kms("list aliases")),
        };
        let entries = reply.as_ref().and_then(|v| v.get("data")?.get("keys")?.as_array().cloned()).unwrap_or_default();
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|e| alias_name_of(e.as_str()?))
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort_unstable();
        if let Some(limit) = limit {
            names.truncate(limit);
        }
        Ok(names)
    }

    /// One page of aliases in name order. Without a key filter the names of one page (and one
    /// more, to know whether the page is the last) are listed; with one, every name after the
    /// marker is, and records are read until the page is full.
    pub(super) async fn list_aliases(self: &Arc<Self>, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        let limit = validate_alias_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_alias_name("marker", marker)?;
        }
        if let Some(key_id) = &request.key_id {
            validate_key_id("key_id", key_id)?;
        }
        let names_limit = request.key_id.is_none().then_some(limit + 1);
        let names = self.list_alias_names(request.marker.as_deref(), names_limit).await?;
        let mut aliases = Vec::with_capacity(limit.min(names.len()));
        let mut truncated = false;
        'pages: for chunk in names.chunks(LIST_CONCURRENCY) {
            for record in self.read_aliases(chunk).await? {
                if request.key_id.as_ref().is_some_and(|k| *k != record.target_key_id) {
                    continue;
                }
                if aliases.len() == limit {
                    truncated = true;
                    break 'pages;
                }
                aliases.push(record.entry());
            }
        }
        let next_marker = if truncated { aliases.last().map(|a: &AliasEntry| a.alias_name.clone()) } else { None };
        Ok(ListAliasesResponse { aliases, next_marker, truncated })
    }

    /// The records of `names`, read at once, in the order of `names`; an alias deleted
    /// meanwhile is left out.
    async fn read_aliases(self: &Arc<Self>, names: &[String]) -> Result<Vec<AliasRecord>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, name) in names.iter().enumerate() {
            let this = self.clone();
            let name = name.clone();
            tasks.spawn(async move { (i, this.read_alias(&name).await) });
        }
        let mut found = Vec::with_capacity(names.len());
        while let Some(done) = tasks.join_next().await {
            match done.map_err(|e| KmsError::backend(format!("alias list task failed: {e}")))? {
                (i, Ok((record, _))) => found.push((i, record)),
                (_, Err(KmsError::KeyNotFound { .. })) => {}
                (_, Err(e)) => return Err(e),
            }
        }
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, record)| record).collect())
    }
}

/// Now, to the second (records keep whole seconds, as the key records do).
fn whole_seconds_now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
