//! Tags and automatic rotation: `TagResource`, `UntagResource`, `ListResourceTags`, and
//! `Enable`/`DisableKeyRotation` and `GetKeyRotationStatus`, whose period is kept as a
//! reserved tag (see [`crate::aws::rotation`]).

use kms_core::encryption::service::EncryptionService;
use kms_types::types::{TagKeyRequest, UntagKeyRequest};
use serde_json::{Value, json};

use super::{Ctx, call};
use crate::app::RequestInfo;
use crate::auth::Operation;
use crate::aws::errors::AwsError;
use crate::aws::rotation;
use crate::aws::shapes;

impl Ctx<'_> {
    pub(super) async fn tag_resource(
        &self,
        svc: &EncryptionService,
        input: shapes::TagResource,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::TagKey;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let tags = shapes::tags(input.tags)?;
        reserved_tags(tags.keys())?;
        call(self.app, operation, svc.tag_key(TagKeyRequest { key_id, tags })).await?;
        Ok(json!({}))
    }

    pub(super) async fn untag_resource(
        &self,
        svc: &EncryptionService,
        input: shapes::UntagResource,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::UntagKey;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        reserved_tags(&input.tag_keys)?;
        let request = UntagKeyRequest { key_id, tag_keys: input.tag_keys };
        call(self.app, operation, svc.untag_key(request)).await?;
        Ok(json!({}))
    }

    pub(super) async fn list_resource_tags(
        &self,
        svc: &EncryptionService,
        input: shapes::Paging,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let key = input.key_id.ok_or_else(|| AwsError::validation("KeyId is required"))?;
        let limit = input.limit.unwrap_or(50) as usize;
        if !(1..=50).contains(&limit) {
            return Err(AwsError::validation(format!("Limit must be 1 to 50, got {limit}")));
        }
        let m = self.describe(svc, &key, Operation::DescribeKey, info).await?;
        let after = input.marker;
        if after.as_ref().is_some_and(|m2| !m.tags.contains_key(m2)) {
            return Err(AwsError::client("InvalidMarkerException", "Marker is not one this server gave"));
        }
        let rest: Vec<(&String, &String)> = m
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with(rotation::RESERVED_TAG_PREFIX))
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .collect();
        let truncated = rest.len() > limit;
        let page = &rest[..rest.len().min(limit)];
        let tags: Vec<Value> = page.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
        let mut out = json!({"Tags": tags, "Truncated": truncated});
        if truncated {
            out["NextMarker"] = json!(page.last().map(|(k, _)| k.as_str()));
        }
        Ok(out)
    }

    pub(super) async fn enable_key_rotation(
        &self,
        svc: &EncryptionService,
        input: shapes::EnableKeyRotation,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let days = input.rotation_period_in_days.unwrap_or(rotation::DEFAULT_PERIOD_DAYS);
        if !rotation::PERIOD_DAYS.contains(&days) {
            return Err(AwsError::validation(format!("RotationPeriodInDays must be 90 to 2560, got {days}")));
        }
        let operation = Operation::RotateKey;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let tags = [(rotation::ROTATION_TAG.to_owned(), days.to_string())].into();
        call(self.app, operation, svc.tag_key(TagKeyRequest { key_id, tags })).await?;
        Ok(json!({}))
    }

    pub(super) async fn disable_key_rotation(
        &self,
        svc: &EncryptionService,
        input: shapes::KeyOnly,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::RotateKey;
        let key_id = self.authorized(svc, &input.key_id, operation, info).await?;
        let request = UntagKeyRequest { key_id, tag_keys: vec![rotation::ROTATION_TAG.to_owned()] };
        call(self.app, operation, svc.untag_key(request)).await?;
        Ok(json!({}))
    }

    pub(super) async fn get_key_rotation_status(
        &self,
        svc: &EncryptionService,
        input: shapes::KeyOnly,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let m = self.describe(svc, &input.key_id, Operation::DescribeKey, info).await?;
        let mut out = json!({
            "KeyId": self.settings.key_arn(&m.key_id),
            "KeyRotationEnabled": rotation::period_days(&m).is_some(),
        });
        if let (Some(days), Some(next)) = (rotation::period_days(&m), rotation::next_rotation(&m)) {
            out["RotationPeriodInDays"] = json!(days);
            out["NextRotationDate"] = json!(shapes::epoch(next));
        }
        if let Some(on_demand) = m.rotation_date {
            out["OnDemandRotationStartDate"] = json!(shapes::epoch(on_demand));
        }
        Ok(out)
    }
}

/// Refuses tags only the server sets (the rotation period).
fn reserved_tags<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), AwsError> {
    match keys.into_iter().find(|k| k.starts_with(rotation::RESERVED_TAG_PREFIX)) {
        Some(k) => Err(AwsError::client("TagException", format!("tag keys starting kms: are reserved ({k})"))),
        None => Ok(()),
    }
}
