//! Key management: creating, listing and describing keys, their state (enable, disable,
//! deletion), description, on-demand rotation and the (fixed) key policy.

use kms_core::encryption::service::EncryptionService;
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DeleteKeyRequest, KeyIdRequest, KeyOrigin, ListKeysRequest,
    UpdateKeyDescriptionRequest, validate_key_id, validate_pending_window,
};
use serde_json::{Value, json};

use super::{Ctx, call};
use crate::app::RequestInfo;
use crate::auth::Operation;
use crate::aws::errors::AwsError;
use crate::aws::shapes::{self, SYMMETRIC_DEFAULT};

impl Ctx<'_> {
    pub(super) async fn create_key(
        &self,
        svc: &EncryptionService,
        input: shapes::CreateKey,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let only = |field: &str, value: Option<&str>, allowed: &str| match value {
            None => Ok(()),
            Some(v) if v == allowed => Ok(()),
            Some(v) => Err(AwsError::client(
                "UnsupportedOperationException",
                format!("{field} {v} is not supported: kms keys are {allowed}"),
            )),
        };
        only("KeyUsage", input.key_usage.as_deref(), "ENCRYPT_DECRYPT")?;
        only("KeySpec", input.key_spec.as_deref(), SYMMETRIC_DEFAULT)?;
        only("CustomerMasterKeySpec", input.customer_master_key_spec.as_deref(), SYMMETRIC_DEFAULT)?;
        let origin = match input.origin.as_deref() {
            None | Some("AWS_KMS") => None,
            // A key for imported material (BYOK): `PendingImport` until `ImportKeyMaterial`, on
            // a backend that imports material (else `UnsupportedOperationException`).
            Some("EXTERNAL") => Some(KeyOrigin::External),
            Some(other) => {
                return Err(AwsError::client(
                    "UnsupportedOperationException",
                    format!("Origin {other} is not supported: kms keys are AWS_KMS or EXTERNAL"),
                ));
            }
        };
        if input.multi_region == Some(true) {
            return Err(AwsError::client("UnsupportedOperationException", "multi-region keys are not supported"));
        }
        if input.policy.is_some() {
            return Err(AwsError::client(
                "UnsupportedOperationException",
                "kms does not evaluate key policies: access is the server's identity grants",
            ));
        }
        let _ = input.bypass_policy_lockout_safety_check;
        if !self.identity.may_on(Operation::CreateKey, None) {
            return Err(AwsError::access_denied(self.identity.name(), "CreateKey", None));
        }
        let request = CreateKeyRequest {
            description: input.description,
            tags: shapes::tags(input.tags)?,
            origin,
            ..CreateKeyRequest::default()
        };
        let r = call(self.app, Operation::CreateKey, svc.create_key(request)).await?;
        info.key_id = Some(r.key_id.clone());
        Ok(json!({"KeyMetadata": shapes::key_metadata(self.settings, &r.key_metadata)}))
    }

    pub(super) async fn list_keys(&self, svc: &EncryptionService, input: shapes::Paging) -> Result<Value, AwsError> {
        if input.key_id.is_some() {
            return Err(AwsError::validation("KeyId is not a member of ListKeys"));
        }
        if let Some(marker) = &input.marker {
            validate_key_id("Marker", marker)
                .map_err(|_| AwsError::client("InvalidMarkerException", "Marker is not one this server gave"))?;
        }
        let limit = input.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(AwsError::validation(format!("Limit must be 1 to 1000, got {limit}")));
        }
        let request = ListKeysRequest { limit: Some(limit), marker: input.marker, ..ListKeysRequest::default() };
        let page = self.app.list_visible(svc, self.identity, request).await.map_err(|e| {
            if e.status.is_client_error() { AwsError::validation(e.message) } else { AwsError::internal(e.message) }
        })?;
        let keys: Vec<Value> =
            page.keys.iter().map(|k| json!({"KeyId": k.key_id, "KeyArn": self.settings.key_arn(&k.key_id)})).collect();
        let mut out = json!({"Keys": keys, "Truncated": page.truncated});
        if let (true, Some(next)) = (page.truncated, page.next_marker) {
            out["NextMarker"] = json!(next);
        }
        Ok(out)
    }

    pub(super) async fn describe_key(
        &self,
        svc: &EncryptionService,
        input: shapes::KeyOnly,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let m = self.describe(svc, &input.key_id, Operation::DescribeKey, info).await?;
        Ok(json!({"KeyMetadata": shapes::key_metadata(self.settings, &m)}))
    }

    pub(super) async fn get_key_policy(
        &self,
        svc: &EncryptionService,
        input: shapes::GetKeyPolicy,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        if input.policy_name.as_deref().is_some_and(|n| n != "default") {
            return Err(AwsError::not_found("the only key policy is named default"));
        }
        self.describe(svc, &input.key_id, Operation::DescribeKey, info).await?;
        Ok(json!({"Policy": shapes::default_policy(self.settings), "PolicyName": "default"}))
    }

    pub(super) async fn schedule_key_deletion(
        &self,
        svc: &EncryptionService,
        input: shapes::ScheduleKeyDeletion,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::ScheduleKeyDeletion;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let days = validate_pending_window(input.pending_window_in_days)
            .map_err(|_| AwsError::validation("PendingWindowInDays must be 7 to 30"))?;
        let r =
            call(self.app, operation, svc.delete_key(DeleteKeyRequest { key_id, pending_window_in_days: Some(days) }))
                .await?;
        Ok(json!({
            "KeyId": self.settings.key_arn(&r.key_id),
            "DeletionDate": shapes::epoch(r.deletion_date),
            "KeyState": shapes::key_state(r.key_state),
            "PendingWindowInDays": days,
        }))
    }

    pub(super) async fn cancel_key_deletion(
        &self,
        svc: &EncryptionService,
        input: shapes::KeyOnly,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::CancelKeyDeletion;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let r = call(self.app, operation, svc.cancel_key_deletion(CancelKeyDeletionRequest { key_id })).await?;
        Ok(json!({"KeyId": self.settings.key_arn(&r.key_id)}))
    }

    /// `EnableKey`, `DisableKey` and `RotateKeyOnDemand` (`operation` says which): one key
    /// in, the key's new state kept by the service.
    pub(super) async fn key_transition(
        &self,
        svc: &EncryptionService,
        input: shapes::KeyOnly,
        operation: Operation,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let request = KeyIdRequest { key_id };
        let r = match operation {
            Operation::EnableKey => call(self.app, operation, svc.enable_key(request)).await?,
            Operation::DisableKey => call(self.app, operation, svc.disable_key(request)).await?,
            _ => call(self.app, operation, svc.rotate_key(request)).await?,
        };
        if operation == Operation::RotateKey {
            Ok(json!({"KeyId": self.settings.key_arn(&r.key_metadata.key_id)}))
        } else {
            Ok(json!({}))
        }
    }

    pub(super) async fn update_key_description(
        &self,
        svc: &EncryptionService,
        input: shapes::UpdateKeyDescription,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::UpdateKeyDescription;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let request = UpdateKeyDescriptionRequest { key_id, description: input.description };
        call(self.app, operation, svc.update_key_description(request)).await?;
        Ok(json!({}))
    }
}
