//! Automatic key rotation on a period (`EnableKeyRotation`, `DisableKeyRotation`,
//! `GetKeyRotationStatus`), carried out by the server.
//!
//! The period is kept with the key, in the backend, as the tag [`ROTATION_TAG`] (days, decimal):
//! it survives restarts and reconfigures and needs nothing but tag support from the backend.
//! The tag is the server's: `TagResource`/`UntagResource` may not set or remove it and
//! `ListResourceTags` does not show it. [`rotate_due`] rotates every key whose last rotation (or
//! creation) is at least one period old; `kms serve` runs it every
//! [`SWEEP_INTERVAL`] ([`run`]). Only `Enabled` keys are rotated, as in AWS KMS.

use std::sync::Arc;
use std::time::Duration;

use kms_core::encryption::service::EncryptionService;
use kms_core::service_manager::KmsServiceManager;
use kms_types::error::{KmsError, Result};
use kms_types::types::{KeyIdRequest, KeyMetadata, KeyState, ListKeysRequest, MAX_LIST_LIMIT};
use time::OffsetDateTime;

/// The tag holding a key's rotation period in days.
pub const ROTATION_TAG: &str = "kms:rotation-period-days";
/// The prefix of tags only the server sets.
pub const RESERVED_TAG_PREFIX: &str = "kms:";
/// The default period (AWS: 365 days).
pub const DEFAULT_PERIOD_DAYS: u32 = 365;
/// The accepted periods (AWS: 90 to 2560 days).
pub const PERIOD_DAYS: std::ops::RangeInclusive<u32> = 90..=2560;
/// How often `kms serve` looks for keys due.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// A key's rotation period, if automatic rotation is on.
pub fn period_days(metadata: &KeyMetadata) -> Option<u32> {
    metadata.tags.get(ROTATION_TAG).and_then(|v| v.parse().ok())
}

/// When the key is next due, if automatic rotation is on.
pub fn next_rotation(metadata: &KeyMetadata) -> Option<OffsetDateTime> {
    let days = period_days(metadata)?;
    let last = metadata.rotation_date.unwrap_or(metadata.creation_date);
    Some(last + time::Duration::days(i64::from(days)))
}

/// Rotates every `Enabled` key with automatic rotation whose period has passed at `now`;
/// returns the ids rotated. A key that fails is logged and skipped (the next sweep retries).
pub async fn rotate_due(service: &EncryptionService, now: OffsetDateTime) -> Result<Vec<String>> {
    let mut rotated = Vec::new();
    let mut marker = None;
    loop {
        let request = ListKeysRequest { limit: Some(MAX_LIST_LIMIT), marker, ..ListKeysRequest::default() };
        let page = service.list_keys(request).await?;
        for entry in page.keys.iter().filter(|k| k.key_state == KeyState::Enabled) {
            let described =
                service.describe_key(kms_types::types::DescribeKeyRequest { key_id: entry.key_id.clone() }).await;
            let metadata = match described {
                Ok(d) => d.key_metadata,
                Err(KmsError::KeyNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if next_rotation(&metadata).is_some_and(|due| due <= now) {
                match service.rotate_key(KeyIdRequest { key_id: metadata.key_id.clone() }).await {
                    Ok(_) => rotated.push(metadata.key_id),
                    Err(err) => tracing::warn!(key_id = %metadata.key_id, error = %err, "automatic rotation failed"),
                }
            }
        }
        match page.next_marker {
            Some(next) if page.truncated => marker = Some(next),
            _ => return Ok(rotated),
        }
    }
}

/// Runs [`rotate_due`] every `interval` while the service runs (a stopped service is skipped).
pub async fn run(manager: Arc<KmsServiceManager>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let Some(service) = manager.encryption_service().await else { continue };
        match rotate_due(&service, OffsetDateTime::now_utc()).await {
            Ok(rotated) if !rotated.is_empty() => tracing::info!(keys = ?rotated, "rotated keys on their period"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "the automatic rotation sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use kms_core::manager::{KmsManager, ManagerOptions};
    use kms_core::mock::MemoryBackend;
    use kms_types::types::{CreateKeyRequest, DescribeKeyRequest, TagKeyRequest};

    use super::*;

    #[tokio::test]
    async fn keys_are_rotated_once_their_period_has_passed() {
        let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
        let svc = EncryptionService::new(Arc::new(manager));
        let mut ids = Vec::new();
        for name in ["auto", "manual"] {
            let request = CreateKeyRequest { key_name: Some(name.into()), ..CreateKeyRequest::default() };
            ids.push(svc.create_key(request).await.unwrap().key_id);
        }
        let tags = [(ROTATION_TAG.to_owned(), "90".to_owned())].into();
        svc.tag_key(TagKeyRequest { key_id: "auto".into(), tags }).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(rotate_due(&svc, now + time::Duration::days(89)).await.unwrap().is_empty());
        assert_eq!(rotate_due(&svc, now + time::Duration::days(91)).await.unwrap(), vec!["auto".to_owned()]);
        let auto = svc.describe_key(DescribeKeyRequest { key_id: "auto".into() }).await.unwrap().key_metadata;
        assert_eq!(auto.current_version, 2);
        assert_eq!(next_rotation(&auto), auto.rotation_date.map(|d| d + time::Duration::days(90)));
        // The next one is due a period after that rotation (which happened at the real clock's
        // now), not before.
        assert!(rotate_due(&svc, now + time::Duration::days(89)).await.unwrap().is_empty());
        assert_eq!(rotate_due(&svc, now + time::Duration::days(91)).await.unwrap(), vec!["auto".to_owned()]);
        let manual = svc.describe_key(DescribeKeyRequest { key_id: "manual".into() }).await.unwrap().key_metadata;
        assert_eq!((manual.current_version, period_days(&manual)), (1, None));
    }
}
