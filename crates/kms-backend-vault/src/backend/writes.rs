//! Metadata writes that are safe to repeat: check-and-set, a lost reply read back, and notes
//! of writes whose outcome is unknown so that the next attempt does not apply them twice.

use super::*;

impl Inner {
    /// Writes a record with check-and-set against `cas` (0: create only). A write whose
    /// reply was lost is read back: if the record now is exactly ours at `cas + 1`, it
    /// landed; if it cannot be read, it is remembered as unconfirmed under `operation` and
    /// the error (retryable) returned.
    pub(super) async fn write(
        &self,
        record: &KeyRecord,
        cas: u64,
        operation: &'static str,
    ) -> std::result::Result<u64, CallError> {
        let path = format!("{}/data/{}", self.kv, self.kv_path(&record.key_id));
        let body = serde_json::to_vec(&json!({ "options": { "cas": cas }, "data": record }))
            .map_err(|e| CallError::Decode(e.to_string()))?;
        self.cache_drop(&record.key_id);
        // While the write is in flight it is noted; if this attempt is abandoned (the
        // manager's attempt deadline drops it), the guard turns the note into an unconfirmed
        // write, which the next attempt recognises.
        let guard = InFlight::new(self, (record.key_id.clone(), operation), record.clone());
        let outcome = self.call(Route::Active, Method::Post, &path, Some(body)).await;
        let outcome = match outcome {
            Ok(reply) => {
                let version = reply.as_ref().and_then(|v| v.get("data")?.get("version")?.as_u64()).unwrap_or(cas + 1);
                self.cache_put(record, version);
                Ok(version)
            }
            Err(e) if e.is_lost() => match self.read_record(&record.key_id).await {
                Ok(Loaded::Record(now, version)) if version == cas + 1 && &now == record => {
                    tracing::debug!(key_id = %record.key_id, operation, "a write whose reply was lost had landed");
                    Ok(version)
                }
                Ok(_) => Err(e),
                // Outcome unknown: leave the note for the next attempt.
                Err(_) => return Err(e),
            },
            Err(e) => Err(e),
        };
        guard.settle();
        outcome
    }

    /// Notes an unconfirmed write (bounded: a server that never retries its failures does not
    /// grow the table without end).
    pub(super) fn note_unconfirmed(&self, note: (String, &'static str), record: KeyRecord) {
        let mut notes = self.unconfirmed_lock();
        if notes.len() >= MAX_NOTES && !notes.contains_key(&note) {
            notes.clear();
        }
        notes.insert(note, record);
    }

    pub(super) fn unconfirmed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, &'static str), KeyRecord>> {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `record` is what an earlier, unconfirmed `operation` on it wrote (consumes
    /// the note).
    pub(super) fn landed_earlier(&self, record: &KeyRecord, operation: &'static str) -> bool {
        let key = (record.key_id.clone(), operation);
        self.unconfirmed_lock().remove(&key).is_some_and(|written| &written == record)
    }

    /// Read-modify-write of a record with check-and-set; `change` may refuse. Safe to call
    /// again after a failure: a change whose write landed unseen is not applied twice.
    pub(super) async fn update(
        &self,
        key_id: &str,
        operation: &'static str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<()>,
    ) -> Result<KeyRecord> {
        validate_key_id("key_id", key_id)?;
        let mut attempt = 0;
        while attempt < CAS_ATTEMPTS {
            let (mut record, version) = match self.load_fresh(key_id).await? {
                Loaded::Record(r, v) => (r, v),
                Loaded::Unreadable { .. } => {
                    return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation));
                }
            };
            if self.landed_earlier(&record, operation) {
                return Ok(record);
            }
            if record.deletion_due(OffsetDateTime::now_utc()) {
                self.purge(&record).await?;
                return Err(KmsError::key_not_found(key_id));
            }
            if !record.provisioned {
                return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation));
            }
            change(&mut record)?;
            match self.write(&record, version, operation).await {
                Ok(_) => return Ok(record),
                Err(e) if e.says("check-and-set") => {
                    // Lost a race with another writer: back off (with jitter, so the
                    // contenders spread out), then read the winner's record and reapply.
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, Duration::from_millis(5), Duration::from_millis(500))).await;
                    continue;
                }
                Err(e) => return Err(e.into_kms("write key metadata")),
            }
        }
        Err(KmsError::backend(format!("{operation}: key {key_id} kept changing under concurrent updates")))
    }
}

/// A write in flight: dropped before [`settle`](Self::settle) (the attempt was abandoned, or
/// its reply lost and unreadable), it leaves an unconfirmed note for the next attempt.
pub(super) struct InFlight<'a> {
    inner: &'a Inner,
    note: Option<((String, &'static str), KeyRecord)>,
}

impl<'a> InFlight<'a> {
    pub(super) fn new(inner: &'a Inner, note: (String, &'static str), record: KeyRecord) -> Self {
        Self { inner, note: Some((note, record)) }
    }

    /// The write's outcome is known: no note.
    pub(super) fn settle(mut self) {
        self.note = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((note, record)) = self.note.take() {
            self.inner.note_unconfirmed(note, record);
        }
    }
}
