//! The operations: each AWS target mapped onto the [`EncryptionService`] call of the native
//! API, with the same grants (operations × key patterns).

use std::sync::Arc;
use std::time::Instant;

use kms_core::encryption::service::EncryptionService;
use kms_types::alias::{ALIAS_PREFIX, CreateAliasRequest, ListAliasesRequest};
use kms_types::error::KmsError;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest, DescribeKeyRequest, EncryptRequest,
    GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest, KeyIdRequest, KeyMetadata, KeySpec,
    ListKeysRequest, ReEncryptRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_key_id,
    validate_pending_window,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::arn::KeyRef;
use super::errors::AwsError;
use super::rotation;
use super::settings::AwsSettings;
use super::shapes::{self, MAX_CIPHERTEXT_BYTES, MAX_PLAINTEXT_BYTES, SYMMETRIC_DEFAULT, b64, parse};
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
            "GenerateRandom" => {
                let input: shapes::GenerateRandom = parse(body)?;
                let n = shapes::number_of_bytes(input.number_of_bytes.unwrap_or(32))?;
                let bytes = random(n)?;
                Ok(json!({"Plaintext": b64(&bytes)}))
            }
            "CreateKey" => self.create_key(&svc, parse(body)?, info).await,
            "ListKeys" => self.list_keys(&svc, parse(body)?).await,
            "ListResourceTags" => self.list_resource_tags(&svc, parse(body)?, info).await,
            "GetKeyPolicy" => {
                let input: shapes::GetKeyPolicy = parse(body)?;
                if input.policy_name.as_deref().is_some_and(|n| n != "default") {
                    return Err(AwsError::not_found("the only key policy is named default"));
                }
                self.describe(&svc, &input.key_id, operation, info).await?;
                Ok(json!({"Policy": shapes::default_policy(self.settings), "PolicyName": "default"}))
            }
            "DescribeKey" => {
                let input: shapes::KeyOnly = parse(body)?;
                let m = self.describe(&svc, &input.key_id, operation, info).await?;
                Ok(json!({"KeyMetadata": shapes::key_metadata(self.settings, &m)}))
            }
            "ScheduleKeyDeletion" => {
                let input: shapes::ScheduleKeyDeletion = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let days = validate_pending_window(input.pending_window_in_days)
                    .map_err(|_| AwsError::validation("PendingWindowInDays must be 7 to 30"))?;
                let r = call(
                    self.app,
                    operation,
                    svc.delete_key(DeleteKeyRequest { key_id, pending_window_in_days: Some(days) }),
                )
                .await?;
                Ok(json!({
                    "KeyId": self.settings.key_arn(&r.key_id),
                    "DeletionDate": shapes::epoch(r.deletion_date),
                    "KeyState": shapes::key_state(r.key_state),
                    "PendingWindowInDays": days,
                }))
            }
            "CancelKeyDeletion" => {
                let input: shapes::KeyOnly = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let r = call(self.app, operation, svc.cancel_key_deletion(CancelKeyDeletionRequest { key_id })).await?;
                Ok(json!({"KeyId": self.settings.key_arn(&r.key_id)}))
            }
            "EnableKey" | "DisableKey" | "RotateKeyOnDemand" => {
                let input: shapes::KeyOnly = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
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
            "UpdateKeyDescription" => {
                let input: shapes::UpdateKeyDescription = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let request = UpdateKeyDescriptionRequest { key_id, description: input.description };
                call(self.app, operation, svc.update_key_description(request)).await?;
                Ok(json!({}))
            }
            "TagResource" => {
                let input: shapes::TagResource = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let tags = shapes::tags(input.tags)?;
                reserved_tags(tags.keys())?;
                call(self.app, operation, svc.tag_key(TagKeyRequest { key_id, tags })).await?;
                Ok(json!({}))
            }
            "UntagResource" => {
                let input: shapes::UntagResource = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                reserved_tags(&input.tag_keys)?;
                let request = UntagKeyRequest { key_id, tag_keys: input.tag_keys };
                call(self.app, operation, svc.untag_key(request)).await?;
                Ok(json!({}))
            }
            "CreateAlias" | "UpdateAlias" => {
                let input: shapes::AliasTarget = parse(body)?;
                let alias_name = alias_name(&input.alias_name)?;
                let target_key = self.resolve_key_only("TargetKeyId", &input.target_key_id)?;
                info.key_id = Some(target_key.clone());
                self.check(operation, &target_key)?;
                let request = CreateAliasRequest { alias_name: alias_name.clone(), target_key_id: target_key };
                if target == "UpdateAlias" {
                    // Moving an alias takes the right on the key it leaves, too.
                    let current = self.alias_target(&svc, &alias_name).await?;
                    self.check(operation, &current)?;
                    call(self.app, operation, svc.update_alias(request)).await?;
                } else {
                    call(self.app, operation, svc.create_alias(request)).await?;
                }
                Ok(json!({}))
            }
            "DeleteAlias" => {
                let input: shapes::AliasOnly = parse(body)?;
                let alias_name = alias_name(&input.alias_name)?;
                let current = self.alias_target(&svc, &alias_name).await?;
                info.key_id = Some(current.clone());
                self.check(operation, &current)?;
                call(self.app, operation, svc.delete_alias(&alias_name)).await?;
                Ok(json!({}))
            }
            "ListAliases" => self.list_aliases(&svc, parse(body)?, info).await,
            "EnableKeyRotation" => {
                let input: shapes::EnableKeyRotation = parse(body)?;
                let days = input.rotation_period_in_days.unwrap_or(rotation::DEFAULT_PERIOD_DAYS);
                if !rotation::PERIOD_DAYS.contains(&days) {
                    return Err(AwsError::validation(format!("RotationPeriodInDays must be 90 to 2560, got {days}")));
                }
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let tags = [(rotation::ROTATION_TAG.to_owned(), days.to_string())].into();
                call(self.app, operation, svc.tag_key(TagKeyRequest { key_id, tags })).await?;
                Ok(json!({}))
            }
            "DisableKeyRotation" => {
                let input: shapes::KeyOnly = parse(body)?;
                let key_id = self.authorized(&svc, &input.key_id, operation, info).await?;
                let request = UntagKeyRequest { key_id, tag_keys: vec![rotation::ROTATION_TAG.to_owned()] };
                call(self.app, operation, svc.untag_key(request)).await?;
                Ok(json!({}))
            }
            "GetKeyRotationStatus" => {
                let input: shapes::KeyOnly = parse(body)?;
                let m = self.describe(&svc, &input.key_id, operation, info).await?;
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
            _ => Err(AwsError::unsupported(target)),
        }
    }

    /// What an alias points at now (`NotFoundException` if it does not exist).
    async fn alias_target(&self, svc: &EncryptionService, alias_name: &str) -> Result<String, AwsError> {
        call(self.app, Operation::ManageAliases, svc.resolve_key_ref(alias_name)).await
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

    async fn list_aliases(
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
                let alias = alias_name(&format!("{ALIAS_PREFIX}{name}"))?;
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

    /// The key a ciphertext names (from its header, no cryptography), authorized for
    /// `operation` before anything is opened; a `KeyId` naming another key is refused.
    async fn source_key(
        &self,
        svc: &EncryptionService,
        blob: &[u8],
        claimed: Option<&str>,
        operation: Operation,
        info: &mut RequestInfo,
    ) -> Result<String, AwsError> {
        let named = svc
            .ciphertext_key_id(blob)
            .await
            .map_err(AwsError::from)?
            .ok_or_else(|| AwsError::from(KmsError::crypto()))?;
        info.key_id = Some(named.clone());
        self.check(operation, &named)?;
        if let Some(claimed) = claimed {
            let claimed = self.resolve(svc, "KeyId", claimed).await?;
            if claimed != named {
                return Err(AwsError::client(
                    "IncorrectKeyException",
                    "the key ID in the request does not identify the key that encrypted the ciphertext",
                ));
            }
        }
        Ok(named)
    }

    async fn encrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::Encrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("EncryptionAlgorithm", input.encryption_algorithm.as_deref())?;
        let key_id = self.authorized(svc, &input.key_id, Operation::Encrypt, info).await?;
        let plaintext = shapes::blob("Plaintext", input.plaintext.expose_secret(), MAX_PLAINTEXT_BYTES)?;
        let request = EncryptRequest {
            key_id,
            plaintext: SecretBytes::new(plaintext.to_vec()),
            encryption_context: input.encryption_context,
        };
        let r = call(self.app, Operation::Encrypt, svc.encrypt(request)).await?;
        Ok(json!({
            "CiphertextBlob": b64(&r.ciphertext_blob),
            "KeyId": self.settings.key_arn(&r.key_id),
            "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    async fn decrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::Decrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("EncryptionAlgorithm", input.encryption_algorithm.as_deref())?;
        let blob = shapes::blob("CiphertextBlob", &input.ciphertext_blob, MAX_CIPHERTEXT_BYTES)?;
        let op = Operation::Decrypt;
        let named = self.source_key(svc, &blob, input.key_id.as_deref(), op, info).await?;
        let request = DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            encryption_context: input.encryption_context,
            key_id: Some(named),
        };
        let r = call(self.app, op, svc.decrypt(request)).await?;
        // Defence in depth, as in the native API: the key that opened it is authorized too.
        self.check(op, &r.key_id)?;
        let plaintext = Zeroizing::new(b64(r.plaintext.expose_secret()));
        Ok(json!({
            "KeyId": self.settings.key_arn(&r.key_id),
            "Plaintext": plaintext.as_str(),
            "EncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    async fn re_encrypt(
        &self,
        svc: &EncryptionService,
        input: shapes::ReEncrypt,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        shapes::symmetric_only("SourceEncryptionAlgorithm", input.source_encryption_algorithm.as_deref())?;
        shapes::symmetric_only("DestinationEncryptionAlgorithm", input.destination_encryption_algorithm.as_deref())?;
        let blob = shapes::blob("CiphertextBlob", &input.ciphertext_blob, MAX_CIPHERTEXT_BYTES)?;
        let op = Operation::ReEncrypt;
        self.source_key(svc, &blob, input.source_key_id.as_deref(), op, info).await?;
        let destination = self.resolve(svc, "DestinationKeyId", &input.destination_key_id).await?;
        self.check(op, &destination)?;
        let request = ReEncryptRequest {
            ciphertext_blob: blob.to_vec(),
            source_encryption_context: input.source_encryption_context,
            destination_key_id: Some(destination),
            destination_encryption_context: Some(input.destination_encryption_context),
        };
        let r = call(self.app, op, svc.re_encrypt(request)).await?;
        Ok(json!({
            "CiphertextBlob": b64(&r.ciphertext_blob),
            "SourceKeyId": self.settings.key_arn(&r.source_key_id),
            "KeyId": self.settings.key_arn(&r.key_id),
            "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
            "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
        }))
    }

    /// `GenerateDataKey[WithoutPlaintext]`. `KeySpec` and a `NumberOfBytes` of 16 or 32 are
    /// kms data keys; any other `NumberOfBytes` (1..=1024) is random bytes from the system
    /// generator encrypted under the key (the same ciphertext as `Encrypt`).
    async fn generate_data_key(
        &self,
        svc: &EncryptionService,
        input: shapes::GenerateDataKey,
        with_plaintext: bool,
        info: &mut RequestInfo,
    ) -> Result<Value, AwsError> {
        let op = if with_plaintext { Operation::GenerateDataKey } else { Operation::GenerateDataKeyWithoutPlaintext };
        let spec = match (input.key_spec.as_deref(), input.number_of_bytes) {
            (Some(_), Some(_)) => return Err(AwsError::validation("give KeySpec or NumberOfBytes, not both")),
            (None, None) => return Err(AwsError::validation("KeySpec or NumberOfBytes is required")),
            (Some("AES_256"), None) | (None, Some(32)) => Some(KeySpec::Aes256),
            (Some("AES_128"), None) | (None, Some(16)) => Some(KeySpec::Aes128),
            (Some(other), None) => {
                return Err(AwsError::validation(format!("KeySpec {other} is not AES_256 or AES_128")));
            }
            (None, Some(n)) => {
                shapes::number_of_bytes(n)?;
                None
            }
        };
        let key_id = self.authorized(svc, &input.key_id, op, info).await?;
        let context = input.encryption_context;
        let (key_id, ciphertext, plaintext) = match (spec, with_plaintext) {
            (Some(key_spec), true) => {
                let request = GenerateDataKeyRequest { key_id, key_spec, encryption_context: context };
                let r = call(self.app, op, svc.generate_data_key(request)).await?;
                (r.key_id, r.ciphertext_blob, Some(r.plaintext_key))
            }
            (Some(key_spec), false) => {
                let request = GenerateDataKeyWithoutPlaintextRequest { key_id, key_spec, encryption_context: context };
                let r = call(self.app, op, svc.generate_data_key_without_plaintext(request)).await?;
                (r.key_id, r.ciphertext_blob, None)
            }
            (None, _) => {
                let n = input.number_of_bytes.unwrap_or_default() as usize;
                let bytes = random(n)?;
                let request =
                    EncryptRequest { key_id, plaintext: SecretBytes::new(bytes.to_vec()), encryption_context: context };
                let r = call(self.app, op, svc.encrypt(request)).await?;
                (r.key_id, r.ciphertext_blob, with_plaintext.then(|| SecretBytes::new(bytes.to_vec())))
            }
        };
        let mut out = json!({"CiphertextBlob": b64(&ciphertext), "KeyId": self.settings.key_arn(&key_id)});
        if let Some(plaintext) = plaintext {
            out["Plaintext"] = json!(b64(plaintext.expose_secret()));
        }
        Ok(out)
    }

    async fn create_key(
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
        only("Origin", input.origin.as_deref(), "AWS_KMS")?;
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
            ..CreateKeyRequest::default()
        };
        let r = call(self.app, Operation::CreateKey, svc.create_key(request)).await?;
        info.key_id = Some(r.key_id.clone());
        Ok(json!({"KeyMetadata": shapes::key_metadata(self.settings, &r.key_metadata)}))
    }

    async fn list_keys(&self, svc: &EncryptionService, input: shapes::Paging) -> Result<Value, AwsError> {
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

    async fn list_resource_tags(
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
}

/// Runs one call into the service, timing it for `/metrics`; the error keeps its kind.
/// Refuses tags only the server sets (the rotation period).
fn reserved_tags<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), AwsError> {
    match keys.into_iter().find(|k| k.starts_with(rotation::RESERVED_TAG_PREFIX)) {
        Some(k) => Err(AwsError::client("TagException", format!("tag keys starting kms: are reserved ({k})"))),
        None => Ok(()),
    }
}

/// An `AliasName` input, checked (`ValidationException` naming the rule).
fn alias_name(input: &str) -> Result<String, AwsError> {
    kms_types::alias::validate_alias_name("AliasName", input).map_err(|e| AwsError::validation(e.to_string()))?;
    Ok(input.to_owned())
}

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

fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    kms_crypto::rand::fill(&mut bytes).map_err(|_| AwsError::internal("the system random generator failed"))?;
    Ok(bytes)
}
