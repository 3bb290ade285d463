//! Backup and restore of a key directory, in the bundle format of [`crate::bundle`].
//!
//! [`LocalBackend::snapshot`] reads every record in one `redb` read transaction, so a backup
//! taken while keys are created and rotated is one consistent state of the store (every
//! commit before it, none after). [`LocalBackend::restore_into`] is offline: it writes a
//! bundle into a key directory whose store is empty, after the bundle has been authenticated
//! with the master key.

use std::path::Path;

use kms_types::config::MasterKeySource;
use kms_types::error::{KmsError, Result};

use crate::backend::LocalBackend;
use crate::bundle;
use crate::dir::{KeyDir, VERIFIER_FILE, io_error};
use crate::master_key::MasterSecret;
use crate::store;

/// What [`LocalBackend::restore_into`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// Keys restored.
    pub keys: usize,
    /// Aliases restored.
    pub aliases: usize,
}

impl LocalBackend {
    /// A backup bundle of every key (every version, state, description and tag) and every
    /// alias as the store holds it now: sealed records and the verifier, authenticated as a whole under the
    /// master-key-derived KEK (`docs/formats.md`, "Backup bundle"). Changes committed while
    /// it is read are not in it; the bundle is built in memory.
    ///
    /// Errors: a closed backend; a store kept in the clear (`Configuration`: there is no
    /// master key to seal the bundle with); storage failures.
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        self.inner.snapshot().await
    }

    /// Writes `bundle` into the key directory `key_dir` (created 0700 if missing), whose store
    /// must be empty, with `master_key` (the key the bundle was made under).
    ///
    /// Nothing is written unless the bundle is whole and authentic and the master key opens
    /// it. The records, the pending-deletion index and the aliases go into a new store built aside and
    /// moved into place; the verifier record is written first, so an interrupted restore
    /// leaves an empty store to restore into again.
    ///
    /// Errors: `InvalidRequest` (field `backup`) for a malformed, truncated or altered bundle;
    /// `Configuration` (field `backend_config.master_key`) for another master key;
    /// `Configuration` (field `backend_config.key_dir`) when the store already holds keys, or
    /// the directory is untrusted or in use by a running server.
    pub fn restore_into(key_dir: &Path, master_key: &MasterKeySource, bundle: &[u8]) -> Result<RestoreSummary> {
        let secret = MasterSecret::resolve(master_key)?;
        let (_protection, bundle) = bundle::open(bundle, secret)?;
        let dir = KeyDir::open(key_dir)?;
        let shown = key_dir.display();
        let legacy = dir.legacy_record_ids().map_err(|e| io_error(format!("cannot list {shown}"), e))?;
        let held = store::key_count(&dir)? + legacy.len() as u64;
        if held > 0 {
            return Err(KmsError::configuration(
                "backend_config.key_dir",
                format!("{shown} already holds {held} key(s); a backup is restored only into an empty key store"),
            ));
        }
        dir.write_atomic(VERIFIER_FILE, &bundle.verifier, false)
            .map_err(|e| io_error(format!("cannot write the verifier record into {shown}"), e))?;
        store::build_and_install(&dir, |keys, pending, aliases| {
            for entry in &bundle.entries {
                keys.insert(entry.id.as_str(), entry.record.as_slice()).map_err(store::storage)?;
                if entry.pending {
                    pending.insert(entry.id.as_str(), ()).map_err(store::storage)?;
                }
            }
            for (name, record) in &bundle.aliases {
                aliases.insert(name.as_str(), record.as_slice()).map_err(store::storage)?;
            }
            Ok(())
        })?;
        dir.release();
        let summary = RestoreSummary { keys: bundle.entries.len(), aliases: bundle.aliases.len() };
        tracing::info!(key_dir = %shown, keys = summary.keys, aliases = summary.aliases, "restored a backup bundle");
        Ok(summary)
    }
}
