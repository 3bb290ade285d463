//! Key records in KV v2: reading them (through the cache of fresh records, purging a key
//! whose deletion date has passed), deleting them, listing ids, describing and listing keys,
//! and the cached health probe. The writes are in `writes.rs`.

use super::*;

impl Inner {
    pub(super) fn kv_path(&self, key_id: &str) -> String {
        format!("{}/{key_id}", self.prefix)
    }

    pub(super) fn cache_get(&self, key_id: &str) -> Option<Cached> {
        let (cache, ttl) = self.cache.as_ref()?;
        let mut cache = cache.lock().expect("cache lock");
        match cache.get(key_id) {
            Some(c) if c.at.elapsed() < *ttl => Some(c.clone()),
            Some(_) => {
                cache.pop(key_id);
                None
            }
            None => None,
        }
    }

    pub(super) fn cache_put(&self, record: &KeyRecord, version: u64) {
        if let Some((cache, _)) = &self.cache {
            let entry = Cached { record: record.clone(), version, at: Instant::now() };
            cache.lock().expect("cache lock").put(record.key_id.clone(), entry);
        }
    }

    pub(super) fn cache_drop(&self, key_id: &str) {
        if let Some((cache, _)) = &self.cache {
            cache.lock().expect("cache lock").pop(key_id);
        }
    }

    /// One call with the current session's token.
    pub(super) async fn call(
        &self,
        route: Route,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Option<Value>, CallError> {
        self.call_with(route, method, path, &[], body).await
    }

    pub(super) async fn call_with(
        &self,
        route: Route,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Option<Value>, CallError> {
        let session = self.auth.session().await.map_err(|e| CallError::Session(Box::new(e)))?;
        self.transport.call(Some(&session.token), route, method, path, query, body).await
    }

    /// Reads a key's record from KV (never from the cache), at the active node: the state a
    /// server acts on is the cluster's latest.
    pub(super) async fn load_fresh(&self, key_id: &str) -> Result<Loaded> {
        match self.read_record(key_id).await {
            Ok(loaded) => Ok(loaded),
            Err(e) if e.status() == Some(404) => Err(KmsError::key_not_found(key_id)),
            Err(e) => Err(e.into_kms("read key metadata")),
        }
    }

    pub(super) async fn read_record(&self, key_id: &str) -> std::result::Result<Loaded, CallError> {
        let path = format!("{}/data/{}", self.kv, self.kv_path(key_id));
        let reply = self.call(Route::Active, Method::Get, &path, None).await?;
        let mut data = reply.and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null);
        let metadata = data.get_mut("metadata").map(Value::take).unwrap_or(Value::Null);
        let version = metadata.get("version").and_then(Value::as_u64).unwrap_or(0);
        let created = metadata
            .get("created_time")
            .and_then(Value::as_str)
            .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
        let record = data.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        if record.is_null() {
            // A deleted (not destroyed) version: as absent.
            return Err(CallError::Status { code: 404, errors: Vec::new() });
        }
        match parse_record(key_id, record) {
            Some(record) => {
                self.cache_put(&record, version);
                Ok(Loaded::Record(record, version))
            }
            None => Ok(Loaded::Unreadable { created }),
        }
    }

    /// A key's record, from the cache when fresh; deletes it if its deletion date has passed.
    pub(super) async fn load(&self, key_id: &str) -> Result<Loaded> {
        validate_key_id("key_id", key_id)?;
        let loaded = match self.cache_get(key_id) {
            Some(c) => Loaded::Record(c.record, c.version),
            None => self.load_fresh(key_id).await?,
        };
        if let Loaded::Record(record, _) = &loaded
            && record.deletion_due(OffsetDateTime::now_utc())
        {
            self.purge(record).await?;
            return Err(KmsError::key_not_found(key_id));
        }
        Ok(loaded)
    }

    /// The record of a key whose state allows `operation` (a cryptographic one: `Enabled`).
    pub(super) async fn usable(&self, key_id: &str, operation: Operation) -> Result<KeyRecord> {
        self.load(key_id).await?.allowing(key_id, operation)
    }

    /// Deletes a key for good: allows deletion in Transit, deletes the Transit key, then the
    /// record. Each step tolerates a previous partial run.
    pub(super) async fn purge(&self, record: &KeyRecord) -> Result<()> {
        let name = record.key_id.as_str();
        if record.provisioned {
            let config = format!("{}/keys/{name}/config", self.transit);
            let body = json!({ "deletion_allowed": true }).to_string().into_bytes();
            if let Err(e) = self.call(Route::Active, Method::Post, &config, Some(body)).await
                && !(e.status() == Some(404) || e.status() == Some(400) && e.says("not found"))
            {
                return Err(e.into_kms("allow deletion of the Transit key"));
            }
            let key = format!("{}/keys/{name}", self.transit);
            if let Err(e) = self.call(Route::Active, Method::Delete, &key, None).await
                && e.status() != Some(404)
            {
                return Err(e.into_kms("delete the Transit key"));
            }
        }
        self.delete_record(name).await.map_err(|e| e.into_kms("delete key metadata"))?;
        tracing::info!(key_id = name, "key deleted after its waiting period");
        Ok(())
    }

    /// Deletes a record and every version of it (absent: done).
    pub(super) async fn delete_record(&self, key_id: &str) -> std::result::Result<(), CallError> {
        self.cache_drop(key_id);
        let path = format!("{}/metadata/{}", self.kv, self.kv_path(key_id));
        match self.call(Route::Active, Method::Delete, &path, None).await {
            Err(e) if e.status() != Some(404) => Err(e),
            _ => Ok(()),
        }
    }

    /// Key ids after `after`, ascending, at most `limit` (KV `LIST` with OpenBao's
    /// `after`/`limit`; filtered and sorted here too, for servers that ignore them).
    pub(super) async fn list_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let path = format!("{}/metadata/{}/", self.kv, self.prefix);
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if limit != usize::MAX {
            query.push(("limit", limit.to_string()));
        }
        let reply = self.call_with(Route::Active, Method::List, &path, &query, None).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e.into_kms("list key metadata")),
        };
        let keys = reply.as_ref().and_then(|v| v.get("data")?.get("keys")?.as_array().cloned()).unwrap_or_default();
        let mut ids: Vec<String> = keys
            .into_iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .filter(|k| !k.ends_with('/') && validate_key_id("key_id", k).is_ok())
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(ids)
    }

    pub(super) async fn describe(&self, key_id: &str) -> Result<DescribeKeyResponse> {
        let key_metadata = match self.load(key_id).await? {
            Loaded::Record(record, _) => record.metadata(),
            Loaded::Unreadable { created } => kms_types::types::KeyMetadata {
                key_id: key_id.to_owned(),
                key_state: KeyState::Unavailable,
                key_usage: KeyUsage::EncryptDecrypt,
                key_spec: KeySpec::Aes256,
                origin: KeyOrigin::Kms,
                description: None,
                tags: Default::default(),
                creation_date: created.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                deletion_date: None,
                current_version: 1,
                rotation_date: None,
                valid_to: None,
            },
        };
        Ok(DescribeKeyResponse { key_metadata })
    }

    pub(super) async fn list(self: &Arc<Self>, request: ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = validate_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_key_id("marker", marker)?;
        }
        // A prefix filters the names (one LIST) before any per-key read.
        let prefix = request.checked_prefix()?;
        let mut ids = if prefix.is_empty() {
            self.list_ids(request.marker.as_deref(), limit + 1).await?
        } else {
            let mut ids = self.list_ids(request.marker.as_deref(), usize::MAX).await?;
            ids.retain(|id| id.starts_with(prefix));
            ids.truncate(limit + 1);
            ids
        };
        let truncated = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if truncated { ids.last().cloned() } else { None };
        let mut keys = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CONCURRENCY) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, id) in chunk.iter().enumerate() {
                let this = self.clone();
                let id = id.clone();
                tasks.spawn(async move { (i, id.clone(), this.load(&id).await) });
            }
            let mut found: Vec<(usize, KeyListEntry)> = Vec::new();
            while let Some(done) = tasks.join_next().await {
                let (i, key_id, loaded) = done.map_err(|e| KmsError::backend(format!("list task failed: {e}")))?;
                let key_state = match loaded {
                    Ok(Loaded::Record(r, _)) => r.effective_state(),
                    Ok(Loaded::Unreadable { .. }) => KeyState::Unavailable,
                    // Deleted meanwhile (or purged now): not listed.
                    Err(KmsError::KeyNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                found.push((i, KeyListEntry { key_id, key_state }));
            }
            found.sort_by_key(|(i, _)| *i);
            keys.extend(found.into_iter().map(|(_, e)| e));
        }
        Ok(ListKeysResponse { keys, next_marker, truncated })
    }

    /// Whether some node serves (an unsealed active node or standby); answered from a cache
    /// of [`HEALTH_TTL`] so that health probes never amplify into Vault calls.
    pub(super) async fn health(&self) -> bool {
        if let Some((healthy, at)) = *self.health.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < HEALTH_TTL
        {
            return healthy;
        }
        let statuses = self.transport.probe().await;
        let healthy = statuses.iter().any(|s| matches!(s, 200 | 429 | 473));
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Some((healthy, Instant::now()));
        healthy
    }
}
