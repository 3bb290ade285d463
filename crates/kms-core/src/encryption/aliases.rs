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

/// The key reference a request carries (every request names at most one key).
pub trait KeyRefs {
    /// The key id field, to be replaced by the key an alias resolves to; `None` when the
    /// request names no key.
    fn key_ref(&mut self) -> Option<&mut String>;
}

macro_rules! key_id_field {
    ($($request:ty),*) => {
        $(impl KeyRefs for $request {
            fn key_ref(&mut self) -> Option<&mut String> {
                Some(&mut self.key_id)
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
    fn key_ref(&mut self) -> Option<&mut String> {
        self.key_id.as_mut()
    }
}

impl KeyRefs for ReEncryptRequest {
    fn key_ref(&mut self) -> Option<&mut String> {
        self.destination_key_id.as_mut()
    }
}

/// A new key has a name, not a reference; listing names no key.
impl KeyRefs for CreateKeyRequest {
    fn key_ref(&mut self) -> Option<&mut String> {
        None
    }
}

impl KeyRefs for ListKeysRequest {
    fn key_ref(&mut self) -> Option<&mut String> {
        None
    }
}

/// Replaces the alias `request` names, if any, by the key id it points at (`KeyNotFound` naming the
/// alias if there is none; `Unsupported` if the backend has no aliases).
pub(crate) async fn resolve<R: KeyRefs>(manager: &KmsManager, request: &mut R) -> Result<()> {
    // No allocation on the data path: a plain key id is left as it is.
    if let Some(key_ref) = request.key_ref()
        && is_alias(key_ref)
    {
        *key_ref = manager.backend().resolve_alias(key_ref).await?;
    }
    Ok(())
}
