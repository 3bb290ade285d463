//! The operations: each AWS target mapped onto the [`EncryptionService`] call of the native
//! API, with the same grants (operations × key patterns). This module dispatches a target and
//! holds what every operation shares (resolving a `KeyId`, authorizing it, timing the call);
//! the operations themselves live by job in [`crypto`], [`keys`], [`tags`], [`aliases`] and
//! [`import`] (BYOK).

mod aliases;
mod crypto;
mod import;
mod keys;
mod tags;

use std::sync::Arc;
use std::time::Instant;

use kms_core::encryption::service::EncryptionService;
use kms_types::alias::ALIAS_PREFIX;
use kms_types::error::KmsError;
use kms_types::types::{DescribeKeyRequest, KeyMetadata, validate_key_id};
use serde_json::Value;

use super::arn::KeyRef;
use super::errors::AwsError;
use super::settings::AwsSettings;
use super::shapes::parse;
use crate::App;
use crate::app::RequestInfo;
use crate::auth::{Identity, Operation};

/// One request's context: the server, the settings, the caller.
pub(crate) struct Ctx<'a> {
    pub(crate) app: &'a App,
    pub(crate) settings: &'a AwsSettings,
    pub(crate) identity: &'a Identity,
}

/// The operation a target is authorized and counted as.
fn operation_of(target: &str) -> Option<Operation> {
    use Operation as Op;
    Some(match target {
        "Encrypt" => Op::Encrypt,
        "Decrypt" => Op::Decrypt,
        "ReEncrypt" => Op::ReEncrypt,
        "GenerateDataKey" | "GenerateRandom" => Op::GenerateDataKey,
        "GenerateDataKeyWithoutPlaintext" => Op::GenerateDataKeyWithoutPlaintext,
        "CreateKey" => Op::CreateKey,
        "DescribeKey" | "ListResourceTags" | "GetKeyPolicy" => Op::DescribeKey,
        "ListKeys" => Op::ListKeys,
        "EnableKey" => Op::EnableKey,
        "DisableKey" => Op::DisableKey,
        "ScheduleKeyDeletion" => Op::ScheduleKeyDeletion,
        "CancelKeyDeletion" => Op::CancelKeyDeletion,
        "RotateKeyOnDemand" | "EnableKeyRotation" | "DisableKeyRotation" => Op::RotateKey,
        "GetKeyRotationStatus" => Op::DescribeKey,
        "UpdateKeyDescription" => Op::UpdateKeyDescription,
        "TagResource" => Op::TagKey,
        "UntagResource" => Op::UntagKey,
        "CreateAlias" | "UpdateAlias" | "DeleteAlias" => Op::ManageAliases,
        "ListAliases" => Op::ListKeys,
        "GetParametersForImport" => Op::GetParametersForImport,
        "ImportKeyMaterial" => Op::ImportKeyMaterial,
        "DeleteImportedKeyMaterial" => Op::DeleteImportedKeyMaterial,
        _ => return None,
    })
}

impl Ctx<'_> {
    pub(crate) async fn run(&self, target: &str, body: &[u8], info: &mut RequestInfo) -> Result<Value, AwsError> {
        let Some(operation) = operation_of(target) else {
            return Err(AwsError::unsupported(target));
        };
        info.operation = Some(operation);
        if !self.identity.may(operation) {
            return Err(AwsError::access_denied(self.identity.name(), target, None));
        }
        let svc = self.service().await?;
        match target {
            "Encrypt" => self.encrypt(&svc, parse(body)?, info).await,
            "Decrypt" => self.decrypt(&svc, parse(body)?, info).await,
            "ReEncrypt" => self.re_encrypt(&svc, parse(body)?, info).await,
            "GenerateDataKey" => self.generate_data_key(&svc, parse(body)?, true, info).await,
            "GenerateDataKeyWithoutPlaintext" => self.generate_data_key(&svc, parse(body)?, false, info).await,
            "GenerateRandom" => crypto::generate_random(parse(body)?),
            "CreateKey" => self.create_key(&svc, parse(body)?, info).await,
            "ListKeys" => self.list_keys(&svc, parse(body)?).await,
            "ListResourceTags" => self.list_resource_tags(&svc, parse(body)?, info).await,
            "GetKeyPolicy" => self.get_key_policy(&svc, parse(body)?, info).await,
            "DescribeKey" => self.describe_key(&svc, parse(body)?, info).await,
            "ScheduleKeyDeletion" => self.schedule_key_deletion(&svc, parse(body)?, info).await,
            "CancelKeyDeletion" => self.cancel_key_deletion(&svc, parse(body)?, info).await,
            "EnableKey" | "DisableKey" | "RotateKeyOnDemand" => {
                self.key_transition(&svc, parse(body)?, operation, info).await
            }
            "UpdateKeyDescription" => self.update_key_description(&svc, parse(body)?, info).await,
            "TagResource" => self.tag_resource(&svc, parse(body)?, info).await,
            "UntagResource" => self.untag_resource(&svc, parse(body)?, info).await,
            "CreateAlias" => self.put_alias(&svc, parse(body)?, false, info).await,
            "UpdateAlias" => self.put_alias(&svc, parse(body)?, true, info).await,
            "DeleteAlias" => self.delete_alias(&svc, parse(body)?, info).await,
            "ListAliases" => self.list_aliases(&svc, parse(body)?, info).await,
            "EnableKeyRotation" => self.enable_key_rotation(&svc, parse(body)?, info).await,
            "DisableKeyRotation" => self.disable_key_rotation(&svc, parse(body)?, info).await,
            "GetKeyRotationStatus" => self.get_key_rotation_status(&svc, parse(body)?, info).await,
            "GetParametersForImport" => self.get_parameters_for_import(&svc, parse(body)?, info).await,
            "ImportKeyMaterial" => self.import_key_material(&svc, parse(body)?, info).await,
            "DeleteImportedKeyMaterial" => self.delete_imported_key_material(&svc, parse(body)?, info).await,
            _ => Err(AwsError::unsupported(target)),
        }
    }

    /// A `TargetKeyId`: a key id or key ARN, never an alias.
    fn resolve_key_only(&self, field: &str, input: &str) -> Result<String, AwsError> {
        match self.settings.parse_key_ref(field, input)? {
            KeyRef::Key(id) => {
                validate_key_id(field, &id).map_err(|_| AwsError::not_found(format!("key {input} does not exist")))?;
                Ok(id)
            }
            KeyRef::Alias(_) => Err(AwsError::validation(format!("{field} must name a key, not an alias"))),
        }
    }

    async fn service(&self) -> Result<Arc<EncryptionService>, AwsError> {
        self.app.manager.encryption_service().await.ok_or_else(|| {
            AwsError::from(KmsError::ServiceUnavailable { message: "the kms service is not running".into() })
        })
    }

    /// The key id a `KeyId` input names: ids and key ARNs directly, aliases (`alias/x`, alias
    /// ARNs) through the backend, so authorization always sees the key.
    async fn resolve(&self, svc: &EncryptionService, field: &str, input: &str) -> Result<String, AwsError> {
        match self.settings.parse_key_ref(field, input)? {
            KeyRef::Key(_) => self.resolve_key_only(field, input),
            KeyRef::Alias(name) => {
                let alias = aliases::alias_name(&format!("{ALIAS_PREFIX}{name}"))?;
                match svc.resolve_key_ref(&alias).await {
                    Err(KmsError::Unsupported { .. }) | Err(KmsError::KeyNotFound { .. }) => {
                        Err(AwsError::not_found(format!("{alias} does not exist")))
                    }
                    other => other.map_err(AwsError::from),
                }
            }
        }
    }

    /// Resolves `input` and checks the caller may do `operation` on it.
    async fn authorized(
        &self,
        svc: &EncryptionService,
        input: &str,
        operation: Operation,
        info: &mut RequestInfo,
    ) -> Result<String, AwsError> {
        let key_id = self.resolve(svc, "KeyId", input).await?;
        info.key_id = Some(key_id.clone());
        self.check(operation, &key_id)?;
        Ok(key_id)
    }

    fn check(&self, operation: Operation, key_id: &str) -> Result<(), AwsError> {
        if self.identity.may_on(operation, Some(key_id)) {
            Ok(())
        } else {
            Err(AwsError::access_denied(self.identity.name(), operation.as_str(), Some(&self.settings.key_arn(key_id))))
        }
    }

    async fn describe(
        &self,
        svc: &EncryptionService,
        input: &str,
        operation: Operation,
        info: &mut RequestInfo,
    ) -> Result<KeyMetadata, AwsError> {
        let key_id = self.authorized(svc, input, operation, info).await?;
        Ok(call(self.app, operation, svc.describe_key(DescribeKeyRequest { key_id })).await?.key_metadata)
    }
}

/// Runs one call into the service, timing it for `/metrics`; the error keeps its kind.
async fn call<T>(
    app: &App,
    operation: Operation,
    fut: impl Future<Output = Result<T, KmsError>>,
) -> Result<T, AwsError> {
    let started = Instant::now();
    let result = fut.await;
    app.metrics.observe_backend(operation.as_str(), started.elapsed(), result.as_ref().err().map(KmsError::code));
    result.map_err(AwsError::from)
}
