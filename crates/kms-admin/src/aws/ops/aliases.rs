//! Aliases: `CreateAlias`, `UpdateAlias`, `DeleteAlias` and `ListAliases`, authorized on
//! the keys they point at.

use kms_core::encryption::service::EncryptionService;
use kms_types::alias::{ALIAS_PREFIX, CreateAliasRequest, ListAliasesRequest};
use serde_json::{Value, json};

use super::{Ctx, call};
use crate::app::RequestInfo;
use crate::auth::Operation;
use crate::aws::errors::AwsError;
use crate::aws::shapes;

impl Ctx<'_> {
    /// `CreateAlias`, or `UpdateAlias` when `update`: the caller needs the right on the
    /// target key (and, to move an alias, on the key it leaves).
    pub(super) async fn put_alias(
        &self,
        svc: &EncryptionService,
        input: shapes::AliasTarget,
        update: bool,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::ManageAliases;
        let alias_name = alias_name(&input.alias_name)?;
        let target_key = self.resolve_key_only("TargetKeyId", &input.target_key_id)?;
        info.key_id = Some(target_key.clone());
        self.check(operation, &target_key)?;
        let request = CreateAliasRequest { alias_name: alias_name.clone(), target_key_id: target_key };
        if update {
            // Moving an alias takes the right on the key it leaves, too.
            let current = self.alias_target(svc, &alias_name).await?;
            self.check(operation, &current)?;
            call(self.app, operation, svc.update_alias(request)).await?;
        } else {
            call(self.app, operation, svc.create_alias(request)).await?;
        }
        Ok(json!({}))
    }

    pub(super) async fn delete_alias(
        &self,
        svc: &EncryptionService,
        input: shapes::AliasOnly,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let operation = Operation::ManageAliases;
        let alias_name = alias_name(&input.alias_name)?;
        let current = self.alias_target(svc, &alias_name).await?;
        info.key_id = Some(current.clone());
        self.check(operation, &current)?;
        call(self.app, operation, svc.delete_alias(&alias_name)).await?;
        Ok(json!({}))
    }

    /// What an alias points at now (`NotFoundException` if it does not exist).
    async fn alias_target(&self, svc: &EncryptionService, alias_name: &str) -> Result<String, AwsError> {
        call(self.app, Operation::ManageAliases, svc.resolve_key_ref(alias_name)).await
    }

    pub(super) async fn list_aliases(
        &self,
        svc: &EncryptionService,
        input: shapes::Paging,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let key_id = match &input.key_id {
            Some(key) => {
                let id = self.resolve_key_only("KeyId", key)?;
                info.key_id = Some(id.clone());
                self.check(Operation::ListKeys, &id)?;
                Some(id)
            }
            None => None,
        };
        if let Some(marker) = &input.marker {
            kms_types::alias::validate_alias_name("Marker", marker)
                .map_err(|_| AwsError::client("InvalidMarkerException", "Marker is not one this server gave"))?;
        }
        let limit = input.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(AwsError::validation(format!("Limit must be 1 to 100, got {limit}")));
        }
        let request = ListAliasesRequest { key_id, limit: Some(limit), marker: input.marker };
        let page = call(self.app, Operation::ListKeys, svc.list_aliases(request)).await?;
        // An identity limited to some keys sees the aliases of those keys only.
        let aliases: Vec<Value> = page
            .aliases
            .iter()
            .filter(|a| self.identity.may_on(Operation::ListKeys, Some(&a.target_key_id)))
            .map(|a| {
                json!({
                    "AliasName": a.alias_name,
                    "AliasArn": self.settings.alias_arn(a.alias_name.trim_start_matches(ALIAS_PREFIX)),
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": shapes::epoch(a.creation_date),
                    "LastUpdatedDate": shapes::epoch(a.last_updated_date),
                })
            })
            .collect();
        let mut out = json!({"Aliases": aliases, "Truncated": page.truncated});
        if let (true, Some(next)) = (page.truncated, page.next_marker) {
            out["NextMarker"] = json!(next);
        }
        Ok(out)
    }
}

/// An `AliasName` input, checked (`ValidationException` naming the rule).
pub(super) fn alias_name(input: &str) -> Result<String, AwsError> {
    kms_types::alias::validate_alias_name("AliasName", input).map_err(|e| AwsError::validation(e.to_string()))?;
    Ok(input.to_owned())
}
