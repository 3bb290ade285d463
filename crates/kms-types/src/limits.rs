//! Size limits on key metadata (tags, description, policy), the same for every backend.
//!
//! The limits follow AWS KMS: a tag key is at most 128 characters, a tag value at most 256,
//! a key carries at most 50 tags (counted after `tag_key` merges new tags into the existing
//! ones), a description is at most 8192 bytes and a policy document at most 32 KiB. They are
//! checked once, above the backends, by `kms_core::manager::KmsManager` before any call that
//! writes metadata; a backend therefore never stores more than [`MAX_METADATA_BYTES`] of it
//! per key, which is what lets a backend with a bounded record size (the local backend's
//! sealed records) guarantee that a record it writes is one it can read back.

use crate::error::{KmsError, Result};
use crate::types::{CreateKeyRequest, Tags};

/// Longest tag key, in characters (Unicode scalar values).
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in characters (Unicode scalar values).
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Most tags one key carries, after merging.
pub const MAX_TAGS: usize = 50;
/// Longest key description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 8192;
/// Longest key policy document, in bytes.
pub const MAX_POLICY_BYTES: usize = 32 * 1024;
/// The most bytes of caller-supplied metadata one key can hold within these limits: every tag
/// at its longest in 4-byte characters, plus the longest description and policy.
pub const MAX_METADATA_BYTES: usize =
    MAX_TAGS * (MAX_TAG_KEY_CHARS + MAX_TAG_VALUE_CHARS) * 4 + MAX_DESCRIPTION_BYTES + MAX_POLICY_BYTES;

/// Checks a description's length.
pub fn validate_description(description: &str) -> Result<()> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(KmsError::invalid_request(
            "description",
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes, got {}", description.len()),
        ));
    }
    Ok(())
}

/// Checks a policy document's length.
pub fn validate_policy(policy: &str) -> Result<()> {
    if policy.len() > MAX_POLICY_BYTES {
        return Err(KmsError::invalid_request(
            "policy",
            format!("must be at most {MAX_POLICY_BYTES} bytes, got {}", policy.len()),
        ));
    }
    Ok(())
}

/// Checks each tag (key 1..=128 characters, value at most 256) and their number (at most 50).
pub fn validate_tags(tags: &Tags) -> Result<()> {
    for (key, value) in tags {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_TAG_KEY_CHARS {
            return Err(KmsError::invalid_request(
                "tags",
                format!("a tag key must be 1 to {MAX_TAG_KEY_CHARS} characters, got {key_chars}"),
            ));
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_TAG_VALUE_CHARS {
            return Err(KmsError::invalid_request(
                "tags",
                format!("the value of tag {key:?} must be at most {MAX_TAG_VALUE_CHARS} characters, got {value_chars}"),
            ));
        }
    }
    check_tag_count(tags.len())
}

/// Checks that merging `added` into `existing` (as `tag_key` does: same names overwrite)
/// keeps the key within the tag limits.
pub fn validate_tag_merge(existing: &Tags, added: &Tags) -> Result<()> {
    validate_tags(added)?;
    let new_names = added.keys().filter(|k| !existing.contains_key(*k)).count();
    check_tag_count(existing.len() + new_names)
}

fn check_tag_count(count: usize) -> Result<()> {
    if count > MAX_TAGS {
        return Err(KmsError::invalid_request("tags", format!("a key holds at most {MAX_TAGS} tags, got {count}")));
    }
    Ok(())
}

/// Checks the metadata of a `CreateKey` request: description, tags and policy.
pub fn validate_create_metadata(request: &CreateKeyRequest) -> Result<()> {
    if let Some(description) = &request.description {
        validate_description(description)?;
    }
    validate_tags(&request.tags)?;
    if let Some(policy) = &request.policy {
        validate_policy(policy)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(n: usize) -> Tags {
        (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect()
    }

    fn is_invalid(field: &str, result: Result<()>) -> bool {
        matches!(result, Err(KmsError::InvalidRequest { field: f, .. }) if f == field)
    }

    #[test]
    fn tags_at_the_limits_pass_and_one_more_fails() {
        let longest: Tags = [("k".repeat(MAX_TAG_KEY_CHARS), "v".repeat(MAX_TAG_VALUE_CHARS))].into();
        validate_tags(&longest).unwrap();
        // Characters, not bytes: 128 four-byte characters are a valid key.
        validate_tags(&[("😀".repeat(MAX_TAG_KEY_CHARS), "é".repeat(MAX_TAG_VALUE_CHARS))].into()).unwrap();
        validate_tags(&tags(MAX_TAGS)).unwrap();
        assert!(is_invalid("tags", validate_tags(&[("k".repeat(MAX_TAG_KEY_CHARS + 1), String::new())].into())));
        assert!(is_invalid("tags", validate_tags(&[("k".into(), "v".repeat(MAX_TAG_VALUE_CHARS + 1))].into())));
        assert!(is_invalid("tags", validate_tags(&[(String::new(), "v".into())].into())));
        assert!(is_invalid("tags", validate_tags(&tags(MAX_TAGS + 1))));
    }

    #[test]
    fn tag_count_is_checked_after_merging_not_per_call() {
        let existing = tags(MAX_TAGS);
        // Overwriting existing names does not add tags.
        validate_tag_merge(&existing, &[("k0".to_owned(), "new".to_owned())].into()).unwrap();
        assert!(is_invalid("tags", validate_tag_merge(&existing, &[("k-new".to_owned(), "v".to_owned())].into())));
        validate_tag_merge(&tags(MAX_TAGS - 1), &[("k-new".to_owned(), "v".to_owned())].into()).unwrap();
    }

    #[test]
    fn description_and_policy_limits() {
        validate_description(&"d".repeat(MAX_DESCRIPTION_BYTES)).unwrap();
        assert!(is_invalid("description", validate_description(&"d".repeat(MAX_DESCRIPTION_BYTES + 1))));
        validate_policy(&"p".repeat(MAX_POLICY_BYTES)).unwrap();
        assert!(is_invalid("policy", validate_policy(&"p".repeat(MAX_POLICY_BYTES + 1))));
        let request = CreateKeyRequest { policy: Some("p".repeat(MAX_POLICY_BYTES + 1)), ..Default::default() };
        assert!(is_invalid("policy", validate_create_metadata(&request)));
        let request = CreateKeyRequest { tags: tags(MAX_TAGS + 1), ..Default::default() };
        assert!(is_invalid("tags", validate_create_metadata(&request)));
    }

    #[test]
    fn the_metadata_bound_is_well_under_a_mebibyte() {
        assert_eq!(MAX_METADATA_BYTES, 117_760);
    }
}
