//! The backend contract suite: the behaviour every [`KmsBackend`] must show, as test cases a
//! backend crate runs against itself.
//!
//! One line per test file generates one `#[test]` per case (they build their own tokio
//! runtime, so the backend crate needs no test dependencies of its own):
//!
//! ```no_run
//! // crates/kms-backend-foo/tests/contract.rs
//! # async fn my_backend() -> kms_core::mock::MemoryBackend { kms_core::mock::MemoryBackend::new() }
//! kms_core::backend_contract_tests!(async { my_backend().await });
//! # fn main() {}
//! ```
//!
//! The expression is evaluated once per case, so each case gets a fresh backend. It may yield
//! any `B: KmsBackend` or an `Arc<dyn KmsBackend>`. [`run_all`] runs the whole suite in the
//! caller's runtime and returns one [`CaseResult`] per case, for harnesses of their own.
//!
//! What is checked: every operation in every key state a caller can reach (Enabled, Disabled,
//! PendingDeletion), each refusal naming the key, its state and the operation; that a key of
//! external origin is refused as `Unsupported` unless the backend declares
//! `import_key_material`, and then the import of key material (BYOK, `import.rs`: parameters,
//! tokens, wrong length, tampering, re-import, deletion, expiry, new versions);
//! encryption-context binding (wrong, missing, extra context); wrong-key, tampered, truncated
//! and foreign ciphertexts; that [`KmsBackend::ciphertext_key_id`] names the key of every
//! ciphertext the backend makes and nothing for garbage; unknown keys; invalid ids, limits and deletion windows;
//! pagination (ascending ids, markers that survive deletion of their key, no duplicates or
//! skips while keys are created concurrently); idempotence rules; request validation through
//! the [`KmsManager`](crate::manager::KmsManager) every backend runs under (plaintext size,
//! metadata limits: [`crate::validate`]); concurrent creates and
//! data-key generation; and that an optional operation a backend does not declare in
//! [`KmsBackend::capabilities`] returns [`KmsError::Unsupported`](kms_types::KmsError::Unsupported).
//!
//! Keys made by the suite have random ids under a per-case prefix (`kct-<12 hex>-`), so it can
//! run against a shared server (Vault) again and again; at the end of a case every key it made
//! is scheduled for deletion (best effort).
//!
//! The expectations, in the AWS KMS model (`Refused` = [`KmsError::InvalidKeyState`](kms_types::KmsError::InvalidKeyState)). The
//! suite keeps this table of its own (`matrix.rs`) instead of reading
//! [`kms_types::operation`]'s, so it checks that table as much as the backends:
//!
//! | operation | Enabled | Disabled | PendingDeletion |
//! |---|---|---|---|
//! | encrypt, decrypt, generate data key (±plaintext), rotate, re-encrypt (source or destination) | ok | refused | refused |
//! | describe | ok | ok | ok |
//! | enable | ok (no-op) | ok → Enabled | refused |
//! | disable | ok → Disabled | ok (no-op) | refused |
//! | delete (schedule) | ok | ok | refused |
//! | cancel deletion | refused | refused | ok → Disabled |
//! | update description, tag, untag | ok | ok | refused |
//!
//! The suite's files: this one (the runner and the one list of cases), `ctx.rs` (the per-case
//! machinery), `matrix.rs` (the state matrix), and the cases by theme: `keys.rs` (creation,
//! ids, lifecycle, metadata), `crypto.rs` (ciphertexts and data keys), `listing.rs`,
//! `validation.rs` (through the manager) and `testkit_aliases.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::KmsBackend;

/// How long one case may run before it counts as failed (a hung backend must not hang CI).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of one contract case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name (also the name of its generated test).
    pub name: &'static str,
    /// `Err` carries what the backend did wrong.
    pub outcome: std::result::Result<(), String>,
}

impl CaseResult {
    /// Whether the backend passed this case.
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(()) => write!(f, "{}: ok", self.name),
            Err(why) => write!(f, "{}: FAILED: {why}", self.name),
        }
    }
}

/// What a builder may yield: a backend by value or an already shared `Arc<dyn KmsBackend>`.
pub trait IntoSharedBackend {
    /// The backend behind an `Arc`.
    fn into_shared(self) -> Arc<dyn KmsBackend>;
}

impl<B: KmsBackend + 'static> IntoSharedBackend for B {
    fn into_shared(self) -> Arc<dyn KmsBackend> {
        Arc::new(self)
    }
}

impl IntoSharedBackend for Arc<dyn KmsBackend> {
    fn into_shared(self) -> Arc<dyn KmsBackend> {
        self
    }
}

/// The names of every case, in the order [`run_all`] runs them.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|c| c.name).collect()
}

/// Runs one case against `backend`, under [`CASE_TIMEOUT`], then schedules deletion of the
/// keys the case made.
pub async fn run_case(name: &str, backend: impl IntoSharedBackend) -> CaseResult {
    let Some(case) = CASES.iter().find(|c| c.name == name) else {
        panic!("no contract case named {name:?}; known cases: {:?}", case_names());
    };
    let ctx = match Ctx::new(backend.into_shared()) {
        Ok(ctx) => ctx,
        Err(why) => return CaseResult { name: case.name, outcome: Err(why) },
    };
    let outcome = match tokio::time::timeout(CASE_TIMEOUT, (case.run)(ctx.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("did not finish within {CASE_TIMEOUT:?}")),
    };
    ctx.cleanup().await;
    CaseResult { name: case.name, outcome }
}

/// Runs every case, each against a fresh backend from `builder`, one after the other.
pub async fn run_all<F, Fut, B>(builder: F) -> Vec<CaseResult>
where
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
    B: IntoSharedBackend,
{
    let mut results = Vec::with_capacity(CASES.len());
    for case in CASES {
        results.push(run_case(case.name, builder().await).await);
    }
    results
}

/// Runs one case on a fresh two-worker tokio runtime and panics if it fails. This is what
/// the tests generated by [`backend_contract_tests!`](crate::backend_contract_tests) call.
pub fn run_case_blocking<Fut, B>(name: &str, builder: Fut)
where
    Fut: Future<Output = B>,
    B: IntoSharedBackend,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime for the contract case");
    let result = runtime.block_on(async { run_case(name, builder.await).await });
    if let Err(why) = result.outcome {
        panic!("backend contract case `{name}` failed: {why}");
    }
}

/// Generates one `#[test]` per contract case, in a module `kms_backend_contract`.
///
/// The argument is an expression (usually an `async` block) yielding the backend under test;
/// it is evaluated once per case. See the [`testkit`](crate::testkit) module.
#[macro_export]
macro_rules! backend_contract_tests {
    ($builder:expr $(,)?) => {
        $crate::__kms_contract_cases!(@tests $builder);
    };
}

/// The one list of contract cases, expanded into the generated tests (`@tests`) and into the
/// suite's case table (`@consts`).
#[doc(hidden)]
#[macro_export]
macro_rules! __kms_contract_cases {
    (@expand tests $builder:expr; $($case:ident,)*) => {
        #[cfg(test)]
        mod kms_backend_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::testkit::run_case_blocking(stringify!($case), $builder);
                }
            )*
        }
    };
    (@expand consts; $($case:ident,)*) => {
        const CASES: &[Case] = &[$(Case { name: stringify!($case), run: |ctx| Box::pin($case(ctx)) }),*];
    };
    (@$mode:ident $($builder:expr)?) => {
        $crate::__kms_contract_cases!(@expand $mode $($builder)?;
            create_key_returns_enabled_metadata,
            create_key_generates_unique_valid_ids,
            create_existing_key_fails,
            invalid_ids_are_invalid_requests,
            unknown_keys_are_not_found,
            encrypt_decrypt_round_trip,
            encrypt_enforces_plaintext_limit,
            empty_plaintext_is_refused,
            encryption_context_is_bound,
            wrong_key_ciphertexts_fail,
            tampered_ciphertexts_fail,
            ciphertexts_name_their_key,
            generate_data_key_round_trip,
            generate_data_key_without_plaintext,
            enabled_key_operations,
            disabled_key_operations,
            pending_deletion_key_operations,
            external_origin_is_unsupported,
            import_key_material_lifecycle,
            import_refuses_bad_tokens_and_material,
            imported_material_expires,
            import_new_version,
            delete_key_schedules_deletion,
            delete_key_rejects_bad_windows,
            cancel_deletion_leaves_key_disabled,
            repeated_lifecycle_calls,
            rotation_keeps_old_versions_decrypting,
            re_encrypt_moves_ciphertexts,
            description_and_tags,
            metadata_limits_hold_through_the_manager,
            list_keys_pages_in_ascending_order,
            list_keys_rejects_bad_limits,
            list_marker_survives_deletes,
            list_keys_under_concurrent_creates,
            list_keys_with_a_prefix,
            the_longest_key_id_is_storable,
            concurrent_creates,
            concurrent_data_keys,
            capabilities_gate_optional_operations,
            aliases_resolve_move_and_delete,
            aliases_list_in_name_order,
            health_check_reports_healthy,
        );
    };
}

// ---------------------------------------------------------------------------------------------
// The case table

type Outcome = std::result::Result<(), String>;
type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Case {
    name: &'static str,
    run: fn(Ctx) -> CaseFuture,
}

crate::__kms_contract_cases!(@consts);

/// `return Err(message)` unless `cond` holds: the assertion every case is written with.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

#[path = "testkit_aliases.rs"]
mod aliases;
mod crypto;
mod ctx;
mod import;
mod keys;
mod listing;
mod matrix;
mod validation;

use aliases::{aliases_list_in_name_order, aliases_resolve_move_and_delete};
use crypto::*;
use ctx::Ctx;
use import::*;
// What `testkit_aliases.rs` reaches through `super::`.
use ctx::{err, is_invalid_request, is_not_found, is_unsupported, ok};
use keys::*;
use listing::*;
use matrix::*;
use validation::*;
