//! Bring your own key on Transit (`docs/byok.md`, Vault section): a key created with origin
//! `external` is a record in `PendingImport` and no Transit key; its material reaches Transit
//! only through Transit's import, wrapped under the mount's wrapping key
//! ([`kms_crypto::transit_wrap`]): `keys/<id>/import` for the first material (or the same
//! material again after it was deleted or expired), `keys/<id>/import_version` for a new
//! version. The record keeps each version's material fingerprint, so only the same material
//! ever comes back. Deleting the material deletes the Transit key (every version).
//!
//! A deleted key's versions come back one by one: the re-import restores version 1, and each
//! later version is restored by importing its own material again with `new_version`, in order
//! (Transit numbers versions itself). Imported keys cannot be rotated inside Transit
//! (`allow_rotation` off): new material arrives as a new version.

use kms_crypto::cipher::{Aes256GcmCipher, ObjectCipher as _};
use kms_types::byok::{DeleteImportedKeyMaterialRequest, ImportMaterial, ImportRefusal};

use super::*;

const IMPORT_MATERIAL: &str = "import_key_material";
const DELETE_MATERIAL: &str = "delete_imported_key_material";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Inner {
    /// `create_key` with origin `external`: a `PendingImport` record, no Transit key. A Transit
    /// key of that name made by someone else refuses the id, as for any create.
    pub(super) async fn create_external(&self, key_id: String, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let path = format!("{}/keys/{key_id}", self.transit);
        match self.call(Route::Active, Method::Get, &path, None).await {
            Ok(_) => return Err(KmsError::KeyAlreadyExists { key_id }),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e.into_kms("read the Transit key")),
        }
        let record = KeyRecord {
            format: RECORD_FORMAT,
            key_id: key_id.clone(),
            key_state: KeyState::PendingImport,
            key_usage: request.key_usage,
            key_spec: KeySpec::Aes256,
            origin: KeyOrigin::External,
            description: request.description,
            tags: request.tags,
            policy: request.policy,
            creation_date: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            deletion_date: None,
            rotation_date: None,
            current_version: 1,
            // No Transit key to wait for: the state table keeps every Transit call away
            // until material is imported.
            provisioned: true,
            adopted: false,
            material_fingerprints: Vec::new(),
            valid_to: None,
        };
        match self.write(&record, 0, "create_key").await {
            Ok(_) => {}
            Err(e) if e.says("check-and-set") => {
                // Our own write whose reply was lost reads back as exactly this record.
                return match self.load_fresh(&key_id).await? {
                    Loaded::Record(now, _) if self.landed_earlier(&now, "create_key") => {
                        Ok(CreateKeyResponse { key_id, key_metadata: now.metadata() })
                    }
                    _ => Err(KmsError::KeyAlreadyExists { key_id }),
                };
            }
            Err(e) => return Err(e.into_kms("create key metadata")),
        }
        tracing::info!(key_id = %key_id, "external key created (pending import)");
        Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() })
    }

    /// Imports material into an external key (see the module docs for versions).
    pub(super) async fn import_material(&self, request: ImportMaterial) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        if request.material.len() != kms_types::byok::IMPORT_MATERIAL_LEN {
            return Err(KmsError::invalid_request("encrypted_key_material", "the material is 32 bytes (AES-256)"));
        }
        let (record, _) = match self.load_fresh(&key_id).await? {
            Loaded::Record(record, version) => (record, version),
            Loaded::Unreadable { .. } => {
                return Err(KmsError::invalid_key_state(&key_id, KeyState::Unavailable, IMPORT_MATERIAL));
            }
        };
        if record.origin != KeyOrigin::External || record.material_fingerprints.is_empty() && record.has_material() {
            // Made by kms, or imported by `kms migrate` (no fingerprints, material present).
            return Err(KmsError::import_refused(&key_id, ImportRefusal::NotExternalKey));
        }
        if record.material_expired(OffsetDateTime::now_utc()) {
            self.expire_material(&record, 0).await;
        }
        let record = match self.load_fresh(&key_id).await? {
            Loaded::Record(record, _) => record,
            Loaded::Unreadable { .. } => {
                return Err(KmsError::invalid_key_state(&key_id, KeyState::Unavailable, IMPORT_MATERIAL));
            }
        };
        Operation::ImportKeyMaterial.check_key_state(&key_id, record.effective_state())?;
        let fingerprint = hex(&request.fingerprint);
        let material = request.material.expose_secret();
        let has_material = record.has_material();
        if request.new_version {
            if !has_material {
                return Err(KmsError::import_refused(&key_id, ImportRefusal::NoMaterialYet));
            }
            let latest = self.transit_latest_version(&key_id).await?;
            let next = usize::try_from(latest).unwrap_or(usize::MAX).saturating_add(1);
            let fits = match record.material_fingerprints.get(next - 1) {
                // A version the key had before its material was deleted: only its own material.
                Some(known) => *known == fingerprint,
                None => !record.material_fingerprints.contains(&fingerprint),
            };
            if !fits {
                return Err(KmsError::import_refused(&key_id, ImportRefusal::IncorrectKeyMaterial));
            }
            self.transit_import_version(&key_id, material)
                .await
                .map_err(|e| self.map_key_error(&key_id, e, "import a new version into Transit"))?;
            let latest = self.transit_latest_version(&key_id).await?;
            let valid_to = request.valid_to;
            let record = self
                .update(&key_id, IMPORT_MATERIAL, |r| {
                    let index = usize::try_from(latest).unwrap_or(usize::MAX) - 1;
                    if r.material_fingerprints.len() == index {
                        r.material_fingerprints.push(fingerprint.clone());
                    }
                    r.current_version = latest;
                    r.rotation_date = Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(r.creation_date));
                    r.valid_to = valid_to;
                    Ok(())
                })
                .await?;
            return Ok(KeyMetadataResponse { key_metadata: record.metadata() });
        }
        if record.material_fingerprints.first().is_some_and(|first| *first != fingerprint) {
            return Err(KmsError::import_refused(&key_id, ImportRefusal::IncorrectKeyMaterial));
        }
        if !has_material {
            match self.transit_import(&key_id, material, false).await {
                Ok(()) => {}
                // A Transit key of that name exists: ours from an attempt whose reply was lost,
                // or left by a deletion that stopped half-way, if it holds this very material.
                Err(e) if e.says("cannot be used with an existing key") => {
                    if !self.transit_holds(&key_id, material).await? {
                        return Err(KmsError::backend(format!(
                            "vault: a Transit key named {key_id} exists with other material; not adopted"
                        )));
                    }
                }
                Err(e) => return Err(e.into_kms("import the key material into Transit")),
            }
        }
        let latest = self.transit_latest_version(&key_id).await?;
        let valid_to = request.valid_to;
        let record = self
            .update(&key_id, IMPORT_MATERIAL, |r| {
                if r.material_fingerprints.is_empty() {
                    r.material_fingerprints.push(fingerprint.clone());
                }
                if r.key_state == KeyState::PendingImport {
                    r.key_state = KeyState::Enabled;
                }
                r.current_version = latest;
                r.valid_to = valid_to;
                Ok(())
            })
            .await?;
        tracing::info!(key_id = %key_id, "key material imported");
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    /// Deletes an external key's material: the record first (kms stops using the key at
    /// once), then the Transit key with every version. Fingerprints are kept.
    pub(super) async fn delete_material(
        &self,
        request: DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id;
        let record = self
            .update(&key_id, DELETE_MATERIAL, |r| {
                if r.origin != KeyOrigin::External || r.material_fingerprints.is_empty() && r.has_material() {
                    return Err(KmsError::import_refused(&r.key_id, ImportRefusal::NotExternalKey));
                }
                Operation::DeleteImportedKeyMaterial.check_key_state(&r.key_id, r.effective_state())?;
                r.key_state = KeyState::PendingImport;
                r.valid_to = None;
                Ok(())
            })
            .await?;
        self.delete_transit_key(&key_id).await?;
        tracing::info!(key_id = %key_id, "imported key material deleted");
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    /// After `valid_to`: the record goes back to `PendingImport` and the Transit key is
    /// deleted. Best effort (the state already reads `PendingImport`); retried when next touched.
    pub(super) async fn expire_material(&self, record: &KeyRecord, _version: u64) {
        let outcome = async {
            self.update(&record.key_id, "expire_key_material", |r| {
                if r.material_expired(OffsetDateTime::now_utc()) {
                    r.key_state = KeyState::PendingImport;
                    r.valid_to = None;
                }
                Ok(())
            })
            .await?;
            self.delete_transit_key(&record.key_id).await
        }
        .await;
        match outcome {
            Ok(()) => tracing::info!(key_id = %record.key_id, "imported key material expired and was deleted"),
            Err(e) => tracing::warn!(key_id = %record.key_id, error = %e, "could not delete expired key material yet"),
        }
    }

    /// Allows deletion of the Transit key and deletes it (absent: done).
    async fn delete_transit_key(&self, key_id: &str) -> Result<()> {
        let config = format!("{}/keys/{key_id}/config", self.transit);
        let body = json!({ "deletion_allowed": true }).to_string().into_bytes();
        if let Err(e) = self.call(Route::Active, Method::Post, &config, Some(body)).await
            && !(e.status() == Some(404) || e.status() == Some(400) && e.says("not found"))
        {
            return Err(e.into_kms("allow deletion of the Transit key"));
        }
        let key = format!("{}/keys/{key_id}", self.transit);
        match self.call(Route::Active, Method::Delete, &key, None).await {
            Err(e) if e.status() != Some(404) => Err(e.into_kms("delete the Transit key")),
            _ => {
                self.cache_drop(key_id);
                Ok(())
            }
        }
    }

    /// Whether Transit's key `key_id` holds `material` as its version 1: Transit opens a
    /// ciphertext sealed here with that material (AES-256-GCM, random nonce, no associated data,
    /// Transit's `nonce ‖ ciphertext ‖ tag` layout).
    async fn transit_holds(&self, key_id: &str, material: &[u8]) -> Result<bool> {
        let cipher = Aes256GcmCipher::new(material)?;
        let mut nonce = [0u8; 12];
        kms_crypto::rand::fill(&mut nonce)?;
        let probe = *b"kms material probe";
        let mut sealed = probe.to_vec();
        let tag = cipher.seal_in_place(&nonce, &[], &mut sealed)?;
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&sealed);
        raw.extend_from_slice(&tag);
        let path = format!("{}/decrypt/{key_id}", self.transit);
        let body = json!({ "ciphertext": format!("vault:v1:{}", B64.encode(raw)) }).to_string().into_bytes();
        match self.call(Route::Active, Method::Post, &path, Some(body)).await {
            Ok(reply) => Ok(reply
                .as_ref()
                .and_then(|v| v.get("data")?.get("plaintext")?.as_str())
                .is_some_and(|p| B64.decode(p).is_ok_and(|p| p == probe))),
            Err(e) if e.is_auth_failure() || e.status() == Some(400) => Ok(false),
            Err(e) => Err(e.into_kms("check the Transit key's material")),
        }
    }
}
