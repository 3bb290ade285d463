//! Creating a key: claim the id in KV, create the Transit key, adopt nothing else, mark the
//! record provisioned; an attempt that failed retryably or was abandoned is resumed.

use super::*;

impl Inner {
    /// Creates a key; safe to call again after a retryable failure (the claim and Transit key
    /// of the failed attempt are carried on, never duplicated: an unnamed create that failed
    /// retryably is retried under the id it had).
    pub(super) async fn create(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let unnamed = request.key_name.is_none().then(|| {
            format!("{:?}|{:?}|{:?}|{:?}", request.description, request.tags, request.policy, request.key_usage)
        });
        let key_id = match (&request.key_name, &unnamed) {
            (Some(name), _) => {
                validate_key_id("key_name", name)?;
                name.clone()
            }
            (None, Some(fingerprint)) => match self.unnamed_lock().remove(fingerprint) {
                Some(id) => id,
                None => kms_crypto::rand::key_id()?,
            },
            (None, None) => kms_crypto::rand::key_id()?,
        };
        let result = self.create_as(&key_id, request).await;
        if let (Err(e), Some(fingerprint)) = (&result, unnamed)
            && e.is_retryable()
        {
            let mut unnamed_ids = self.unnamed_lock();
            if unnamed_ids.len() >= MAX_NOTES {
                unnamed_ids.clear();
            }
            unnamed_ids.insert(fingerprint, key_id);
        }
        result
    }

    pub(super) fn unnamed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.unnamed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn create_as(&self, key_id: &str, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let key_id = key_id.to_owned();
        if request.key_usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::invalid_request("key_usage", "only encrypt_decrypt keys are supported"));
        }
        if request.origin.unwrap_or_default() == KeyOrigin::External {
            return self.create_external(key_id, request).await;
        }
        let mut record = KeyRecord {
            format: RECORD_FORMAT,
            key_id: key_id.clone(),
            key_state: KeyState::Enabled,
            key_usage: request.key_usage,
            key_spec: KeySpec::Aes256,
            origin: KeyOrigin::Kms,
            description: request.description,
            tags: request.tags,
            policy: request.policy,
            creation_date: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            deletion_date: None,
            rotation_date: None,
            current_version: 1,
            provisioned: false,
            adopted: false,
            material_fingerprints: Vec::new(),
            valid_to: None,
        };
        // 1. Claim the id in KV (create-only): two servers cannot both create it. A claim of
        //    ours left by an attempt that failed retryably is recognised and carried on.
        let (claimed, fresh) = match self.write(&record, 0, "create_key").await.map(|v| (v, true)) {
            Ok(v) => v,
            Err(e) if e.says("check-and-set") => match self.resume_claim(&key_id, "create_key").await? {
                Some((existing, _)) if existing.provisioned => {
                    return Ok(CreateKeyResponse { key_id, key_metadata: existing.metadata() });
                }
                Some((existing, version)) => {
                    record = existing;
                    (version, false)
                }
                None => return Err(KmsError::KeyAlreadyExists { key_id }),
            },
            Err(e) => return Err(e.into_kms("create key metadata")),
        };
        // Until provisioning ends for good, the claim is ours to resume: a retryable failure
        // or an abandoned attempt leaves a note the next attempt recognises.
        let guard = InFlight::new(self, (key_id, "create_key"), record.clone());
        let result = self.provision(record, claimed, fresh).await;
        if !result.as_ref().is_err_and(KmsError::is_retryable) {
            guard.settle();
        }
        result
    }

    /// Steps 2-4 of a create, after the claim (record at KV version `claimed`; `fresh`: this
    /// attempt made the claim, so no Transit key of that name may exist yet).
    pub(super) async fn provision(
        &self,
        mut record: KeyRecord,
        claimed: u64,
        fresh: bool,
    ) -> Result<CreateKeyResponse> {
        let key_id = record.key_id.clone();
        // A Transit key that already exists is someone else's: not adopted. (A resumed
        // claim may already have its key, made by the attempt that lost its reply.)
        if fresh {
            let path = format!("{}/keys/{key_id}", self.transit);
            match self.call(Route::Active, Method::Get, &path, None).await {
                Ok(_) => {
                    self.release_claim(&key_id).await;
                    return Err(KmsError::KeyAlreadyExists { key_id });
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e.into_kms("read the Transit key")),
            }
        }
        // 2. Create the Transit key: AES-256-GCM96, never exportable. Transit's create is an
        //    upsert, so a key someone else made under this name meanwhile would be kept:
        // 3. read it back and adopt nothing but the key we asked for, at version 1.
        let path = format!("{}/keys/{key_id}", self.transit);
        let body =
            json!({ "type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false, "derived": false })
                .to_string()
                .into_bytes();
        let checked = match self.call(Route::Active, Method::Post, &path, Some(body)).await {
            Ok(_) => self.check_transit_key(&key_id).await,
            Err(e) => Err(e.into_kms("create the Transit key")),
        };
        match checked {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key_id = %key_id, "a Transit key of this name already existed with other settings; not adopted");
                self.release_claim(&key_id).await;
                return Err(KmsError::KeyAlreadyExists { key_id });
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.release_claim(&key_id).await;
                }
                return Err(e);
            }
        }
        // 4. Mark the record provisioned: only now may Transit be called for this key.
        record.provisioned = true;
        if let Err(e) = self.write(&record, claimed, "create_key").await {
            if e.says("check-and-set") && self.landed_earlier(&record, "create_key") {
                return Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() });
            }
            return Err(e.into_kms("write key metadata"));
        }
        tracing::info!(key_id = %key_id, "key created");
        Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() })
    }

    /// After a create-only write found a record: ours (a retry of a create or import, named by
    /// `operation`, whose reply was lost) with its version, or `None` (someone else's key).
    pub(super) async fn resume_claim(&self, key_id: &str, operation: &'static str) -> Result<Option<(KeyRecord, u64)>> {
        let pending = self.unconfirmed_lock().remove(&(key_id.to_owned(), operation));
        let Some(pending) = pending else { return Ok(None) };
        match self.load_fresh(key_id).await? {
            Loaded::Record(now, version) => {
                let mut unprovisioned = now.clone();
                unprovisioned.provisioned = false;
                Ok((unprovisioned == pending || now == pending).then_some((now, version)))
            }
            Loaded::Unreadable { .. } => Ok(None),
        }
    }

    /// Whether the Transit key `key_id` is exactly what `create` asks for: `aes256-gcm96`,
    /// not exportable, no plaintext backup, not derived, one version.
    pub(super) async fn check_transit_key(&self, key_id: &str) -> Result<bool> {
        let path = format!("{}/keys/{key_id}", self.transit);
        let reply =
            self.call(Route::Active, Method::Get, &path, None).await.map_err(|e| e.into_kms("read the Transit key"))?;
        let data = reply.as_ref().and_then(|v| v.get("data")).cloned().unwrap_or(Value::Null);
        Ok(data.get("type").and_then(Value::as_str) == Some("aes256-gcm96")
            && data.get("exportable").and_then(Value::as_bool) == Some(false)
            && data.get("allow_plaintext_backup").and_then(Value::as_bool) == Some(false)
            && data.get("derived").and_then(Value::as_bool) == Some(false)
            && data.get("latest_version").and_then(Value::as_u64) == Some(1))
    }

    pub(super) async fn release_claim(&self, key_id: &str) {
        if let Err(e) = self.delete_record(key_id).await {
            tracing::warn!(key_id, error = %e, "could not release the claim of a key that was not created");
        }
    }
}
