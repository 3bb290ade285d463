//! [`Operation`]: every operation **kms** exposes, and the key-state table: which
//! operations a key in each [`KeyState`] allows, what state it is in afterwards, and the
//! typed error otherwise.
//!
//! This is the one home of both. Authorization grants operations by name, the audit log and
//! the metrics label requests with [`Operation::as_str`], and every backend checks a key's
//! state with [`Operation::check_key_state`] before acting on it, so a refusal reads the same
//! from every backend: [`KmsError::InvalidKeyState`] naming the key, its state and the
//! operation. `docs/key-states.md` renders the table; the backend contract suite
//! (`kms_core::testkit`) keeps an expectation table of its own and checks every backend
//! against it, so a change here that no backend follows (or the reverse) fails there.
//!
//! | operation | Enabled | Disabled | PendingDeletion | PendingImport | Unavailable |
//! |---|---|---|---|---|---|
//! | encrypt, decrypt, generate data key (± plaintext), re-encrypt (source and destination), rotate | ok | refused | refused | refused | refused |
//! | describe | ok | ok | ok | ok | ok |
//! | enable | ok (no-op) | ok → Enabled | refused | refused | refused |
//! | disable | ok → Disabled | ok (no-op) | refused | refused | refused |
//! | schedule deletion | ok → PendingDeletion | ok → PendingDeletion | refused | ok → PendingDeletion | refused |
//! | cancel deletion | refused | refused | ok → **Disabled** | refused | refused |
//! | update description, tag, untag | ok | ok | refused | ok | refused |
//! | get parameters for import (external keys) | ok | ok | refused | ok | refused |
//! | import key material (external keys) | ok (same material, or a new version) | ok (same material, or a new version; stays Disabled) | refused | ok → **Enabled** | refused |
//! | delete imported key material (external keys) | ok → PendingImport | ok → PendingImport | refused | ok (no-op) | refused |
//!
//! The BYOK rows apply to keys of origin `external`; on any other key they are refused with
//! [`KmsError::ImportRefused`] (`not_external_key`) whatever the state.
//!
//! Operations that act on no single key's state (service control, create, list, metrics,
//! health, aliases) are allowed in every state: [`Operation::allowed_states`] is `None`.
//!
//! ```
//! use kms_types::operation::Operation;
//! use kms_types::types::KeyState;
//! use kms_types::KmsError;
//!
//! Operation::Encrypt.check_key_state("app", KeyState::Enabled)?;
//! let refused = Operation::Encrypt.check_key_state("app", KeyState::Disabled).unwrap_err();
//! assert!(matches!(
//!     refused,
//!     KmsError::InvalidKeyState { state: KeyState::Disabled, operation: "encrypt", .. }
//! ));
//! assert_eq!(Operation::CancelKeyDeletion.next_state(KeyState::PendingDeletion), KeyState::Disabled);
//! # Ok::<(), KmsError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{KmsError, Result};
use crate::types::KeyState;

/// Every operation the API exposes; the unit policies grant, the audit log and metrics name,
/// and the key-state table is written in.
///
/// Deliberately exhaustive: a new operation must be placed in every `match` over it (the
/// routes, the handlers, the state table), not fall into a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `POST /kms/v1/configure`.
    Configure,
    /// `POST /kms/v1/reconfigure`.
    Reconfigure,
    /// `POST /kms/v1/start`.
    Start,
    /// `POST /kms/v1/stop`.
    Stop,
    /// `GET /kms/v1/status`.
    Status,
    /// `GET /kms/v1/config`.
    GetConfig,
    /// `POST /kms/v1/cache/clear`.
    ClearCache,
    /// `POST /kms/v1/backup`: a sealed backup bundle of every key.
    Backup,
    /// `POST /kms/v1/keys`.
    CreateKey,
    /// `POST /kms/v1/import`: a key with its material, from another KMS (`kms migrate`).
    ImportKey,
    /// `GET /kms/v1/keys`.
    ListKeys,
    /// `GET /kms/v1/keys/{key_id}`.
    DescribeKey,
    /// `POST /kms/v1/keys/{key_id}/enable`.
    EnableKey,
    /// `POST /kms/v1/keys/{key_id}/disable`.
    DisableKey,
    /// `POST /kms/v1/keys/{key_id}/rotate`.
    RotateKey,
    /// `PUT /kms/v1/keys/{key_id}/description`.
    UpdateKeyDescription,
    /// `POST /kms/v1/keys/{key_id}/tags`.
    TagKey,
    /// `POST /kms/v1/keys/{key_id}/untag`.
    UntagKey,
    /// `DELETE /kms/v1/keys/{key_id}` (`KmsBackend::delete_key`).
    ScheduleKeyDeletion,
    /// `POST /kms/v1/keys/{key_id}/cancel-deletion`.
    CancelKeyDeletion,
    /// `POST /kms/v1/keys/{key_id}/generate-data-key`.
    GenerateDataKey,
    /// `POST /kms/v1/keys/{key_id}/generate-data-key-without-plaintext`.
    GenerateDataKeyWithoutPlaintext,
    /// `POST /kms/v1/keys/{key_id}/encrypt`.
    Encrypt,
    /// `POST /kms/v1/decrypt`.
    Decrypt,
    /// `POST /kms/v1/re-encrypt` (checked on the source key and on the destination key).
    ReEncrypt,
    /// `GET /metrics`.
    Metrics,
    /// `GET /health`.
    Health,
    /// AWS `CreateAlias`, `UpdateAlias`, `DeleteAlias` (on the key the alias points at).
    ManageAliases,
    /// `POST /kms/v1/keys/{key_id}/import-parameters`: a wrapping key and import token (BYOK).
    GetParametersForImport,
    /// `POST /kms/v1/keys/{key_id}/import-material`: wrapped material into an external key.
    ImportKeyMaterial,
    /// `DELETE /kms/v1/keys/{key_id}/import-material`: the key returns to `PendingImport`.
    DeleteImportedKeyMaterial,
}

/// Every key state.
const ANY_STATE: &[KeyState] =
    &[KeyState::Enabled, KeyState::Disabled, KeyState::PendingDeletion, KeyState::PendingImport, KeyState::Unavailable];
/// Cryptographic use: only an `Enabled` key.
const ENABLED: &[KeyState] = &[KeyState::Enabled];
/// Enable and disable: between the two states a caller controls.
const ENABLED_OR_DISABLED: &[KeyState] = &[KeyState::Enabled, KeyState::Disabled];
/// Metadata edits and scheduling deletion (as AWS KMS): any key not already leaving and
/// readable.
const LIVE: &[KeyState] = &[KeyState::Enabled, KeyState::Disabled, KeyState::PendingImport];
/// BYOK (parameters, import, delete material): an external key that is not leaving.
const IMPORTABLE: &[KeyState] = &[KeyState::PendingImport, KeyState::Enabled, KeyState::Disabled];
/// Cancel deletion: only a key waiting for it.
const PENDING_DELETION: &[KeyState] = &[KeyState::PendingDeletion];

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 31] = [
        Self::Configure,
        Self::Reconfigure,
        Self::Start,
        Self::Stop,
        Self::Status,
        Self::GetConfig,
        Self::ClearCache,
        Self::Backup,
        Self::CreateKey,
        Self::ImportKey,
        Self::ListKeys,
        Self::DescribeKey,
        Self::EnableKey,
        Self::DisableKey,
        Self::RotateKey,
        Self::UpdateKeyDescription,
        Self::TagKey,
        Self::UntagKey,
        Self::ScheduleKeyDeletion,
        Self::CancelKeyDeletion,
        Self::GenerateDataKey,
        Self::GenerateDataKeyWithoutPlaintext,
        Self::Encrypt,
        Self::Decrypt,
        Self::ReEncrypt,
        Self::Metrics,
        Self::Health,
        Self::ManageAliases,
        Self::GetParametersForImport,
        Self::ImportKeyMaterial,
        Self::DeleteImportedKeyMaterial,
    ];

    /// The operations that only read: what the `read` group in a policy grants.
    pub const READ: [Operation; 6] =
        [Self::Status, Self::GetConfig, Self::ListKeys, Self::DescribeKey, Self::Metrics, Self::Health];

    /// The operation's name in policies, audit lines, metrics and errors (`generate_data_key`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Configure => "configure",
            Self::Reconfigure => "reconfigure",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Status => "status",
            Self::GetConfig => "get_config",
            Self::ClearCache => "clear_cache",
            Self::Backup => "backup",
            Self::CreateKey => "create_key",
            Self::ImportKey => "import_key",
            Self::ListKeys => "list_keys",
            Self::DescribeKey => "describe_key",
            Self::EnableKey => "enable_key",
            Self::DisableKey => "disable_key",
            Self::RotateKey => "rotate_key",
            Self::UpdateKeyDescription => "update_key_description",
            Self::TagKey => "tag_key",
            Self::UntagKey => "untag_key",
            Self::ScheduleKeyDeletion => "schedule_key_deletion",
            Self::CancelKeyDeletion => "cancel_key_deletion",
            Self::GenerateDataKey => "generate_data_key",
            Self::GenerateDataKeyWithoutPlaintext => "generate_data_key_without_plaintext",
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::ReEncrypt => "re_encrypt",
            Self::Metrics => "metrics",
            Self::Health => "health",
            Self::ManageAliases => "manage_aliases",
            Self::GetParametersForImport => "get_parameters_for_import",
            Self::ImportKeyMaterial => "import_key_material",
            Self::DeleteImportedKeyMaterial => "delete_imported_key_material",
        }
    }

    /// Whether the operation acts on one key, so that key-id patterns apply to it.
    pub fn is_key_scoped(self) -> bool {
        matches!(
            self,
            Self::CreateKey
                | Self::ImportKey
                | Self::ListKeys
                | Self::DescribeKey
                | Self::EnableKey
                | Self::DisableKey
                | Self::RotateKey
                | Self::UpdateKeyDescription
                | Self::TagKey
                | Self::UntagKey
                | Self::ScheduleKeyDeletion
                | Self::CancelKeyDeletion
                | Self::GenerateDataKey
                | Self::GenerateDataKeyWithoutPlaintext
                | Self::Encrypt
                | Self::Decrypt
                | Self::ReEncrypt
                | Self::ManageAliases
                | Self::GetParametersForImport
                | Self::ImportKeyMaterial
                | Self::DeleteImportedKeyMaterial
        )
    }

    /// The key states in which this operation may act on a key (the table in the
    /// [module docs](self)); `None` for an operation no key state restricts.
    pub const fn allowed_states(self) -> Option<&'static [KeyState]> {
        Some(match self {
            Self::Encrypt
            | Self::Decrypt
            | Self::GenerateDataKey
            | Self::GenerateDataKeyWithoutPlaintext
            | Self::ReEncrypt
            | Self::RotateKey => ENABLED,
            Self::DescribeKey => ANY_STATE,
            Self::EnableKey | Self::DisableKey => ENABLED_OR_DISABLED,
            Self::ScheduleKeyDeletion | Self::UpdateKeyDescription | Self::TagKey | Self::UntagKey => LIVE,
            Self::CancelKeyDeletion => PENDING_DELETION,
            Self::GetParametersForImport | Self::ImportKeyMaterial | Self::DeleteImportedKeyMaterial => IMPORTABLE,
            Self::Configure
            | Self::Reconfigure
            | Self::Start
            | Self::Stop
            | Self::Status
            | Self::GetConfig
            | Self::ClearCache
            | Self::Backup
            | Self::CreateKey
            | Self::ImportKey
            | Self::ListKeys
            | Self::Metrics
            | Self::Health
            | Self::ManageAliases => return None,
        })
    }

    /// Whether a key in `state` allows this operation.
    pub fn allows(self, state: KeyState) -> bool {
        self.allowed_states().is_none_or(|allowed| allowed.contains(&state))
    }

    /// `Ok` when a key in `state` allows this operation, else
    /// [`KmsError::InvalidKeyState`] naming `key_id`, `state` and this operation.
    pub fn check_key_state(self, key_id: &str, state: KeyState) -> Result<()> {
        if self.allows(state) { Ok(()) } else { Err(KmsError::invalid_key_state(key_id, state, self.as_str())) }
    }

    /// The state of a key after this operation succeeded on it in `state` (`state` itself
    /// for the operations that do not change it).
    pub const fn next_state(self, state: KeyState) -> KeyState {
        match self {
            Self::EnableKey => KeyState::Enabled,
            Self::DisableKey | Self::CancelKeyDeletion => KeyState::Disabled,
            Self::ScheduleKeyDeletion => KeyState::PendingDeletion,
            Self::DeleteImportedKeyMaterial => KeyState::PendingImport,
            Self::ImportKeyMaterial if matches!(state, KeyState::PendingImport) => KeyState::Enabled,
            _ => state,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Operation`] (from [`Operation::from_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation `{0}`")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|op| op.as_str() == s).ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_typed_errors() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!("delete_key".parse::<Operation>(), Err(UnknownOperation("delete_key".into())));
    }

    #[test]
    fn refusals_name_the_key_its_state_and_the_operation() {
        let err = Operation::ScheduleKeyDeletion.check_key_state("k1", KeyState::PendingDeletion).unwrap_err();
        assert!(
            matches!(
                err,
                KmsError::InvalidKeyState { ref key_id, state: KeyState::PendingDeletion, operation: "schedule_key_deletion" }
                    if key_id == "k1"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn an_unavailable_key_can_only_be_described() {
        for op in Operation::ALL {
            let result = op.check_key_state("k", KeyState::Unavailable);
            if op == Operation::DescribeKey || op.allowed_states().is_none() {
                assert!(matches!(result, Ok(())), "{op}: {result:?}");
            } else {
                assert!(
                    matches!(result, Err(KmsError::InvalidKeyState { state: KeyState::Unavailable, operation, .. }) if operation == op.as_str()),
                    "{op}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn only_lifecycle_operations_change_the_state() {
        for op in Operation::ALL {
            for state in ANY_STATE.iter().copied().filter(|s| op.allows(*s)) {
                let after = op.next_state(state);
                match op {
                    Operation::EnableKey => assert_eq!(after, KeyState::Enabled),
                    Operation::DisableKey | Operation::CancelKeyDeletion => assert_eq!(after, KeyState::Disabled),
                    Operation::ScheduleKeyDeletion => assert_eq!(after, KeyState::PendingDeletion),
                    Operation::DeleteImportedKeyMaterial => assert_eq!(after, KeyState::PendingImport),
                    Operation::ImportKeyMaterial if state == KeyState::PendingImport => {
                        assert_eq!(after, KeyState::Enabled)
                    }
                    _ => assert_eq!(after, state, "{op} changed {state}"),
                }
            }
        }
    }
}
