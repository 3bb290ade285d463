//! Aliases on the native API: the routes that manage them (`/kms/v1/aliases`), their wire
//! types, and how an alias sits in a key path.
//!
//! An alias (`alias/team/app`) is accepted wherever a key id is. In a path it is one segment
//! with each `/` written `%2F` (`/kms/v1/keys/alias%2Fteam%2Fapp/encrypt`,
//! `/kms/v1/aliases/alias%2Fteam%2Fapp`): a literal `/` would make `alias/encrypt` and the key
//! `alias` with the action `encrypt` the same path. [`key_segment`] writes it so, and the
//! server resolves an alias to its key before it authorizes anything, so a grant always applies
//! to the key an alias points at.

use http::Method;
use kms_types::alias::{is_alias, validate_alias_name};
use kms_types::types::validate_key_id;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// What is escaped in a key path segment: `/` (and `%`, so that the escape is unambiguous);
/// every other character of a key id or an alias name is safe in a path.
const SEGMENT: &AsciiSet = &CONTROLS.add(b'/').add(b'%');

/// The path segment of a key id or alias (`alias/team/app` → `alias%2Fteam%2Fapp`).
pub fn key_segment(key_ref: &str) -> String {
    utf8_percent_encode(key_ref, SEGMENT).to_string()
}

/// The key id or alias a path segment names, checked (`key_id` field on error).
pub fn key_ref_from_segment(segment: &str) -> Result<String, ApiError> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::invalid("key_id", "is not UTF-8 once decoded"))?
        .into_owned();
    check_key_ref("key_id", &decoded)?;
    Ok(decoded)
}

/// Checks a key reference: a key id, or an alias name (`alias/...`).
pub fn check_key_ref(field: &str, key_ref: &str) -> Result<(), ApiError> {
    if is_alias(key_ref) {
        validate_alias_name(field, key_ref)?
    } else {
        validate_key_id(field, key_ref)?
    }
    Ok(())
}

/// A matched alias route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasRoute {
    /// `POST /kms/v1/aliases`: create (body [`kms_types::alias::CreateAliasRequest`]).
    Create,
    /// `GET /kms/v1/aliases`: one page (`?limit`, `?marker`, `?key_id`).
    List,
    /// `PUT /kms/v1/aliases/{alias}`: point it at another key (body [`AliasTargetBody`]).
    Update(String),
    /// `DELETE /kms/v1/aliases/{alias}`.
    Delete(String),
}

/// Matches the alias routes: `None` for any other path; 405 for another method; 400 naming
/// `alias_name` for a segment that is not an alias name.
pub fn alias_route(method: &Method, path: &str) -> Result<Option<AliasRoute>, ApiError> {
    let Some(rest) = path.strip_prefix("/kms/v1/aliases") else { return Ok(None) };
    let name = match rest {
        "" => None,
        _ => match rest.strip_prefix('/') {
            Some(segment) if !segment.is_empty() && !segment.contains('/') => Some(segment),
            _ => return Ok(None),
        },
    };
    let route = match (name, method) {
        (None, &Method::POST) => AliasRoute::Create,
        (None, &Method::GET) => AliasRoute::List,
        (Some(segment), &Method::PUT | &Method::DELETE) => {
            let alias_name = percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| ApiError::invalid("alias_name", "is not UTF-8 once decoded"))?
                .into_owned();
            validate_alias_name("alias_name", &alias_name)?;
            if method == Method::PUT { AliasRoute::Update(alias_name) } else { AliasRoute::Delete(alias_name) }
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(Some(route))
}

/// `PUT /kms/v1/aliases/{alias}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTargetBody {
    /// The key id the alias is to point at (a key, not an alias).
    pub target_key_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_one_segment_and_come_back() {
        for key_ref in ["app-key", "k.1", "alias/a", "alias/team/app_1-x"] {
            let segment = key_segment(key_ref);
            assert!(!segment.contains('/'), "{segment}");
            assert_eq!(key_ref_from_segment(&segment).unwrap(), key_ref);
        }
        assert_eq!(key_segment("alias/team/app"), "alias%2Fteam%2Fapp");
        assert_eq!(key_ref_from_segment("alias%2fteam").unwrap(), "alias/team", "lowercase escapes too");
    }

    #[test]
    fn bad_segments_name_the_field() {
        for segment in ["alias%2Faws%2Fs3", "alias%2F", "a%20b", "%FF", ".hidden", "alias%2Fa%2520b"] {
            let err = key_ref_from_segment(segment).unwrap_err();
            assert_eq!((err.status.as_u16(), err.field.as_deref()), (400, Some("key_id")), "{segment}");
        }
    }

    #[test]
    fn alias_routes_match() {
        let cases = [
            (Method::POST, "/kms/v1/aliases", AliasRoute::Create),
            (Method::GET, "/kms/v1/aliases", AliasRoute::List),
            (Method::PUT, "/kms/v1/aliases/alias%2Fteam%2Fapp", AliasRoute::Update("alias/team/app".into())),
            (Method::DELETE, "/kms/v1/aliases/alias%2Fx", AliasRoute::Delete("alias/x".into())),
        ];
        for (method, path, expected) in cases {
            assert_eq!(alias_route(&method, path).unwrap(), Some(expected), "{method} {path}");
        }
        for path in ["/kms/v1/keys", "/kms/v1/aliasesx", "/kms/v1/aliases/alias/x", "/kms/v1/aliases/"] {
            assert_eq!(alias_route(&Method::GET, path).unwrap(), None, "{path}");
        }
        for (method, path) in [
            (Method::DELETE, "/kms/v1/aliases"),
            (Method::GET, "/kms/v1/aliases/alias%2Fx"),
            (Method::POST, "/kms/v1/aliases/alias%2Fx"),
        ] {
            assert_eq!(alias_route(&method, path).unwrap_err().status.as_u16(), 405, "{method} {path}");
        }
        let err = alias_route(&Method::PUT, "/kms/v1/aliases/key-1").unwrap_err();
        assert_eq!((err.status.as_u16(), err.field.as_deref()), (400, Some("alias_name")));
    }
}
