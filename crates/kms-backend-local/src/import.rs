//! Import of a key with its material from another KMS (`kms migrate rustfs-local`): the key is
//! stored like a created one, with the given id, state, metadata and creation date, its
//! material as version 1 and origin `external` (kms did not generate it).

use std::sync::Arc;

use kms_types::error::Result;
use kms_types::import::ImportKeyRequest;
use kms_types::types::{KeyOrigin, KeyState};

use crate::backend::{LocalBackend, MASTER_KEY_SPEC};
use crate::record::{KeyRecord, KeyVersion, StoredMeta, StoredState};

impl LocalBackend {
    /// Stores `request` as a new key; an existing key id is `KeyAlreadyExists`, never overwritten.
    pub(crate) async fn import(&self, request: ImportKeyRequest) -> Result<Arc<KeyRecord>> {
        request.validate()?;
        self.check_open()?;
        let state = match request.key_state {
            KeyState::Disabled => StoredState::Disabled,
            KeyState::PendingDeletion => StoredState::PendingDeletion,
            _ => StoredState::Enabled,
        };
        let version = KeyVersion::new(1, request.creation_date, request.material.expose_secret())?;
        let meta = StoredMeta {
            state,
            imported: None,
            usage: request.key_usage,
            spec: MASTER_KEY_SPEC,
            origin: KeyOrigin::External,
            description: request.description,
            tags: request.tags,
            policy: None,
            creation_date: request.creation_date,
            deletion_date: request.deletion_date,
            rotation_date: None,
        };
        self.insert(KeyRecord { key_id: request.key_id, meta, versions: vec![Arc::new(version)] }).await
    }
}
