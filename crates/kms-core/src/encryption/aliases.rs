//! Aliases wherever a key id is accepted: every request of [`EncryptionService`] names its keys
//! through [`KeyRefs`], and an `alias/...` there is resolved by the backend before the call.
//!
//! [`EncryptionService`]: super::service::EncryptionService

use kms_types::alias::is_alias;
use kms_types::error::Result;
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest, DescribeKeyRequest, EncryptRequest,
    GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest, KeyIdRequest, ListKeysRequest, ReEncryptRequest,
    TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};

use crate::manager::KmsManager;

/// The key references a request carries.
pub trait KeyRefs {
    /// Each key id field, to be replaced by the key an alias resolves to.
    fn key_refs(&mut self) -> Vec<&mut String>;
}

macro_rules! key_id_field {
    ($($request:ty),*) => {
        $(impl KeyRefs for $request {
            fn key_refs(&mut self) -> Vec<&mut String> {
                vec![&mut self.key_id]
            }
        })*
    };
}

key_id_field!(
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateDataKeyWithoutPlaintextRequest,
    DescribeKeyRequest,
    DeleteKeyRequest,
    CancelKeyDeletionRequest,
    KeyIdRequest,
    UpdateKeyDescriptionRequest,
    TagKeyRequest,
    UntagKeyRequest,
    kms_types::byok::GetParametersForImportRequest,
    kms_types::byok::DeleteImportedKeyMaterialRequest
);

impl KeyRefs for DecryptRequest {
    fn key_refs(&mut self) -> Vec<&mut String> {
        self.key_id.iter_mut().collect()
    }
}

impl KeyRefs for ReEncryptRequest {
    fn key_refs(&mut self) -> Vec<&mut String> {
        self.destination_key_id.iter_mut().collect()
    }
}

/// A new key has a name, not a reference; listing names no key.
impl KeyRefs for CreateKeyRequest {
    fn key_refs(&mut self) -> Vec<&mut String> {
        Vec::new()
    }
}

impl KeyRefs for ListKeysRequest {
    fn key_refs(&mut self) -> Vec<&mut String> {
        Vec::new()
    }
}

/// Replaces every alias in `request` by the key id it points at (`KeyNotFound` naming the
/// alias if there is none; `Unsupported` if the backend has no aliases).
pub(crate) async fn resolve<R: KeyRefs>(manager: &KmsManager, request: &mut R) -> Result<()> {
    for key_ref in request.key_refs() {
        if is_alias(key_ref) {
            *key_ref = manager.backend().resolve_alias(key_ref).await?;
        }
    }
    Ok(())
}
