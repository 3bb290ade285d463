//! Request validation, once, above every backend.
//!
//! [`KmsManager`](crate::manager::KmsManager) runs the check of each request here before any
//! backend call, so every backend (the local one, Vault, one from outside this workspace)
//! refuses the same malformed requests with the same [`KmsError::InvalidRequest`](kms_types::KmsError::InvalidRequest) naming the
//! same field, and no backend repeats these rules. What is checked is what a request can get
//! wrong without looking at a key:
//!
//! - key ids (`key_id`, `key_name`, `destination_key_id`, `marker`): [`validate_key_id`];
//! - metadata: description, tags and policy within [`kms_types::limits`];
//! - `Encrypt` plaintext: 1 to [`MAX_ENCRYPT_PLAINTEXT_BYTES`] bytes;
//! - deletion windows (7-30 days) and `ListKeys` limits (1-1000) and prefixes.
//!
//! What depends on a key (its state, the tag count after a merge, whether it exists) is the
//! backend's, through the key-state table of [`kms_types::operation`]. Backends that turn key
//! ids into file names or URL paths still check ids themselves: that guards their storage,
//! whoever calls them.
//!
//! [`MAX_ENCRYPT_PLAINTEXT_BYTES`]: kms_types::types::MAX_ENCRYPT_PLAINTEXT_BYTES

use kms_types::error::Result;
use kms_types::limits;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, DeleteKeyRequest, EncryptRequest, ListKeysRequest, ReEncryptRequest,
    TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_encrypt_plaintext, validate_key_id,
    validate_list_limit, validate_pending_window,
};

/// A request naming a key by `key_id` only (describe, enable, disable, rotate, cancel
/// deletion, generate data key).
pub fn key_id(key_id: &str) -> Result<()> {
    validate_key_id("key_id", key_id)
}

/// `CreateKey`: the optional name, description, tags and policy.
pub fn create_key(request: &CreateKeyRequest) -> Result<()> {
    if let Some(name) = &request.key_name {
        validate_key_id("key_name", name)?;
    }
    limits::validate_create_metadata(request)
}

/// `Encrypt`: the key id and a plaintext of 1 to 4096 bytes.
pub fn encrypt(request: &EncryptRequest) -> Result<()> {
    key_id(&request.key_id)?;
    validate_encrypt_plaintext(&request.plaintext)
}

/// `Decrypt`: the expected key id, when given. (A ciphertext is the backend's to judge.)
pub fn decrypt(request: &DecryptRequest) -> Result<()> {
    request.key_id.as_deref().map_or(Ok(()), key_id)
}

/// `ReEncrypt`: the destination key id, when given.
pub fn re_encrypt(request: &ReEncryptRequest) -> Result<()> {
    match &request.destination_key_id {
        Some(destination) => validate_key_id("destination_key_id", destination),
        None => Ok(()),
    }
}

/// `ScheduleKeyDeletion`: the key id and a waiting period of 7 to 30 days.
pub fn delete_key(request: &DeleteKeyRequest) -> Result<()> {
    key_id(&request.key_id)?;
    validate_pending_window(request.pending_window_in_days).map(drop)
}

/// `ListKeys`: the page size, the marker (an id) and the prefix.
pub fn list_keys(request: &ListKeysRequest) -> Result<()> {
    validate_list_limit(request.limit)?;
    if let Some(marker) = &request.marker {
        validate_key_id("marker", marker)?;
    }
    request.checked_prefix().map(drop)
}

/// `UpdateKeyDescription`: the key id and the description's length.
pub fn update_key_description(request: &UpdateKeyDescriptionRequest) -> Result<()> {
    key_id(&request.key_id)?;
    limits::validate_description(&request.description)
}

/// `TagKey`: the key id and each tag (the count after merging needs the key: the manager
/// checks it against the key's current tags).
pub fn tag_key(request: &TagKeyRequest) -> Result<()> {
    key_id(&request.key_id)?;
    limits::validate_tags(&request.tags)
}

/// `UntagKey`: the key id (removing a tag a key does not have is no error).
pub fn untag_key(request: &UntagKeyRequest) -> Result<()> {
    key_id(&request.key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_types::error::KmsError;
    use kms_types::types::MAX_ENCRYPT_PLAINTEXT_BYTES;

    fn refused(field: &str, result: Result<()>) -> bool {
        matches!(result, Err(KmsError::InvalidRequest { field: f, .. }) if f == field)
    }

    #[test]
    fn encrypt_needs_one_to_4096_bytes_and_a_valid_id() {
        let request = |key_id: &str, len: usize| EncryptRequest {
            key_id: key_id.into(),
            plaintext: vec![1u8; len].into(),
            encryption_context: Default::default(),
        };
        encrypt(&request("k", 1)).unwrap();
        encrypt(&request("k", MAX_ENCRYPT_PLAINTEXT_BYTES)).unwrap();
        assert!(refused("plaintext", encrypt(&request("k", 0))));
        assert!(refused("plaintext", encrypt(&request("k", MAX_ENCRYPT_PLAINTEXT_BYTES + 1))));
        assert!(refused("key_id", encrypt(&request("a/b", 1))));
    }

    #[test]
    fn metadata_requests_are_checked_against_the_limits() {
        let long = "d".repeat(limits::MAX_DESCRIPTION_BYTES + 1);
        let update = UpdateKeyDescriptionRequest { key_id: "k".into(), description: long.clone() };
        assert!(refused("description", update_key_description(&update)));
        let create = CreateKeyRequest { description: Some(long), ..Default::default() };
        assert!(refused("description", create_key(&create)));
        let create = CreateKeyRequest { key_name: Some("../x".into()), ..Default::default() };
        assert!(refused("key_name", create_key(&create)));
        let tag = TagKeyRequest { key_id: "k".into(), tags: [(String::new(), "v".into())].into() };
        assert!(refused("tags", tag_key(&tag)));
        let untag = UntagKeyRequest { key_id: "k/1".into(), tag_keys: vec!["t".into()] };
        assert!(refused("key_id", untag_key(&untag)));
        untag_key(&UntagKeyRequest { key_id: "k".into(), tag_keys: vec!["absent".into()] }).unwrap();
    }

    #[test]
    fn windows_limits_markers_and_destinations() {
        let delete = DeleteKeyRequest { key_id: "k".into(), pending_window_in_days: Some(6) };
        assert!(refused("pending_window_in_days", delete_key(&delete)));
        assert!(refused("limit", list_keys(&ListKeysRequest { limit: Some(0), ..Default::default() })));
        let marker = ListKeysRequest { marker: Some("a b".into()), ..Default::default() };
        assert!(refused("marker", list_keys(&marker)));
        let re = ReEncryptRequest {
            ciphertext_blob: Vec::new(),
            source_encryption_context: Default::default(),
            destination_key_id: Some(String::new()),
            destination_encryption_context: None,
        };
        assert!(refused("destination_key_id", re_encrypt(&re)));
        let decrypt_request = DecryptRequest {
            ciphertext_blob: Vec::new(),
            encryption_context: Default::default(),
            key_id: Some(".k".into()),
        };
        assert!(refused("key_id", decrypt(&decrypt_request)));
    }
}
