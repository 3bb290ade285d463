//! Aliases: friendly names (`alias/orders`) that point at a key and can be moved to another.
//!
//! An alias is accepted wherever a key id is (the library's [`EncryptionService`] and the AWS
//! protocol resolve it before anything else, and the AWS protocol authorizes on the key it
//! resolves to). Names are `alias/` followed by 1 to 250 of `A-Z a-z 0-9 / _ -`; `alias/aws/`
//! is reserved, as in AWS KMS.
//!
//! [`EncryptionService`]: https://docs.rs/kms-core/latest/kms_core/encryption/service/struct.EncryptionService.html

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{KmsError, Result};

/// The prefix every alias name starts with.
pub const ALIAS_PREFIX: &str = "alias/";
/// Longest alias name, prefix included.
pub const MAX_ALIAS_NAME_LEN: usize = 256;
/// Default and largest `list_aliases` page.
pub const MAX_ALIAS_LIST_LIMIT: u32 = 100;

/// Whether a key reference names an alias rather than a key.
pub fn is_alias(key_ref: &str) -> bool {
    key_ref.starts_with(ALIAS_PREFIX)
}

/// Checks an alias name (`alias/...`); the error names `field`.
pub fn validate_alias_name(field: &str, name: &str) -> Result<()> {
    let bad = |why: &str| Err(KmsError::invalid_request(field, why.to_owned()));
    let Some(rest) = name.strip_prefix(ALIAS_PREFIX) else {
        return bad("an alias name starts with alias/");
    };
    if rest.is_empty() || name.len() > MAX_ALIAS_NAME_LEN {
        return bad("an alias name is alias/ and 1 to 250 characters");
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-')) {
        return bad("an alias name may contain only ASCII letters, digits, '/', '_' and '-'");
    }
    if rest.starts_with("aws/") {
        return bad("alias/aws/ is reserved");
    }
    Ok(())
}

/// An alias and the key it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasEntry {
    /// `alias/...`.
    pub alias_name: String,
    /// The key id it resolves to.
    pub target_key_id: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub creation_date: OffsetDateTime,
    /// When it was last pointed at a key.
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date: OffsetDateTime,
}

/// `create_alias`: a new name for an existing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAliasRequest {
    /// `alias/...`, not yet taken.
    pub alias_name: String,
    /// An existing key id (not an alias).
    pub target_key_id: String,
}

/// `update_alias`: points an existing alias at another existing key.
pub type UpdateAliasRequest = CreateAliasRequest;

/// `list_aliases`: one page, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAliasesRequest {
    /// Only aliases of this key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Page size, 1 to 100 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_marker` of the previous page: the page starts after this alias name.
    #[serde(default)]
    pub marker: Option<String>,
}

/// A page of aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAliasesResponse {
    /// The aliases, in name order.
    pub aliases: Vec<AliasEntry>,
    /// Where the next page starts, when `truncated`.
    pub next_marker: Option<String>,
    /// Whether more aliases follow.
    pub truncated: bool,
}

/// Checks a `list_aliases` page size and returns it.
pub fn validate_alias_list_limit(limit: Option<u32>) -> Result<usize> {
    let limit = limit.unwrap_or(MAX_ALIAS_LIST_LIMIT);
    if (1..=MAX_ALIAS_LIST_LIMIT).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(KmsError::invalid_request("limit", format!("must be between 1 and {MAX_ALIAS_LIST_LIMIT}, got {limit}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_are_checked() {
        for good in ["alias/a", "alias/app/orders-1_x", &format!("alias/{}", "a".repeat(250))] {
            validate_alias_name("alias_name", good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in
            ["a", "alias/", "alias/a b", "alias/aws/s3", "alias/é", "key-1", &format!("alias/{}", "a".repeat(251))]
        {
            let err = validate_alias_name("alias_name", bad).unwrap_err();
            assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == "alias_name"), "{bad}");
        }
        assert!(is_alias("alias/x") && !is_alias("x"));
    }

    #[test]
    fn list_limits_are_checked() {
        assert_eq!(validate_alias_list_limit(None).unwrap(), 100);
        assert!(matches!(validate_alias_list_limit(Some(0)), Err(KmsError::InvalidRequest { .. })));
        assert!(matches!(validate_alias_list_limit(Some(101)), Err(KmsError::InvalidRequest { .. })));
    }
}
