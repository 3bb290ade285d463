//! Authentication (bearer tokens, kept only as SHA-256 hashes) and authorization (policies of
//! allowed operations × key-id glob patterns).
//!
//! A token is never stored: the server configuration holds `hex(SHA-256(token))` per identity.
//! A presented token is hashed and compared against every stored hash in constant time, so
//! neither the comparison nor the number of identities checked depends on where the bytes
//! differ.

use std::fmt;

use base64::Engine as _;
use ring::digest;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use kms_types::operation::Operation;

/// One grant: these operations on keys whose id matches one of these patterns.
///
/// `operations` holds operation names, `*` (all) or `read` (the read-only ones). `keys` holds
/// glob patterns over key ids (`*` any run of characters, `?` one character); operations
/// that name no key (service control, `metrics`) ignore `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Operation names, `*` or `read`.
    pub operations: Vec<String>,
    /// Key-id glob patterns (default: `*`).
    #[serde(default = "all_keys")]
    pub keys: Vec<String>,
}

fn all_keys() -> Vec<String> {
    vec!["*".into()]
}

/// An identity as configured: a name, the hash of its token and its grants.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// A name for audit lines (`admin`, `app-frontend`).
    pub name: String,
    /// Lower-case hex SHA-256 of the bearer token (`kms token hash` prints it).
    pub token_sha256: String,
    /// What the identity may do.
    #[serde(default)]
    pub allow: Vec<Grant>,
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig").field("name", &self.name).field("allow", &self.allow).finish_non_exhaustive()
    }
}

/// A compiled grant.
#[derive(Debug, Clone)]
struct CompiledGrant {
    operations: Vec<Operation>,
    keys: Vec<String>,
}

/// An authenticated caller: its name and what it may do.
#[derive(Debug, Clone)]
pub struct Identity {
    name: String,
    grants: Vec<CompiledGrant>,
}

impl Identity {
    /// The identity's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the identity may perform `op` at all (on some key, for key-scoped operations).
    pub fn may(&self, op: Operation) -> bool {
        self.grants.iter().any(|g| g.operations.contains(&op))
    }

    /// Whether the identity may perform `op` on `key_id`. Operations that name no key ignore
    /// `key_id`; for key-scoped operations `key_id = None` means "any key" and needs a `*` grant.
    pub fn may_on(&self, op: Operation, key_id: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            g.operations.contains(&op)
                && (!op.is_key_scoped()
                    || match key_id {
                        Some(id) => g.keys.iter().any(|p| glob_match(p, id)),
                        None => g.keys.iter().any(|p| p == "*"),
                    })
        })
    }
}

impl Identity {
    /// The literal text every key id the identity may perform `op` on starts with: the
    /// longest common prefix of its patterns' literal starts (before the first `*` or `?`).
    /// `""` when the patterns share none (or one of them is `*`).
    pub fn key_prefix(&self, op: Operation) -> String {
        let mut starts = self
            .grants
            .iter()
            .filter(|g| g.operations.contains(&op))
            .flat_map(|g| g.keys.iter())
            .map(|p| &p[..p.find(['*', '?']).unwrap_or(p.len())]);
        let Some(first) = starts.next() else { return String::new() };
        let common = starts.fold(first, |common, start| {
            let same = common.bytes().zip(start.bytes()).take_while(|(a, b)| a == b).count();
            &common[..same]
        });
        common.to_owned()
    }
}

/// Why a configuration of identities was refused.
#[derive(Debug, thiserror::Error)]
#[error("identity {identity}: {message}")]
pub struct PolicyError {
    identity: String,
    message: String,
}

/// Holds the configured identities and resolves bearer tokens to them.
#[derive(Clone)]
pub struct Authenticator {
    entries: Vec<([u8; 32], Identity)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(_, id)| id.name.as_str()).collect();
        f.debug_struct("Authenticator").field("identities", &names).finish()
    }
}

impl Authenticator {
    /// Compiles identities; refuses malformed hashes, unknown operations, duplicate names or
    /// duplicate tokens.
    pub fn new(identities: &[IdentityConfig]) -> Result<Self, PolicyError> {
        let mut entries: Vec<([u8; 32], Identity)> = Vec::with_capacity(identities.len());
        for config in identities {
            let err = |message: String| PolicyError { identity: config.name.clone(), message };
            if config.name.is_empty() {
                return Err(err("name must not be empty".into()));
            }
            if entries.iter().any(|(_, id)| id.name == config.name) {
                return Err(err("is configured twice".into()));
            }
            let hash = parse_hash(&config.token_sha256)
                .ok_or_else(|| err("token_sha256 must be 64 hexadecimal characters".into()))?;
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(err("shares its token with another identity".into()));
            }
            let mut grants = Vec::with_capacity(config.allow.len());
            for grant in &config.allow {
                let mut operations = Vec::new();
                for name in &grant.operations {
                    match name.as_str() {
                        "*" => operations.extend(Operation::ALL),
                        "read" => operations.extend(Operation::READ),
                        other => operations.push(other.parse::<Operation>().map_err(|e| err(e.to_string()))?),
                    }
                }
                if grant.keys.iter().any(|p| p.is_empty()) {
                    return Err(err("key patterns must not be empty".into()));
                }
                operations.sort_unstable();
                operations.dedup();
                grants.push(CompiledGrant { operations, keys: grant.keys.clone() });
            }
            entries.push((hash, Identity { name: config.name.clone(), grants }));
        }
        Ok(Self { entries })
    }

    /// The identity configured under `name` (an AWS access key names its identity).
    pub fn identity_named(&self, name: &str) -> Option<&Identity> {
        self.entries.iter().map(|(_, identity)| identity).find(|identity| identity.name == name)
    }

    /// Whether no identity is configured (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity whose token is `token`, if any. Every stored hash is compared, each in
    /// constant time.
    pub fn authenticate(&self, token: &str) -> Option<&Identity> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (hash, identity) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity);
            }
        }
        found
    }

    /// Resolves an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate_header(&self, header: &[u8]) -> Option<&Identity> {
        let value = std::str::from_utf8(header).ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        self.authenticate(token)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Lower-case hex SHA-256 of a token: the value to put in `token_sha256`.
pub fn hash_token(token: &str) -> String {
    crate::hex::hex(&sha256(token.as_bytes()))
}

/// A fresh random bearer token (`kms_` + 43 characters of base64url: 256 bits).
pub fn generate_token() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    kms_crypto::rand::fill(bytes.as_mut()).expect("the system random generator failed");
    Zeroizing::new(format!("kms_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// Glob match over key ids: `*` matches any run (also empty), `?` exactly one character,
/// everything else itself. Key ids are ASCII, so matching is bytewise.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, token: &str, allow: Vec<Grant>) -> IdentityConfig {
        IdentityConfig { name: name.into(), token_sha256: hash_token(token), allow }
    }

    fn grant(ops: &[&str], keys: &[&str]) -> Grant {
        Grant {
            operations: ops.iter().map(|s| s.to_string()).collect(),
            keys: keys.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        for (p, t) in
            [("*", ""), ("*", "abc"), ("app-*", "app-1"), ("app-*", "app-"), ("a?c", "abc"), ("*-x-*", "a-x-b")]
        {
            assert!(glob_match(p, t), "{p} should match {t}");
        }
        for (p, t) in [("app-*", "ap"), ("app-*", "xapp-1"), ("a?c", "ac"), ("abc", "abcd"), ("*-x", "a-x-b")] {
            assert!(!glob_match(p, t), "{p} should not match {t}");
        }
    }

    #[test]
    fn tokens_resolve_to_identities_and_wrong_tokens_to_none() {
        let auth = Authenticator::new(&[
            identity("admin", "admin-token", vec![grant(&["*"], &["*"])]),
            identity("app", "app-token", vec![grant(&["generate_data_key", "decrypt"], &["app-*"])]),
        ])
        .unwrap();
        assert_eq!(auth.authenticate("admin-token").unwrap().name(), "admin");
        assert_eq!(auth.authenticate_header(b"Bearer app-token").unwrap().name(), "app");
        assert_eq!(auth.authenticate_header(b"bearer  app-token ").unwrap().name(), "app");
        assert!(auth.authenticate("admin-token2").is_none());
        assert!(auth.authenticate_header(b"Basic app-token").is_none());
        assert!(auth.authenticate_header(b"Bearer ").is_none());
        assert!(auth.authenticate_header(b"app-token").is_none());
        assert!(auth.authenticate_header(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn policies_combine_operations_and_key_patterns() {
        let auth = Authenticator::new(&[
            identity("app", "t1", vec![grant(&["generate_data_key", "decrypt"], &["app-*"])]),
            identity("auditor", "t2", vec![grant(&["read"], &["*"])]),
        ])
        .unwrap();
        let app = auth.authenticate("t1").unwrap();
        assert!(app.may_on(Operation::GenerateDataKey, Some("app-1")));
        assert!(!app.may_on(Operation::GenerateDataKey, Some("other")));
        assert!(!app.may_on(Operation::GenerateDataKey, None));
        assert!(!app.may_on(Operation::Encrypt, Some("app-1")));
        assert!(!app.may_on(Operation::Status, None));
        let auditor = auth.authenticate("t2").unwrap();
        assert!(auditor.may_on(Operation::DescribeKey, Some("anything")));
        assert!(auditor.may_on(Operation::ListKeys, None));
        assert!(auditor.may_on(Operation::Metrics, None));
        assert!(!auditor.may_on(Operation::Decrypt, Some("x")));
        assert!(!auditor.may_on(Operation::Stop, None));
    }

    #[test]
    fn bad_identity_configs_are_refused() {
        let refused = |identities: &[IdentityConfig]| {
            let e = Authenticator::new(identities).unwrap_err();
            (e.identity, e.message)
        };
        let bad_hash = IdentityConfig { name: "x".into(), token_sha256: "abc".into(), allow: vec![] };
        assert_eq!(refused(&[bad_hash]), ("x".into(), "token_sha256 must be 64 hexadecimal characters".into()));
        let (who, why) = refused(&[identity("x", "t", vec![grant(&["fly"], &["*"])])]);
        assert!(who == "x" && why.contains("fly"), "{why}");
        let twice = refused(&[identity("x", "t", vec![]), identity("x", "u", vec![])]);
        assert_eq!(twice, ("x".into(), "is configured twice".into()));
        let shared = refused(&[identity("x", "t", vec![]), identity("y", "t", vec![])]);
        assert_eq!(shared, ("y".into(), "shares its token with another identity".into()));
        let empty_pattern = refused(&[identity("x", "t", vec![grant(&["*"], &[""])])]);
        assert_eq!(empty_pattern, ("x".into(), "key patterns must not be empty".into()));
    }

    #[test]
    fn generated_tokens_are_unique_and_hash_stably() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(*a, *b);
        assert!(a.starts_with("kms_") && a.len() == 47);
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn debug_never_shows_token_hashes() {
        let config = identity("x", "t", vec![]);
        assert!(!format!("{config:?}").contains(&config.token_sha256));
    }
}
