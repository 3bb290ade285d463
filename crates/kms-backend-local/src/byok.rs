//! Import of key material (BYOK, `docs/byok.md`) into external keys: the material becomes a
//! version of the key, sealed in its record like a generated one; the record keeps each
//! version's fingerprint (`ImportedMeta`) so that only the same material comes back after it
//! was deleted or expired.

use std::sync::Arc;

use kms_types::byok::{DeleteImportedKeyMaterialRequest, ImportMaterial, ImportRefusal};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::types::{KeyOrigin, KeyState};
use time::OffsetDateTime;

use crate::backend::LocalBackend;
use crate::record::{ImportedMeta, KeyRecord, KeyVersion, StoredState};

/// Lowercase hex of a fingerprint, as the record stores it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `current`, checked to be an external key in a state that allows `operation`, with its
/// expired material (if any) already dropped.
fn external(current: &KeyRecord, operation: Operation, now: OffsetDateTime) -> Result<KeyRecord> {
    if current.meta.origin != KeyOrigin::External {
        return Err(KmsError::import_refused(&current.key_id, ImportRefusal::NotExternalKey));
    }
    let state = current.state_at(now);
    operation.check_key_state(&current.key_id, state)?;
    let mut next = current.clone();
    // A key migrated with its material (`kms migrate`) has no fingerprints yet: they are
    // taken from the material it holds (versions 1..=n).
    let imported = next.meta.imported.get_or_insert_with(|| ImportedMeta {
        fingerprints: current
            .versions
            .iter()
            .map(|v| hex(&kms_crypto::wrapping::material_fingerprint(&current.key_id, v.material())))
            .collect(),
        valid_to: None,
    });
    if state == KeyState::PendingImport && imported.valid_to.is_some() {
        drop_material(&mut next);
    }
    Ok(next)
}

/// Forgets every version's material and the expiry; the key is `PendingImport` (a key
/// pending deletion stays so).
fn drop_material(record: &mut KeyRecord) {
    record.versions.clear();
    if let Some(imported) = &mut record.meta.imported {
        imported.valid_to = None;
    }
    if matches!(record.meta.state, StoredState::Enabled | StoredState::Disabled) {
        record.meta.state = StoredState::PendingImport;
    }
}

impl LocalBackend {
    pub(crate) async fn import_material(&self, request: ImportMaterial) -> Result<Arc<KeyRecord>> {
        let ImportMaterial { key_id, material, fingerprint, valid_to, new_version } = request;
        self.mutate(&key_id, Operation::ImportKeyMaterial.as_str(), move |current, now| {
            let mut next = external(current, Operation::ImportKeyMaterial, now)?;
            let refused = |reason| Err(KmsError::import_refused(&current.key_id, reason));
            let fingerprint = hex(&fingerprint);
            let imported = next.meta.imported.as_mut().expect("set by external()");
            let known = imported.fingerprints.iter().position(|f| *f == fingerprint);
            let number = match (new_version, known) {
                (true, _) if imported.fingerprints.is_empty() || next.meta.state == StoredState::PendingImport => {
                    return refused(ImportRefusal::NoMaterialYet);
                }
                (true, Some(_)) => return refused(ImportRefusal::IncorrectKeyMaterial),
                (false, None) if !imported.fingerprints.is_empty() => {
                    return refused(ImportRefusal::IncorrectKeyMaterial);
                }
                (_, None) => {
                    imported.fingerprints.push(fingerprint);
                    if new_version {
                        next.meta.rotation_date = Some(now);
                    }
                    imported.fingerprints.len()
                }
                (false, Some(index)) => index + 1,
            };
            imported.valid_to = valid_to;
            let number = u32::try_from(number).map_err(|_| KmsError::backend("key version overflow"))?;
            let version = Arc::new(KeyVersion::new(number, now, material.expose_secret())?);
            match next.versions.binary_search_by_key(&number, |v| v.version) {
                Ok(at) => next.versions[at] = version,
                Err(at) => next.versions.insert(at, version),
            }
            if next.meta.state == StoredState::PendingImport && next.current().is_some() {
                next.meta.state = StoredState::Enabled;
            }
            Ok(Some(next))
        })
        .await
    }

    pub(crate) async fn delete_material(&self, request: DeleteImportedKeyMaterialRequest) -> Result<Arc<KeyRecord>> {
        self.mutate(&request.key_id, Operation::DeleteImportedKeyMaterial.as_str(), move |current, now| {
            let mut next = external(current, Operation::DeleteImportedKeyMaterial, now)?;
            drop_material(&mut next);
            Ok(Some(next))
        })
        .await
    }
}
