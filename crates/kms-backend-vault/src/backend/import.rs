//! Keys with material brought from elsewhere (`kms migrate rustfs-local`): the material goes
//! to Transit only through Transit's own import, wrapped under the mount's RSA-4096 wrapping
//! key ([`kms_crypto::transit_wrap`]), never through a plaintext path. Claim, import, check,
//! mark provisioned: the steps of a create, with Transit's import in place of its create.

use kms_crypto::transit_wrap::{HASH_FUNCTION, TransitWrappingKey};
use kms_types::import::ImportKeyRequest;

use super::*;

/// The operation name of an import in notes and records.
const IMPORT_KEY: &str = "import_key";

impl Inner {
    /// Creates `request.key_id` with the given material as its Transit version 1, then its
    /// record with the given state, description, tags and dates. Never overwrites and never
    /// adopts: an existing record or Transit key of that name is [`KmsError::KeyAlreadyExists`].
    pub(super) async fn import(&self, request: ImportKeyRequest) -> Result<KeyMetadataResponse> {
        request.validate()?;
        if request.key_usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::invalid_request("key_usage", "only encrypt_decrypt keys are supported"));
        }
        let key_id = request.key_id.clone();
        let mut record = KeyRecord {
            format: RECORD_FORMAT,
            key_id: key_id.clone(),
            key_state: request.key_state,
            key_usage: request.key_usage,
            key_spec: KeySpec::Aes256,
            // As on the local backend: kms did not generate this material.
            origin: KeyOrigin::External,
            description: request.description.clone(),
            tags: request.tags.clone(),
            policy: None,
            // Kept to the nanosecond, as given: `kms migrate` recognises its own earlier import by it.
            creation_date: request.creation_date,
            deletion_date: request.deletion_date,
            rotation_date: None,
            current_version: 1,
            provisioned: false,
            adopted: false,
            material_fingerprints: Vec::new(),
            valid_to: None,
        };
        // 1. Claim the id (create-only). A claim of ours left by an attempt that failed
        //    retryably is carried on; anyone else's record is an existing key.
        let (claimed, fresh) = match self.write(&record, 0, IMPORT_KEY).await {
            Ok(version) => (version, true),
            Err(e) if e.says("check-and-set") => match self.resume_claim(&key_id, IMPORT_KEY).await? {
                Some((existing, _)) if existing.provisioned => {
                    return Ok(KeyMetadataResponse { key_metadata: existing.metadata() });
                }
                Some((existing, version)) => {
                    record = existing;
                    (version, false)
                }
                None => return Err(KmsError::KeyAlreadyExists { key_id }),
            },
            Err(e) => return Err(e.into_kms("create key metadata")),
        };
        let guard = InFlight::new(self, (key_id.clone(), IMPORT_KEY), record.clone());
        let result = self.provision_imported(record, claimed, fresh, request.material.expose_secret()).await;
        if !result.as_ref().is_err_and(KmsError::is_retryable) {
            guard.settle();
        }
        result
    }

    /// Steps 2-4 of an import, after the claim (`fresh`: this attempt made the claim).
    async fn provision_imported(
        &self,
        mut record: KeyRecord,
        claimed: u64,
        fresh: bool,
        material: &[u8],
    ) -> Result<KeyMetadataResponse> {
        let key_id = record.key_id.clone();
        // 2. Import. Transit's import refuses a name that exists (it is no upsert), so a key
        //    someone else made under this name is never touched. A resumed claim may find the
        //    key its own earlier attempt imported before the reply was lost.
        match self.transit_import(&key_id, material, true).await {
            Ok(()) => {}
            Err(e) if e.says("cannot be used with an existing key") && !fresh => {}
            Err(e) if e.says("cannot be used with an existing key") => {
                self.release_claim(&key_id).await;
                return Err(KmsError::KeyAlreadyExists { key_id });
            }
            Err(e) => {
                let e = e.into_kms("import the key into Transit");
                if !e.is_retryable() {
                    self.release_claim(&key_id).await;
                }
                return Err(e);
            }
        }
        // 3. Read it back: kms's settings, imported, version 1 (the resumed case included).
        match self.check_imported_transit_key(&key_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key_id = %key_id, "a Transit key of this name exists with other settings; not adopted");
                self.release_claim(&key_id).await;
                return Err(KmsError::KeyAlreadyExists { key_id });
            }
            Err(e) => return Err(e),
        }
        // 4. Mark provisioned.
        record.provisioned = true;
        if let Err(e) = self.write(&record, claimed, IMPORT_KEY).await {
            if e.says("check-and-set") && self.landed_earlier(&record, IMPORT_KEY) {
                return Ok(KeyMetadataResponse { key_metadata: record.metadata() });
            }
            return Err(e.into_kms("write key metadata"));
        }
        tracing::info!(key_id = %key_id, "key imported");
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    /// The mount's wrapping key (`GET transit/wrapping_key`; Transit makes it on first read).
    pub(super) async fn transit_wrapping_key(&self) -> std::result::Result<TransitWrappingKey, CallError> {
        let path = format!("{}/wrapping_key", self.transit);
        let reply = self.call(Route::Active, Method::Get, &path, None).await?;
        let pem = reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("public_key")?.as_str())
            .ok_or_else(|| CallError::Decode("wrapping_key reply without public_key".into()))?;
        TransitWrappingKey::from_pem(pem).map_err(|_| CallError::Decode("wrapping_key is not an RSA-4096 key".into()))
    }

    /// `POST transit/keys/<key_id>/import` of 32 bytes of material, as `aes256-gcm96`, not
    /// exportable, no plaintext backup, not derived; `allow_rotation` lets kms rotate it
    /// (Transit refuses to rotate an imported key otherwise).
    pub(super) async fn transit_import(
        &self,
        key_id: &str,
        material: &[u8],
        allow_rotation: bool,
    ) -> std::result::Result<(), CallError> {
        let ciphertext = self.wrap_for_transit(material).await?;
        let path = format!("{}/keys/{key_id}/import", self.transit);
        let body = json!({
            "type": "aes256-gcm96",
            "ciphertext": ciphertext,
            "hash_function": HASH_FUNCTION,
            "exportable": false,
            "allow_plaintext_backup": false,
            "derived": false,
            "allow_rotation": allow_rotation,
        });
        self.call(Route::Active, Method::Post, &path, Some(body.to_string().into_bytes())).await.map(drop)
    }

    /// `POST transit/keys/<key_id>/import_version`: `material` as the imported key's next version.
    pub(super) async fn transit_import_version(
        &self,
        key_id: &str,
        material: &[u8],
    ) -> std::result::Result<(), CallError> {
        let ciphertext = self.wrap_for_transit(material).await?;
        let path = format!("{}/keys/{key_id}/import_version", self.transit);
        let body = json!({ "ciphertext": ciphertext, "hash_function": HASH_FUNCTION });
        self.call(Route::Active, Method::Post, &path, Some(body.to_string().into_bytes())).await.map(drop)
    }

    async fn wrap_for_transit(&self, material: &[u8]) -> std::result::Result<String, CallError> {
        let wrapping_key = self.transit_wrapping_key().await?;
        wrapping_key.wrap(material).map_err(|_| CallError::Decode("the material cannot be wrapped for Transit".into()))
    }

    /// Whether the Transit key `key_id` is one an import of ours made: `aes256-gcm96`, not
    /// exportable, no plaintext backup, not derived, imported, one version.
    pub(super) async fn check_imported_transit_key(&self, key_id: &str) -> Result<bool> {
        let path = format!("{}/keys/{key_id}", self.transit);
        let reply =
            self.call(Route::Active, Method::Get, &path, None).await.map_err(|e| e.into_kms("read the Transit key"))?;
        let data = reply.as_ref().and_then(|v| v.get("data")).cloned().unwrap_or(Value::Null);
        Ok(data.get("type").and_then(Value::as_str) == Some("aes256-gcm96")
            && data.get("exportable").and_then(Value::as_bool) == Some(false)
            && data.get("allow_plaintext_backup").and_then(Value::as_bool) == Some(false)
            && data.get("derived").and_then(Value::as_bool) == Some(false)
            && data.get("imported_key").and_then(Value::as_bool) == Some(true)
            && data.get("latest_version").and_then(Value::as_u64) == Some(1))
    }
}
