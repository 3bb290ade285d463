//! Rotation and rewrap: move an object's wrapped data key to the newest version of its
//! master key, or to another key, without touching the object's data.
//!
//! The data key itself does not change (the data stays as it is); only its wrapping does,
//! inside the KMS (`ReEncrypt`), under the same encryption context. Old metadata keeps
//! working as long as the old key version can decrypt (rotation keeps old versions), so a
//! store may replace the metadata at its own pace. [`EncryptionService::rewrap_all`] walks
//! many records, reports progress and per-record failures, and resumes after a checkpoint.

use std::collections::HashMap;
use std::ops::ControlFlow;

use kms_types::error::{KmsError, Result};
use kms_types::types::{DecryptRequest, DescribeKeyRequest, EncryptRequest, ReEncryptRequest};

use super::service::EncryptionService;
use super::sse::{ObjectMetadata, SseKind, object_encryption_context};

/// One object to rewrap.
#[derive(Debug, Clone, Copy)]
pub struct RewrapRequest<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The object key.
    pub object_key: &'a str,
    /// Its stored metadata.
    pub metadata: &'a ObjectMetadata,
    /// The key to move to; `None`: the newest version of the object's current key.
    pub destination_key_id: Option<&'a str>,
}

/// One record of a bulk rewrap: a caller id (the resume point), the object and its metadata.
#[derive(Debug, Clone)]
pub struct RewrapRecord {
    /// The caller's id of the record, unique and in a stable order (e.g. `bucket/key`).
    pub id: String,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub object_key: String,
    /// The stored metadata.
    pub metadata: ObjectMetadata,
}

/// How to run a bulk rewrap.
#[derive(Debug, Clone, Default)]
pub struct RewrapOptions {
    /// The key to move every object to; `None`: each object's own key, newest version.
    pub destination_key_id: Option<String>,
    /// Skip records up to and including this id (a previous run's checkpoint).
    pub resume_after: Option<String>,
    /// Stop after this many failures (e.g. the KMS went away); `None`: never stop.
    pub max_failures: Option<u64>,
}

/// What happened to one record.
#[derive(Debug)]
#[non_exhaustive]
pub enum RewrapOutcome {
    /// Rewrapped: store this metadata in place of the old one.
    Rewrapped(ObjectMetadata),
    /// Already under the target key's newest version: nothing to do.
    AlreadyCurrent,
    /// An SSE-C object: its data key is not wrapped by the KMS.
    NotApplicable,
    /// The rewrap failed; the old metadata stays valid.
    Failed(KmsError),
}

/// Counters of a bulk rewrap, and where to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RewrapProgress {
    /// Records skipped because they are at or before `resume_after`.
    pub skipped: u64,
    /// Records rewrapped.
    pub rewrapped: u64,
    /// Records already current.
    pub already_current: u64,
    /// SSE-C records (nothing to rewrap).
    pub not_applicable: u64,
    /// Records that failed.
    pub failed: u64,
    /// Ids of the failed records, in order.
    pub failed_ids: Vec<String>,
    /// The last record handled (its outcome was handed over and accepted): pass it as
    /// `resume_after` to continue.
    pub checkpoint: Option<String>,
    /// Whether the run stopped before the end of the records (`max_failures` reached, or the
    /// callback asked to stop).
    pub stopped_early: bool,
    /// `resume_after` named a record that never came (deleted since the last run, or another
    /// listing): nothing was rewrapped. Run again without `resume_after`; records already
    /// current cost no KMS call.
    pub checkpoint_not_found: bool,
}

impl RewrapProgress {
    /// Records handled (all outcomes, skipped ones excluded).
    pub fn handled(&self) -> u64 {
        self.rewrapped + self.already_current + self.not_applicable + self.failed
    }
}

impl EncryptionService {
    /// Rewraps one object's data key (see the [module docs](self)) and returns its new
    /// metadata; the object data is untouched. The old wrapped key must belong to the key
    /// and version the metadata names (else `Crypto`). SSE-C objects are refused.
    pub async fn rewrap(&self, request: RewrapRequest<'_>) -> Result<ObjectMetadata> {
        let metadata = request.metadata;
        metadata.validate()?;
        if metadata.mode == SseKind::Customer {
            return Err(KmsError::invalid_request(
                "metadata.mode",
                "an SSE-C object's data key is wrapped under the customer key, not by the KMS",
            ));
        }
        let (Some(key_id), Some(version)) = (metadata.master_key_id.as_deref(), metadata.master_key_version) else {
            return Err(KmsError::invalid_request("metadata.mode", "missing master key"));
        };
        let context = object_encryption_context(request.bucket, request.object_key, metadata.mode, &metadata.context)?;
        let moved = self
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: metadata.wrapped_data_key.clone(),
                source_encryption_context: context.clone(),
                destination_key_id: request.destination_key_id.map(str::to_owned),
                destination_encryption_context: None,
            })
            .await;
        let (new_key, new_version, blob) = match moved {
            Ok(r) if r.source_key_id == key_id && r.source_key_version == version => {
                (r.key_id, r.key_version, r.ciphertext_blob)
            }
            Ok(_) => return Err(KmsError::crypto()),
            Err(KmsError::Unsupported { .. }) => {
                // A backend without ReEncrypt: unwrap and wrap again through the KMS.
                let opened = self
                    .decrypt(DecryptRequest {
                        ciphertext_blob: metadata.wrapped_data_key.clone(),
                        encryption_context: context.clone(),
                        key_id: Some(key_id.to_owned()),
                    })
                    .await?;
                if opened.key_id != key_id || opened.key_version != version {
                    return Err(KmsError::crypto());
                }
                let sealed = self
                    .encrypt(EncryptRequest {
                        key_id: request.destination_key_id.unwrap_or(key_id).to_owned(),
                        plaintext: opened.plaintext,
                        encryption_context: context,
                    })
                    .await?;
                (sealed.key_id, sealed.key_version, sealed.ciphertext_blob)
            }
            Err(e) => return Err(e),
        };
        let mut out = metadata.clone();
        out.master_key_id = Some(new_key);
        out.master_key_version = Some(new_version);
        out.wrapped_data_key = blob;
        Ok(out)
    }

    /// Rewraps every record of `records`, one at a time, in order, handing each outcome to
    /// `on_record` (which stores new metadata and may stop the run with
    /// [`ControlFlow::Break`]). Records already under the target key's newest version are
    /// not sent to the KMS. A record that fails does not stop the run (unless
    /// `max_failures` is reached); the returned [`RewrapProgress`] lists the failures and
    /// the checkpoint to resume from.
    pub async fn rewrap_all<I, F>(&self, records: I, options: &RewrapOptions, mut on_record: F) -> RewrapProgress
    where
        I: IntoIterator<Item = RewrapRecord>,
        F: FnMut(&RewrapRecord, RewrapOutcome, &RewrapProgress) -> ControlFlow<()>,
    {
        let mut progress = RewrapProgress::default();
        let mut resuming = options.resume_after.is_some();
        let mut current_versions: HashMap<String, u32> = HashMap::new();
        for record in records {
            if resuming {
                progress.skipped += 1;
                resuming = options.resume_after.as_deref() != Some(record.id.as_str());
                continue;
            }
            let outcome = self.rewrap_record(&record, options, &mut current_versions).await;
            match &outcome {
                RewrapOutcome::Rewrapped(_) => progress.rewrapped += 1,
                RewrapOutcome::AlreadyCurrent => progress.already_current += 1,
                RewrapOutcome::NotApplicable => progress.not_applicable += 1,
                RewrapOutcome::Failed(_) => {
                    progress.failed += 1;
                    progress.failed_ids.push(record.id.clone());
                }
            }
            if on_record(&record, outcome, &progress).is_break() {
                progress.stopped_early = true;
                return progress;
            }
            progress.checkpoint = Some(record.id.clone());
            if options.max_failures.is_some_and(|max| progress.failed >= max) {
                progress.stopped_early = true;
                return progress;
            }
        }
        progress.checkpoint_not_found = resuming;
        progress
    }

    async fn rewrap_record(
        &self,
        record: &RewrapRecord,
        options: &RewrapOptions,
        current_versions: &mut HashMap<String, u32>,
    ) -> RewrapOutcome {
        let metadata = &record.metadata;
        if metadata.mode == SseKind::Customer {
            return RewrapOutcome::NotApplicable;
        }
        let Some(source) = metadata.master_key_id.as_deref() else {
            return RewrapOutcome::Failed(KmsError::invalid_request("metadata.mode", "missing master key"));
        };
        let target = options.destination_key_id.as_deref().unwrap_or(source).to_owned();
        let newest = match current_versions.get(&target) {
            Some(v) => *v,
            None => match self.describe_key(DescribeKeyRequest { key_id: target.clone() }).await {
                Ok(d) => *current_versions.entry(target.clone()).or_insert(d.key_metadata.current_version),
                Err(e) => return RewrapOutcome::Failed(e),
            },
        };
        if source == target && metadata.master_key_version == Some(newest) {
            return RewrapOutcome::AlreadyCurrent;
        }
        let request = RewrapRequest {
            bucket: &record.bucket,
            object_key: &record.object_key,
            metadata,
            destination_key_id: options.destination_key_id.as_deref(),
        };
        match self.rewrap(request).await {
            Ok(new) => RewrapOutcome::Rewrapped(new),
            Err(e) => RewrapOutcome::Failed(e),
        }
    }
}
