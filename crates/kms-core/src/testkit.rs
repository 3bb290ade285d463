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
//! What is checked: every operation in every reachable key state (Enabled, Disabled,
//! PendingDeletion, and PendingImport when the backend accepts `KeyOrigin::External`);
//! encryption-context binding (wrong, missing, extra context); wrong-key, tampered, truncated
//! and foreign ciphertexts; that [`KmsBackend::ciphertext_key_id`] names the key of every
//! ciphertext the backend makes and nothing for garbage; unknown keys; invalid ids, limits and deletion windows;
//! pagination (ascending ids, markers that survive deletion of their key, no duplicates or
//! skips while keys are created concurrently); idempotence rules; concurrent creates and
//! data-key generation; and that an optional operation a backend does not declare in
//! [`KmsBackend::capabilities`] returns [`KmsError::Unsupported`].
//!
//! Keys made by the suite have random ids under a per-case prefix (`kct-<12 hex>-`), so it can
//! run against a shared server (Vault) again and again; at the end of a case every key it made
//! is scheduled for deletion (best effort).
//!
//! The expectations, in the AWS KMS model (`Refused` = [`KmsError::InvalidKeyState`]):
//!
//! | operation | Enabled | Disabled | PendingDeletion | PendingImport |
//! |---|---|---|---|---|
//! | encrypt, decrypt, generate data key (±plaintext), rotate, re-encrypt (source or destination) | ok | refused | refused | refused |
//! | describe | ok | ok | ok | ok |
//! | enable | ok (no-op) | ok → Enabled | refused | refused |
//! | disable | ok → Disabled | ok (no-op) | refused | refused |
//! | delete (schedule) | ok | ok | refused | ok |
//! | cancel deletion | refused | refused | ok → Disabled | refused |
//! | update description, tag, untag | ok | ok | refused | ok |

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_types::error::{KmsError, Result};
use kms_types::secret::SecretBytes;
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest,
    DescribeKeyRequest, EncryptRequest, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyWithoutPlaintextRequest, KeyIdRequest, KeyMetadata, KeyOrigin, KeySpec, KeyState, ListKeysRequest,
    ListKeysResponse, MAX_ENCRYPT_PLAINTEXT_BYTES, MAX_KEY_ID_LEN, MAX_LIST_LIMIT, ReEncryptRequest, TagKeyRequest,
    Tags, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_key_id,
};
use time::OffsetDateTime;

use crate::backends::KmsBackend;
use crate::manager::{KmsManager, ManagerOptions};

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
            encryption_context_is_bound,
            wrong_key_ciphertexts_fail,
            tampered_ciphertexts_fail,
            ciphertexts_name_their_key,
            generate_data_key_round_trip,
            generate_data_key_without_plaintext,
            enabled_key_operations,
            disabled_key_operations,
            pending_deletion_key_operations,
            pending_import_key_operations,
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
// Machinery

type Outcome = std::result::Result<(), String>;
type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Case {
    name: &'static str,
    run: fn(Ctx) -> CaseFuture,
}

crate::__kms_contract_cases!(@consts);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

#[path = "testkit_aliases.rs"]
mod aliases;
use aliases::{aliases_list_in_name_order, aliases_resolve_move_and_delete};

/// The state shared by one case: the backend, the id prefix and the keys to clean up.
#[derive(Clone)]
struct Ctx {
    backend: Arc<dyn KmsBackend>,
    caps: BackendCapabilities,
    prefix: String,
    created: Arc<Mutex<Vec<String>>>,
}

fn random_hex(bytes: usize) -> std::result::Result<String, String> {
    let mut raw = vec![0u8; bytes];
    kms_crypto::rand::fill(&mut raw).map_err(|e| e.to_string())?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

impl Ctx {
    fn new(backend: Arc<dyn KmsBackend>) -> std::result::Result<Self, String> {
        let caps = backend.capabilities();
        Ok(Self { backend, caps, prefix: format!("kct-{}-", random_hex(6)?), created: Arc::default() })
    }

    fn id(&self, label: &str) -> String {
        format!("{}{label}", self.prefix)
    }

    fn track(&self, key_id: &str) {
        self.created.lock().unwrap_or_else(|p| p.into_inner()).push(key_id.to_owned());
    }

    async fn create_with(&self, label: &str, request: CreateKeyRequest) -> Result<KeyMetadata> {
        let id = self.id(label);
        let response = self.backend.create_key(CreateKeyRequest { key_name: Some(id.clone()), ..request }).await;
        if response.is_ok() {
            self.track(&id);
        }
        response.map(|r| r.key_metadata)
    }

    async fn create(&self, label: &str) -> std::result::Result<String, String> {
        let meta = ok(format!("create_key({label})"), self.create_with(label, CreateKeyRequest::default()).await)?;
        Ok(meta.key_id)
    }

    async fn describe(&self, key_id: &str) -> std::result::Result<KeyMetadata, String> {
        let r = self.backend.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await;
        ok(format!("describe_key({key_id})"), r).map(|r| r.key_metadata)
    }

    async fn expect_state(&self, key_id: &str, state: KeyState, after: &str) -> Outcome {
        let meta = self.describe(key_id).await?;
        ensure!(meta.key_state == state, "after {after}, {key_id} is {} (expected {state})", meta.key_state);
        Ok(())
    }

    async fn encrypt(&self, key_id: &str, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>> {
        self.backend
            .encrypt(EncryptRequest {
                key_id: key_id.into(),
                plaintext: plaintext.into(),
                encryption_context: context.clone(),
            })
            .await
            .map(|r| r.ciphertext_blob)
    }

    async fn decrypt(&self, blob: &[u8], context: &EncryptionContext, key_id: Option<&str>) -> Result<SecretBytes> {
        self.backend
            .decrypt(DecryptRequest {
                ciphertext_blob: blob.to_vec(),
                encryption_context: context.clone(),
                key_id: key_id.map(str::to_owned),
            })
            .await
            .map(|r| r.plaintext)
    }

    async fn delete(&self, key_id: &str, days: Option<u32>) -> Result<()> {
        self.backend
            .delete_key(DeleteKeyRequest { key_id: key_id.into(), pending_window_in_days: days })
            .await
            .map(|_| ())
    }

    async fn cancel(&self, key_id: &str) -> Result<()> {
        self.backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: key_id.into() }).await.map(|_| ())
    }

    /// A fresh key in `state`, and (when it was reachable through `Enabled`) a ciphertext of
    /// `b"contract"` made under it with an empty context. `None`: the state is unreachable on
    /// this backend (only `PendingImport`, when `KeyOrigin::External` is not accepted).
    async fn key_in(
        &self,
        label: &str,
        state: KeyState,
    ) -> std::result::Result<Option<(String, Option<Vec<u8>>)>, String> {
        if state == KeyState::PendingImport {
            let request = CreateKeyRequest { origin: Some(KeyOrigin::External), ..Default::default() };
            return match self.create_with(label, request).await {
                Ok(meta) => {
                    ensure!(
                        meta.key_state == KeyState::PendingImport,
                        "a key created with origin External is {} (expected PendingImport)",
                        meta.key_state
                    );
                    self.expect_state(&meta.key_id, KeyState::PendingImport, "create_key(External)").await?;
                    Ok(Some((meta.key_id, None)))
                }
                Err(KmsError::Unsupported { .. } | KmsError::InvalidRequest { .. }) => Ok(None),
                Err(e) => Err(format!("create_key(origin External) must succeed or be Unsupported, got {e:?}")),
            };
        }
        let key_id = self.create(label).await?;
        let blob = ok("encrypt(Enabled key)", self.encrypt(&key_id, b"contract", &EncryptionContext::new()).await)?;
        match state {
            KeyState::Enabled => {}
            KeyState::Disabled if self.caps.enable_disable => {
                ok("disable_key", self.backend.disable_key(KeyIdRequest { key_id: key_id.clone() }).await)?;
            }
            KeyState::Disabled => {
                ok("delete_key", self.delete(&key_id, Some(7)).await)?;
                ok("cancel_key_deletion", self.cancel(&key_id).await)?;
            }
            KeyState::PendingDeletion => ok("delete_key", self.delete(&key_id, Some(7)).await)?,
            other => return Err(format!("the suite cannot put a key in state {other}")),
        }
        self.expect_state(&key_id, state, "setting it up").await?;
        Ok(Some((key_id, Some(blob))))
    }

    async fn cleanup(&self) {
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for id in ids {
            // Best effort: keys already pending deletion (or gone) are fine.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.delete(&id, Some(7))).await;
        }
    }
}

fn ok<T>(what: impl fmt::Display, result: Result<T>) -> std::result::Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e:?}"))
}

fn err<T: fmt::Debug>(
    what: impl fmt::Display,
    result: Result<T>,
    expected: &str,
    pred: impl FnOnce(&KmsError) -> bool,
) -> std::result::Result<KmsError, String> {
    match result {
        Ok(v) => Err(format!("{what} must fail with {expected}, but succeeded: {v:?}")),
        Err(e) if pred(&e) => Ok(e),
        Err(e) => Err(format!("{what} must fail with {expected}, got {e:?}")),
    }
}

fn is_crypto(e: &KmsError) -> bool {
    matches!(e, KmsError::Crypto { .. })
}
fn is_unsupported(e: &KmsError) -> bool {
    matches!(e, KmsError::Unsupported { .. })
}
fn is_invalid_request(field: &'static str) -> impl Fn(&KmsError) -> bool {
    move |e| matches!(e, KmsError::InvalidRequest { field: f, .. } if f == field)
}
fn is_not_found(key_id: &str) -> impl Fn(&KmsError) -> bool + '_ {
    move |e| matches!(e, KmsError::KeyNotFound { key_id: k } if k == key_id)
}
fn is_invalid_state(key_id: &str, state: KeyState) -> impl Fn(&KmsError) -> bool + '_ {
    move |e| matches!(e, KmsError::InvalidKeyState { key_id: k, state: s, .. } if k == key_id && *s == state)
}

fn ctx_of(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

// ---------------------------------------------------------------------------------------------
// The optional operations and the state matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Encrypt,
    Decrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    Describe,
    Enable,
    Disable,
    Delete,
    Cancel,
    Rotate,
    ReEncryptSource,
    ReEncryptDestination,
    UpdateDescription,
    Tag,
    Untag,
}

const ALL_OPS: &[Op] = &[
    Op::Encrypt,
    Op::Decrypt,
    Op::GenerateDataKey,
    Op::GenerateDataKeyWithoutPlaintext,
    Op::Describe,
    Op::Enable,
    Op::Disable,
    Op::Delete,
    Op::Cancel,
    Op::Rotate,
    Op::ReEncryptSource,
    Op::ReEncryptDestination,
    Op::UpdateDescription,
    Op::Tag,
    Op::Untag,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Succeeds; the key is then in this state.
    Ok(KeyState),
    /// `InvalidKeyState` naming the key and its state; the state does not change.
    Refused,
    /// `Unsupported`: the backend does not declare the capability.
    Unsupported,
}

impl Op {
    /// Whether the backend declares this operation (the nine required ones always are).
    fn supported(self, caps: BackendCapabilities) -> bool {
        match self {
            Op::GenerateDataKeyWithoutPlaintext => caps.data_key_without_plaintext,
            Op::Enable | Op::Disable => caps.enable_disable,
            Op::Rotate => caps.rotate,
            Op::ReEncryptSource | Op::ReEncryptDestination => caps.re_encrypt,
            Op::UpdateDescription => caps.update_description,
            Op::Tag | Op::Untag => caps.tags,
            _ => true,
        }
    }

    fn expect(self, state: KeyState, caps: BackendCapabilities) -> Expect {
        use KeyState::{Disabled, Enabled, PendingDeletion};
        if !self.supported(caps) {
            return Expect::Unsupported;
        }
        let allowed = match self {
            Op::Describe => return Expect::Ok(state),
            Op::Enable => matches!(state, Enabled | Disabled).then_some(Enabled),
            Op::Disable => matches!(state, Enabled | Disabled).then_some(Disabled),
            Op::Delete => (state != PendingDeletion).then_some(PendingDeletion),
            Op::Cancel => (state == PendingDeletion).then_some(Disabled),
            Op::UpdateDescription | Op::Tag | Op::Untag => (state != PendingDeletion).then_some(state),
            _ => (state == Enabled).then_some(Enabled),
        };
        allowed.map_or(Expect::Refused, Expect::Ok)
    }

    /// Runs the operation on `key_id` (for `ReEncryptSource`/`Decrypt`, on `blob`, a ciphertext
    /// of that key; for `ReEncryptDestination`, moving `other_blob` to `key_id`).
    async fn run(self, ctx: &Ctx, key_id: &str, blob: &[u8], other_blob: &[u8]) -> Result<String> {
        let b = &ctx.backend;
        let id = || KeyIdRequest { key_id: key_id.to_owned() };
        let empty = EncryptionContext::new;
        let shown = |v: &dyn fmt::Debug| format!("{v:?}");
        Ok(match self {
            Op::Encrypt => shown(&ctx.encrypt(key_id, b"x", &empty()).await?.len()),
            Op::Decrypt => shown(&ctx.decrypt(blob, &empty(), None).await?.len()),
            Op::GenerateDataKey => shown(
                &b.generate_data_key(GenerateDataKeyRequest {
                    key_id: key_id.into(),
                    key_spec: KeySpec::Aes256,
                    encryption_context: empty(),
                })
                .await?
                .key_id,
            ),
            Op::GenerateDataKeyWithoutPlaintext => shown(
                &b.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                    key_id: key_id.into(),
                    key_spec: KeySpec::Aes256,
                    encryption_context: empty(),
                })
                .await?,
            ),
            Op::Describe => shown(&b.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await?),
            Op::Enable => shown(&b.enable_key(id()).await?),
            Op::Disable => shown(&b.disable_key(id()).await?),
            Op::Delete => shown(&ctx.delete(key_id, Some(7)).await?),
            Op::Cancel => shown(&ctx.cancel(key_id).await?),
            Op::Rotate => shown(&b.rotate_key(id()).await?),
            Op::ReEncryptSource => shown(&b.re_encrypt(re_encrypt_request(blob, None)).await?),
            Op::ReEncryptDestination => {
                shown(&b.re_encrypt(re_encrypt_request(other_blob, Some(key_id.to_owned()))).await?)
            }
            Op::UpdateDescription => shown(
                &b.update_key_description(UpdateKeyDescriptionRequest {
                    key_id: key_id.into(),
                    description: "changed by the contract suite".into(),
                })
                .await?,
            ),
            Op::Tag => shown(&b.tag_key(TagKeyRequest { key_id: key_id.into(), tags: ctx_of(&[("t", "v")]) }).await?),
            Op::Untag => {
                shown(&b.untag_key(UntagKeyRequest { key_id: key_id.into(), tag_keys: vec!["t".into()] }).await?)
            }
        })
    }
}

fn re_encrypt_request(blob: &[u8], destination_key_id: Option<String>) -> ReEncryptRequest {
    ReEncryptRequest {
        ciphertext_blob: blob.to_vec(),
        source_encryption_context: EncryptionContext::new(),
        destination_key_id,
        destination_encryption_context: None,
    }
}

/// Every operation on a fresh key in `state`.
async fn state_matrix(ctx: Ctx, state: KeyState) -> Outcome {
    let helper = ctx.create("matrix-helper").await?;
    let helper_blob = ok("encrypt(helper)", ctx.encrypt(&helper, b"contract", &EncryptionContext::new()).await)?;
    for (n, op) in ALL_OPS.iter().copied().enumerate() {
        let Some((key_id, blob)) = ctx.key_in(&format!("m{n:02}"), state).await? else {
            return Ok(()); // state unreachable on this backend
        };
        let Some(blob) = blob.or_else(|| (!matches!(op, Op::Decrypt | Op::ReEncryptSource)).then(Vec::new)) else {
            continue; // no ciphertext can exist for a key that never had material
        };
        let what = format!("{op:?} on a {state} key");
        let result = op.run(&ctx, &key_id, &blob, &helper_blob).await;
        match op.expect(state, ctx.caps) {
            Expect::Ok(after) => {
                ok(&what, result)?;
                ctx.expect_state(&key_id, after, &what).await?;
            }
            Expect::Refused => {
                err(&what, result, "InvalidKeyState", is_invalid_state(&key_id, state))?;
                ctx.expect_state(&key_id, state, &what).await?;
            }
            Expect::Unsupported => {
                err(&what, result, "Unsupported (not in capabilities())", is_unsupported)?;
                ctx.expect_state(&key_id, state, &what).await?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The cases

async fn create_key_returns_enabled_metadata(ctx: Ctx) -> Outcome {
    let tags: Tags = ctx_of(&[("team", "storage"), ("env", "test")]);
    let before = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let request =
        CreateKeyRequest { description: Some("contract key".into()), tags: tags.clone(), ..Default::default() };
    let meta = ok("create_key", ctx.create_with("meta", request).await)?;
    let id = ctx.id("meta");
    ensure!(meta.key_id == id, "created key id is {:?}, asked for {id:?}", meta.key_id);
    ensure!(meta.key_state == KeyState::Enabled, "a new key is {} (expected Enabled)", meta.key_state);
    ensure!(meta.current_version == 1, "a new key has version {} (expected 1)", meta.current_version);
    ensure!(meta.description.as_deref() == Some("contract key"), "description not kept: {:?}", meta.description);
    ensure!(meta.tags == tags, "tags not kept: {:?}", meta.tags);
    ensure!(meta.deletion_date.is_none() && meta.rotation_date.is_none(), "a new key has dates set: {meta:?}");
    ensure!(
        meta.creation_date >= before && meta.creation_date <= OffsetDateTime::now_utc() + time::Duration::minutes(5),
        "creation date {} is not now",
        meta.creation_date
    );
    let described = ctx.describe(&id).await?;
    ensure!(described == meta, "describe_key differs from create_key: {described:?} vs {meta:?}");
    Ok(())
}

async fn create_key_generates_unique_valid_ids(ctx: Ctx) -> Outcome {
    let mut ids = BTreeSet::new();
    for _ in 0..8 {
        let created = ok("create_key(no name)", ctx.backend.create_key(CreateKeyRequest::default()).await)?;
        ctx.track(&created.key_id);
        ensure!(created.key_id == created.key_metadata.key_id, "response and metadata disagree on the id");
        ok(
            format!("generated id {:?} must be a valid key id", created.key_id),
            validate_key_id("key_id", &created.key_id),
        )?;
        ensure!(ids.insert(created.key_id.clone()), "generated id {} twice", created.key_id);
        ctx.describe(&created.key_id).await?;
    }
    Ok(())
}

async fn create_existing_key_fails(ctx: Ctx) -> Outcome {
    let id = ctx.create("dup").await?;
    let blob = ok("encrypt", ctx.encrypt(&id, b"keep me", &EncryptionContext::new()).await)?;
    let again =
        ctx.create_with("dup", CreateKeyRequest { description: Some("other".into()), ..Default::default() }).await;
    err(
        "create_key of an existing id",
        again,
        "KeyAlreadyExists",
        |e| matches!(e, KmsError::KeyAlreadyExists { key_id } if *key_id == id),
    )?;
    let plain = ok("decrypt after a refused re-create", ctx.decrypt(&blob, &EncryptionContext::new(), None).await)?;
    ensure!(plain.expose_secret() == b"keep me", "a refused re-create changed the key's material");
    ensure!(ctx.describe(&id).await?.description.is_none(), "a refused re-create changed the description");
    Ok(())
}

const BAD_IDS: &[&str] = &["", "a/b", "../etc", "a b", ".hidden", "ключ"];

async fn invalid_ids_are_invalid_requests(ctx: Ctx) -> Outcome {
    let b = &ctx.backend;
    for bad in BAD_IDS.iter().copied().map(str::to_owned).chain(["x".repeat(257)]) {
        let bad = bad.as_str();
        let r = b.create_key(CreateKeyRequest { key_name: Some(bad.into()), ..Default::default() }).await;
        if let Ok(created) = &r {
            ctx.track(&created.key_id);
        }
        err(format!("create_key({bad:?})"), r, "InvalidRequest(key_name)", is_invalid_request("key_name"))?;
        let check = |what: &str, r: Result<String>| -> Outcome {
            err(format!("{what}({bad:?})"), r, "InvalidRequest(key_id)", is_invalid_request("key_id")).map(|_| ())
        };
        check(
            "describe_key",
            b.describe_key(DescribeKeyRequest { key_id: bad.into() }).await.map(|r| format!("{r:?}")),
        )?;
        check("encrypt", ctx.encrypt(bad, b"x", &EncryptionContext::new()).await.map(|r| format!("{r:?}")))?;
        check(
            "generate_data_key",
            b.generate_data_key(GenerateDataKeyRequest {
                key_id: bad.into(),
                key_spec: KeySpec::Aes256,
                encryption_context: EncryptionContext::new(),
            })
            .await
            .map(|r| format!("{r:?}")),
        )?;
        check("delete_key", ctx.delete(bad, None).await.map(|r| format!("{r:?}")))?;
        check("cancel_key_deletion", ctx.cancel(bad).await.map(|r| format!("{r:?}")))?;
    }
    Ok(())
}

async fn unknown_keys_are_not_found(ctx: Ctx) -> Outcome {
    let missing = ctx.id("never-created");
    let other = ctx.create("known").await?;
    let other_blob = ok("encrypt", ctx.encrypt(&other, b"x", &EncryptionContext::new()).await)?;
    for op in ALL_OPS.iter().copied() {
        if matches!(op, Op::Decrypt | Op::ReEncryptSource) {
            continue; // these take a ciphertext, not an id
        }
        let what = format!("{op:?} on an unknown key");
        let result = op.run(&ctx, &missing, &[], &other_blob).await;
        if op.supported(ctx.caps) {
            err(&what, result, "KeyNotFound naming the key", is_not_found(&missing))?;
        } else {
            err(&what, result, "Unsupported", is_unsupported)?;
        }
    }
    Ok(())
}

async fn encrypt_decrypt_round_trip(ctx: Ctx) -> Outcome {
    let id = ctx.create("rt").await?;
    let context = ctx_of(&[("bucket", "b1"), ("object", "o/1")]);
    for len in [1usize, 16, 1000, MAX_ENCRYPT_PLAINTEXT_BYTES] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let response = ok(
            format!("encrypt({len} bytes)"),
            ctx.backend
                .encrypt(EncryptRequest {
                    key_id: id.clone(),
                    plaintext: plaintext.as_slice().into(),
                    encryption_context: context.clone(),
                })
                .await,
        )?;
        ensure!(
            response.key_id == id && response.key_version == 1,
            "encrypt named {}/v{}",
            response.key_id,
            response.key_version
        );
        ensure!(
            len < 16 || !response.ciphertext_blob.windows(16).any(|w| w == &plaintext[..16]),
            "the ciphertext contains the plaintext"
        );
        let opened = ok(
            "decrypt",
            ctx.backend
                .decrypt(DecryptRequest {
                    ciphertext_blob: response.ciphertext_blob.clone(),
                    encryption_context: context.clone(),
                    key_id: Some(id.clone()),
                })
                .await,
        )?;
        ensure!(
            opened.key_id == id && opened.key_version == 1,
            "decrypt named {}/v{}",
            opened.key_id,
            opened.key_version
        );
        ensure!(opened.plaintext.expose_secret() == plaintext, "decrypt returned different bytes ({len} bytes)");
        let again = ok("decrypt without key id", ctx.decrypt(&response.ciphertext_blob, &context, None).await)?;
        ensure!(again.expose_secret() == plaintext, "decrypt without key id returned different bytes");
    }
    let a = ok("encrypt", ctx.encrypt(&id, b"same", &context).await)?;
    let b = ok("encrypt", ctx.encrypt(&id, b"same", &context).await)?;
    ensure!(a != b, "two encryptions of the same plaintext are identical (no random nonce?)");
    Ok(())
}

async fn encrypt_enforces_plaintext_limit(ctx: Ctx) -> Outcome {
    let id = ctx.create("limit").await?;
    ok("encrypt(4096 bytes)", ctx.encrypt(&id, &[7u8; MAX_ENCRYPT_PLAINTEXT_BYTES], &EncryptionContext::new()).await)?;
    let r = ctx.encrypt(&id, &[7u8; MAX_ENCRYPT_PLAINTEXT_BYTES + 1], &EncryptionContext::new()).await;
    err("encrypt(4097 bytes)", r, "InvalidRequest(plaintext)", is_invalid_request("plaintext"))?;
    Ok(())
}

async fn encryption_context_is_bound(ctx: Ctx) -> Outcome {
    let id = ctx.create("ctx").await?;
    let good = ctx_of(&[("bucket", "b1"), ("object", "o1")]);
    let wrong: [(&str, EncryptionContext); 5] = [
        ("a missing context", EncryptionContext::new()),
        ("a wrong value", ctx_of(&[("bucket", "b1"), ("object", "o2")])),
        ("a missing pair", ctx_of(&[("bucket", "b1")])),
        ("an extra pair", ctx_of(&[("bucket", "b1"), ("object", "o1"), ("x", "y")])),
        ("swapped keys and values", ctx_of(&[("b1", "bucket"), ("o1", "object")])),
    ];
    let blob = ok("encrypt", ctx.encrypt(&id, b"bound", &good).await)?;
    let data_key = ok(
        "generate_data_key",
        ctx.backend
            .generate_data_key(GenerateDataKeyRequest {
                key_id: id.clone(),
                key_spec: KeySpec::Aes256,
                encryption_context: good.clone(),
            })
            .await,
    )?;
    for (what, blob) in [("encrypt", &blob), ("generate_data_key", &data_key.ciphertext_blob)] {
        ok(format!("decrypt of {what} output with its context"), ctx.decrypt(blob, &good, None).await)?;
        for (how, context) in &wrong {
            let r = ctx.decrypt(blob, context, None).await;
            err(format!("decrypt of {what} output with {how}"), r, "Crypto", is_crypto)?;
        }
    }
    let unbound = ok("encrypt(no context)", ctx.encrypt(&id, b"free", &EncryptionContext::new()).await)?;
    err(
        "decrypt of a context-free ciphertext with a context",
        ctx.decrypt(&unbound, &good, None).await,
        "Crypto",
        is_crypto,
    )?;
    Ok(())
}

async fn wrong_key_ciphertexts_fail(ctx: Ctx) -> Outcome {
    let a = ctx.create("key-a").await?;
    let b = ctx.create("key-b").await?;
    let blob = ok("encrypt", ctx.encrypt(&a, b"for a", &EncryptionContext::new()).await)?;
    ok("decrypt naming the right key", ctx.decrypt(&blob, &EncryptionContext::new(), Some(&a)).await)?;
    let r = ctx.decrypt(&blob, &EncryptionContext::new(), Some(&b)).await;
    err("decrypt naming another key", r, "Crypto", is_crypto)?;
    Ok(())
}

fn allowed_for_garbage(e: &KmsError) -> bool {
    matches!(e, KmsError::Crypto { .. } | KmsError::InvalidRequest { .. } | KmsError::KeyNotFound { .. })
}

async fn tampered_ciphertexts_fail(ctx: Ctx) -> Outcome {
    let id = ctx.create("tamper").await?;
    let context = ctx_of(&[("k", "v")]);
    let blob = ok("encrypt", ctx.encrypt(&id, &[42u8; 32], &context).await)?;
    let expected = "Crypto, InvalidRequest or KeyNotFound";
    let positions: Vec<usize> = if blob.len() <= 256 {
        (0..blob.len()).collect()
    } else {
        (0..64).chain((64..blob.len() - 32).step_by(17)).chain(blob.len() - 32..blob.len()).collect()
    };
    for pos in positions {
        let mut bad = blob.clone();
        bad[pos] ^= 0x01;
        err(
            format!("decrypt with byte {pos} flipped"),
            ctx.decrypt(&bad, &context, None).await,
            expected,
            allowed_for_garbage,
        )?;
    }
    let mutants: [(&str, Vec<u8>); 5] = [
        ("an empty ciphertext", Vec::new()),
        ("the first half", blob[..blob.len() / 2].to_vec()),
        ("all but the last byte", blob[..blob.len() - 1].to_vec()),
        ("an appended byte", [blob.as_slice(), &[0]].concat()),
        ("random bytes", (0..64u8).map(|i| i.wrapping_mul(37)).collect()),
    ];
    for (what, bad) in mutants {
        err(format!("decrypt of {what}"), ctx.decrypt(&bad, &context, None).await, expected, allowed_for_garbage)?;
    }
    ok("decrypt of the untouched ciphertext", ctx.decrypt(&blob, &context, None).await)?;
    Ok(())
}

/// `ciphertext_key_id` names the key of every ciphertext the backend makes, and nothing for
/// bytes that are no ciphertext.
async fn ciphertexts_name_their_key(ctx: Ctx) -> Outcome {
    let a = ctx.create("named-a").await?;
    let b = ctx.create("named-b").await?;
    let context = ctx_of(&[("k", "v")]);
    let mut made: Vec<(String, &str, Vec<u8>)> = Vec::new();
    made.push(("encrypt".into(), a.as_str(), ok("encrypt", ctx.encrypt(&a, b"named", &context).await)?));
    made.push(("encrypt".into(), b.as_str(), ok("encrypt", ctx.encrypt(&b, b"named", &context).await)?));
    let dk = ctx
        .backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: a.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: context.clone(),
        })
        .await;
    made.push(("generate_data_key".into(), a.as_str(), ok("generate_data_key", dk)?.ciphertext_blob));
    if ctx.caps.data_key_without_plaintext {
        let dk = ctx
            .backend
            .generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                key_id: b.clone(),
                key_spec: KeySpec::Aes128,
                encryption_context: context.clone(),
            })
            .await;
        let blob = ok("generate_data_key_without_plaintext", dk)?.ciphertext_blob;
        made.push(("generate_data_key_without_plaintext".into(), b.as_str(), blob));
    }
    if ctx.caps.re_encrypt {
        let moved = ctx
            .backend
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: made[0].2.clone(),
                source_encryption_context: context.clone(),
                destination_key_id: Some(b.clone()),
                destination_encryption_context: None,
            })
            .await;
        made.push(("re_encrypt".into(), b.as_str(), ok("re_encrypt", moved)?.ciphertext_blob));
    }
    if ctx.caps.rotate {
        ok("rotate_key", ctx.backend.rotate_key(KeyIdRequest { key_id: a.clone() }).await)?;
        made.push((
            "encrypt after rotation".into(),
            a.as_str(),
            ok("encrypt", ctx.encrypt(&a, b"v2", &context).await)?,
        ));
    }
    for (how, key_id, blob) in &made {
        let named = ctx.backend.ciphertext_key_id(blob);
        ensure!(
            named.as_deref() == Some(*key_id),
            "ciphertext_key_id of a ciphertext from {how} under {key_id} is {named:?}"
        );
    }
    let garbage: [(&str, Vec<u8>); 4] = [
        ("an empty blob", Vec::new()),
        ("one byte", vec![0]),
        ("random bytes", (0..64u8).map(|i| i.wrapping_mul(37)).collect()),
        ("text", b"not a ciphertext at all".to_vec()),
    ];
    for (what, bytes) in garbage {
        let named = ctx.backend.ciphertext_key_id(&bytes);
        ensure!(named.is_none(), "ciphertext_key_id of {what} is {named:?} (expected None)");
    }
    Ok(())
}

async fn generate_data_key_round_trip(ctx: Ctx) -> Outcome {
    let id = ctx.create("dk").await?;
    let context = ctx_of(&[("bucket", "b")]);
    for spec in [KeySpec::Aes256, KeySpec::Aes128] {
        let dk = ok(
            format!("generate_data_key({spec:?})"),
            ctx.backend
                .generate_data_key(GenerateDataKeyRequest {
                    key_id: id.clone(),
                    key_spec: spec,
                    encryption_context: context.clone(),
                })
                .await,
        )?;
        ensure!(dk.key_id == id && dk.key_version == 1, "generate_data_key named {}/v{}", dk.key_id, dk.key_version);
        ensure!(dk.plaintext_key.len() == spec.key_len(), "{spec:?} data key has {} bytes", dk.plaintext_key.len());
        ensure!(dk.plaintext_key.expose_secret().iter().any(|&b| b != 0), "the data key is all zeros");
        let opened =
            ok("decrypt of the wrapped data key", ctx.decrypt(&dk.ciphertext_blob, &context, Some(&id)).await)?;
        ensure!(
            opened.expose_secret() == dk.plaintext_key.expose_secret(),
            "the wrapped data key unwraps to another key"
        );
    }
    Ok(())
}

async fn generate_data_key_without_plaintext(ctx: Ctx) -> Outcome {
    let id = ctx.create("dkw").await?;
    let context = ctx_of(&[("bucket", "b")]);
    let r = ctx
        .backend
        .generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
            key_id: id.clone(),
            key_spec: KeySpec::Aes128,
            encryption_context: context.clone(),
        })
        .await;
    if !ctx.caps.data_key_without_plaintext {
        err("generate_data_key_without_plaintext", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    let dk = ok("generate_data_key_without_plaintext", r)?;
    ensure!(dk.key_id == id && dk.key_version == 1, "named {}/v{}", dk.key_id, dk.key_version);
    let opened = ok("decrypt of the wrapped data key", ctx.decrypt(&dk.ciphertext_blob, &context, None).await)?;
    ensure!(opened.len() == 16, "an Aes128 data key unwraps to {} bytes", opened.len());
    err(
        "decrypt with a wrong context",
        ctx.decrypt(&dk.ciphertext_blob, &EncryptionContext::new(), None).await,
        "Crypto",
        is_crypto,
    )?;
    Ok(())
}

async fn enabled_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::Enabled).await
}

async fn disabled_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::Disabled).await
}

async fn pending_deletion_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::PendingDeletion).await
}

async fn pending_import_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::PendingImport).await
}

async fn delete_key_schedules_deletion(ctx: Ctx) -> Outcome {
    for (label, days, expected_days) in [("del-default", None, 30i64), ("del-7", Some(7), 7), ("del-30", Some(30), 30)]
    {
        let id = ctx.create(label).await?;
        let before = OffsetDateTime::now_utc();
        let response = ok(
            format!("delete_key({days:?})"),
            ctx.backend.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: days }).await,
        )?;
        let after = OffsetDateTime::now_utc();
        ensure!(
            response.key_id == id && response.key_state == KeyState::PendingDeletion,
            "delete_key returned {response:?}"
        );
        let window = time::Duration::days(expected_days);
        let slack = time::Duration::minutes(5);
        ensure!(
            response.deletion_date >= before + window - slack && response.deletion_date <= after + window + slack,
            "deletion date {} is not {expected_days} days from now",
            response.deletion_date
        );
        let meta = ctx.describe(&id).await?;
        ensure!(meta.key_state == KeyState::PendingDeletion, "after delete_key the key is {}", meta.key_state);
        ensure!(
            meta.deletion_date.is_some_and(|d| (d - response.deletion_date).abs() < time::Duration::seconds(2)),
            "describe_key shows deletion date {:?}, delete_key said {}",
            meta.deletion_date,
            response.deletion_date
        );
    }
    Ok(())
}

async fn delete_key_rejects_bad_windows(ctx: Ctx) -> Outcome {
    let id = ctx.create("window").await?;
    for days in [0, 1, 6, 31, 365] {
        let r = ctx.delete(&id, Some(days)).await;
        err(
            format!("delete_key(window {days})"),
            r,
            "InvalidRequest(pending_window_in_days)",
            is_invalid_request("pending_window_in_days"),
        )?;
        ctx.expect_state(&id, KeyState::Enabled, &format!("a refused delete_key(window {days})")).await?;
    }
    let r = ctx.delete(&ctx.id("never-created"), Some(3)).await;
    err("delete_key(unknown key, bad window)", r, "InvalidRequest", |e| matches!(e, KmsError::InvalidRequest { .. }))?;
    Ok(())
}

async fn cancel_deletion_leaves_key_disabled(ctx: Ctx) -> Outcome {
    let id = ctx.create("cancel").await?;
    let blob = ok("encrypt", ctx.encrypt(&id, b"survivor", &EncryptionContext::new()).await)?;
    ok("delete_key", ctx.delete(&id, None).await)?;
    let response = ok(
        "cancel_key_deletion",
        ctx.backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id.clone() }).await,
    )?;
    ensure!(response.key_id == id && response.key_state == KeyState::Disabled, "cancel returned {response:?}");
    let meta = ctx.describe(&id).await?;
    ensure!(meta.key_state == KeyState::Disabled, "after cancel the key is {} (expected Disabled)", meta.key_state);
    ensure!(meta.deletion_date.is_none(), "after cancel the deletion date is still {:?}", meta.deletion_date);
    err(
        "decrypt with the cancelled (Disabled) key",
        ctx.decrypt(&blob, &EncryptionContext::new(), None).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Disabled),
    )?;
    if ctx.caps.enable_disable {
        ok("enable_key", ctx.backend.enable_key(KeyIdRequest { key_id: id.clone() }).await)?;
        let plain = ok("decrypt after enable", ctx.decrypt(&blob, &EncryptionContext::new(), None).await)?;
        ensure!(plain.expose_secret() == b"survivor", "the key came back with other material");
    }
    Ok(())
}

async fn repeated_lifecycle_calls(ctx: Ctx) -> Outcome {
    let id = ctx.create("again").await?;
    if ctx.caps.enable_disable {
        for _ in 0..2 {
            ok("disable_key (repeated)", ctx.backend.disable_key(KeyIdRequest { key_id: id.clone() }).await)?;
            ctx.expect_state(&id, KeyState::Disabled, "disable_key").await?;
        }
        for _ in 0..2 {
            ok("enable_key (repeated)", ctx.backend.enable_key(KeyIdRequest { key_id: id.clone() }).await)?;
            ctx.expect_state(&id, KeyState::Enabled, "enable_key").await?;
        }
    }
    err(
        "cancel_key_deletion of an Enabled key",
        ctx.cancel(&id).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Enabled),
    )?;
    ok("delete_key", ctx.delete(&id, Some(7)).await)?;
    let first = ctx.describe(&id).await?.deletion_date;
    err(
        "delete_key of a PendingDeletion key",
        ctx.delete(&id, Some(30)).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::PendingDeletion),
    )?;
    let second = ctx.describe(&id).await?.deletion_date;
    ensure!(first == second, "a refused second delete_key moved the deletion date {first:?} -> {second:?}");
    ok("cancel_key_deletion", ctx.cancel(&id).await)?;
    err(
        "cancel_key_deletion of a Disabled key",
        ctx.cancel(&id).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Disabled),
    )?;
    Ok(())
}

async fn rotation_keeps_old_versions_decrypting(ctx: Ctx) -> Outcome {
    let id = ctx.create("rotate").await?;
    let context = ctx_of(&[("v", "1")]);
    let old = ok("encrypt", ctx.encrypt(&id, b"version one", &context).await)?;
    let r = ctx.backend.rotate_key(KeyIdRequest { key_id: id.clone() }).await;
    if !ctx.caps.rotate {
        err("rotate_key", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    let meta = ok("rotate_key", r)?.key_metadata;
    ensure!(meta.current_version == 2, "after one rotation the version is {}", meta.current_version);
    ensure!(meta.rotation_date.is_some(), "after rotation the rotation date is not set");
    ensure!(ctx.describe(&id).await?.current_version == 2, "describe_key does not show the rotation");
    let new = ok(
        "encrypt after rotation",
        ctx.backend
            .encrypt(EncryptRequest {
                key_id: id.clone(),
                plaintext: b"version two".as_slice().into(),
                encryption_context: context.clone(),
            })
            .await,
    )?;
    ensure!(new.key_version == 2, "encrypt after rotation used version {}", new.key_version);
    let opened = ok(
        "decrypt of a version-1 ciphertext",
        ctx.backend
            .decrypt(DecryptRequest { ciphertext_blob: old, encryption_context: context.clone(), key_id: None })
            .await,
    )?;
    ensure!(
        opened.key_version == 1 && opened.plaintext.expose_secret() == b"version one",
        "old version decrypts wrongly"
    );
    let opened = ok("decrypt of a version-2 ciphertext", ctx.decrypt(&new.ciphertext_blob, &context, None).await)?;
    ensure!(opened.expose_secret() == b"version two", "new version decrypts wrongly");
    Ok(())
}

async fn re_encrypt_moves_ciphertexts(ctx: Ctx) -> Outcome {
    let a = ctx.create("re-a").await?;
    let b = ctx.create("re-b").await?;
    let src_ctx = ctx_of(&[("from", "a")]);
    let dst_ctx = ctx_of(&[("to", "b")]);
    let blob = ok("encrypt", ctx.encrypt(&a, b"moving", &src_ctx).await)?;
    let request = ReEncryptRequest {
        ciphertext_blob: blob.clone(),
        source_encryption_context: src_ctx.clone(),
        destination_key_id: Some(b.clone()),
        destination_encryption_context: Some(dst_ctx.clone()),
    };
    let r = ctx.backend.re_encrypt(request.clone()).await;
    if !ctx.caps.re_encrypt {
        err("re_encrypt", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    let moved = ok("re_encrypt to another key", r)?;
    ensure!(
        moved.source_key_id == a && moved.source_key_version == 1 && moved.key_id == b,
        "re_encrypt returned {moved:?}"
    );
    let plain = ok("decrypt of the moved ciphertext", ctx.decrypt(&moved.ciphertext_blob, &dst_ctx, Some(&b)).await)?;
    ensure!(plain.expose_secret() == b"moving", "the moved ciphertext holds other bytes");
    err(
        "decrypt of the moved ciphertext with the source context",
        ctx.decrypt(&moved.ciphertext_blob, &src_ctx, None).await,
        "Crypto",
        is_crypto,
    )?;
    let wrong = ReEncryptRequest { source_encryption_context: dst_ctx.clone(), ..request.clone() };
    err("re_encrypt with a wrong source context", ctx.backend.re_encrypt(wrong).await, "Crypto", is_crypto)?;
    let missing = ReEncryptRequest { destination_key_id: Some(ctx.id("never-created")), ..request };
    let missing_id = ctx.id("never-created");
    err(
        "re_encrypt to an unknown key",
        ctx.backend.re_encrypt(missing).await,
        "KeyNotFound",
        is_not_found(&missing_id),
    )?;
    if ctx.caps.rotate {
        ok("rotate_key", ctx.backend.rotate_key(KeyIdRequest { key_id: a.clone() }).await)?;
        let same_key = ReEncryptRequest {
            ciphertext_blob: blob,
            source_encryption_context: src_ctx.clone(),
            destination_key_id: None,
            destination_encryption_context: None,
        };
        let rewrapped = ok("re_encrypt to the newest version", ctx.backend.re_encrypt(same_key).await)?;
        ensure!(
            rewrapped.key_id == a && rewrapped.key_version == 2 && rewrapped.source_key_version == 1,
            "rewrap returned {rewrapped:?}"
        );
        let plain =
            ok("decrypt of the rewrapped ciphertext", ctx.decrypt(&rewrapped.ciphertext_blob, &src_ctx, None).await)?;
        ensure!(plain.expose_secret() == b"moving", "the rewrapped ciphertext holds other bytes");
    }
    Ok(())
}

async fn description_and_tags(ctx: Ctx) -> Outcome {
    let request = CreateKeyRequest { tags: ctx_of(&[("a", "1"), ("b", "2")]), ..Default::default() };
    let id = ok("create_key", ctx.create_with("meta-edit", request).await)?.key_id;
    let r = ctx
        .backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: id.clone(), description: "new words".into() })
        .await;
    if ctx.caps.update_description {
        let meta = ok("update_key_description", r)?.key_metadata;
        ensure!(meta.description.as_deref() == Some("new words"), "description is {:?}", meta.description);
        ensure!(
            ctx.describe(&id).await?.description.as_deref() == Some("new words"),
            "describe does not show the description"
        );
    } else {
        err("update_key_description", r, "Unsupported", is_unsupported)?;
    }
    let r = ctx.backend.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx_of(&[("b", "two"), ("c", "3")]) }).await;
    if !ctx.caps.tags {
        err("tag_key", r, "Unsupported", is_unsupported)?;
        let r = ctx.backend.untag_key(UntagKeyRequest { key_id: id, tag_keys: vec!["a".into()] }).await;
        err("untag_key", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    ok("tag_key", r)?;
    let tags = ctx.describe(&id).await?.tags;
    ensure!(tags == ctx_of(&[("a", "1"), ("b", "two"), ("c", "3")]), "after tag_key the tags are {tags:?}");
    let r = ctx
        .backend
        .untag_key(UntagKeyRequest { key_id: id.clone(), tag_keys: vec!["a".into(), "absent".into()] })
        .await;
    ok("untag_key", r)?;
    let tags = ctx.describe(&id).await?.tags;
    ensure!(tags == ctx_of(&[("b", "two"), ("c", "3")]), "after untag_key the tags are {tags:?}");
    Ok(())
}

/// The metadata limits of [`kms_types::limits`], enforced by the [`KmsManager`] above this
/// backend: a key at every limit at once is created and stays usable; one tag, one character
/// or one byte more is an `InvalidRequest`, also when `tag_key` calls accumulate tags.
async fn metadata_limits_hold_through_the_manager(ctx: Ctx) -> Outcome {
    use kms_types::limits::{
        MAX_DESCRIPTION_BYTES, MAX_POLICY_BYTES, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS,
    };

    let manager = KmsManager::with_options(ctx.backend.clone(), ManagerOptions::default());
    let full_tags: Tags = (0..MAX_TAGS)
        .map(|i| (format!("{i:03}{}", "k".repeat(MAX_TAG_KEY_CHARS - 3)), "é".repeat(MAX_TAG_VALUE_CHARS)))
        .collect();
    let tags = if ctx.caps.tags { full_tags.clone() } else { Tags::new() };
    let at_limits = CreateKeyRequest {
        key_name: Some(ctx.id("limits")),
        description: Some("d".repeat(MAX_DESCRIPTION_BYTES)),
        tags: tags.clone(),
        policy: Some("p".repeat(MAX_POLICY_BYTES)),
        ..Default::default()
    };
    let created = manager.create_key(at_limits.clone()).await;
    if created.is_ok() {
        ctx.track(&ctx.id("limits"));
    }
    let id = ok("create_key at every metadata limit", created)?.key_id;
    ensure!(ctx.describe(&id).await?.tags == tags, "tags at the limit were not kept");
    ok("encrypt under a key at every metadata limit", ctx.encrypt(&id, b"x", &EncryptionContext::new()).await)?;

    let over = |label: &str, request: CreateKeyRequest| CreateKeyRequest { key_name: Some(ctx.id(label)), ..request };
    let mut too_many = full_tags.clone();
    too_many.insert("one-more".into(), String::new());
    let cases = [
        ("tags", over("too-many-tags", CreateKeyRequest { tags: too_many, ..Default::default() })),
        (
            "tags",
            over(
                "long-tag-key",
                CreateKeyRequest { tags: ctx_of(&[(&"k".repeat(MAX_TAG_KEY_CHARS + 1), "v")]), ..Default::default() },
            ),
        ),
        (
            "tags",
            over(
                "long-tag-value",
                CreateKeyRequest { tags: ctx_of(&[("k", &"v".repeat(MAX_TAG_VALUE_CHARS + 1))]), ..Default::default() },
            ),
        ),
        (
            "description",
            over(
                "long-description",
                CreateKeyRequest { description: Some("d".repeat(MAX_DESCRIPTION_BYTES + 1)), ..Default::default() },
            ),
        ),
        (
            "policy",
            over(
                "long-policy",
                CreateKeyRequest { policy: Some("p".repeat(MAX_POLICY_BYTES + 1)), ..Default::default() },
            ),
        ),
    ];
    for (field, request) in cases {
        let name = request.key_name.clone().unwrap_or_default();
        let r = manager.create_key(request).await;
        if r.is_ok() {
            ctx.track(&name);
        }
        err(format!("create_key {name} over the {field} limit"), r, "InvalidRequest", is_invalid_request(field))?;
    }
    let r = manager
        .update_key_description(UpdateKeyDescriptionRequest {
            key_id: id.clone(),
            description: "d".repeat(MAX_DESCRIPTION_BYTES + 1),
        })
        .await;
    err("update_key_description over the limit", r, "InvalidRequest(description)", is_invalid_request("description"))?;
    if !ctx.caps.tags {
        return Ok(());
    }
    // Tags accumulate across calls: the 51st is refused, overwriting one of the 50 is not.
    let r = manager.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx_of(&[("one-more", "v")]) }).await;
    err("tag_key adding a 51st tag", r, "InvalidRequest(tags)", is_invalid_request("tags"))?;
    let first = full_tags.keys().next().cloned().unwrap_or_default();
    ok(
        "tag_key overwriting a tag",
        manager.tag_key(TagKeyRequest { key_id: id.clone(), tags: [(first, "new".into())].into() }).await,
    )?;
    ensure!(ctx.describe(&id).await?.tags.len() == MAX_TAGS, "overwriting a tag changed the tag count");
    Ok(())
}

/// Every key under the case's prefix, by paging with `limit` from the prefix onwards.
async fn list_ours(ctx: &Ctx, limit: u32) -> std::result::Result<Vec<(String, KeyState)>, String> {
    let mut marker = Some(ctx.prefix.clone());
    let mut ours = Vec::new();
    for _ in 0..10_000 {
        let page = ok(
            format!("list_keys(limit {limit}, marker {marker:?})"),
            ctx.backend
                .list_keys(ListKeysRequest { limit: Some(limit), marker: marker.clone(), ..Default::default() })
                .await,
        )?;
        ensure!(page.keys.len() <= limit as usize, "list_keys returned {} keys for limit {limit}", page.keys.len());
        let mut past_prefix = false;
        for entry in &page.keys {
            if let Some(m) = &marker {
                ensure!(entry.key_id > *m, "list_keys after marker {m} returned {}", entry.key_id);
            }
            if entry.key_id.starts_with(&ctx.prefix) {
                ours.push((entry.key_id.clone(), entry.key_state));
            } else {
                past_prefix = true;
            }
        }
        if !page.truncated || past_prefix {
            ensure!(page.truncated || page.next_marker.is_none(), "a last page has next_marker {:?}", page.next_marker);
            return Ok(ours);
        }
        ensure!(!page.keys.is_empty(), "a truncated page is empty");
        ensure!(
            page.next_marker.as_deref() == page.keys.last().map(|e| e.key_id.as_str()),
            "next_marker {:?} is not the page's last key",
            page.next_marker
        );
        marker = page.next_marker;
    }
    Err("list_keys never stopped paging".into())
}

fn strictly_ascending(ids: &[String]) -> Outcome {
    for pair in ids.windows(2) {
        ensure!(pair[0] < pair[1], "list_keys is not strictly ascending: {} then {}", pair[0], pair[1]);
    }
    Ok(())
}

async fn list_keys_pages_in_ascending_order(ctx: Ctx) -> Outcome {
    // Created out of order, so a backend that lists in creation order fails.
    let mut expected = Vec::new();
    for n in [5, 0, 9, 3, 7, 1, 8, 2, 6, 4] {
        expected.push(ctx.create(&format!("p{n:02}")).await?);
    }
    expected.sort();
    ok("delete_key", ctx.delete(&expected[4], None).await)?;
    for limit in [1, 3, 10, MAX_LIST_LIMIT] {
        let listed = list_ours(&ctx, limit).await?;
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        strictly_ascending(&ids)?;
        ensure!(ids == expected, "with limit {limit} listed {ids:?}, expected {expected:?}");
        let state = listed[4].1;
        ensure!(state == KeyState::PendingDeletion, "list_keys shows a PendingDeletion key as {state}");
    }
    let page = ok("list_keys(no limit)", ctx.backend.list_keys(ListKeysRequest::default()).await)?;
    ensure!(page.keys.len() <= 100, "the default page has {} keys (more than 100)", page.keys.len());
    Ok(())
}

async fn list_keys_rejects_bad_limits(ctx: Ctx) -> Outcome {
    for limit in [0, MAX_LIST_LIMIT + 1, u32::MAX] {
        let r = ctx.backend.list_keys(ListKeysRequest { limit: Some(limit), marker: None, ..Default::default() }).await;
        err(format!("list_keys(limit {limit})"), r, "InvalidRequest(limit)", is_invalid_request("limit"))?;
    }
    Ok(())
}

async fn list_marker_survives_deletes(ctx: Ctx) -> Outcome {
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(ctx.create(&format!("s{n}0")).await?);
    }
    let first = ok(
        "list_keys",
        ctx.backend
            .list_keys(ListKeysRequest { limit: Some(2), marker: Some(ctx.prefix.clone()), ..Default::default() })
            .await,
    )?;
    let marker = first.next_marker.clone().ok_or("a truncated first page has no next_marker")?;
    ensure!(marker == ids[1], "next_marker is {marker}, expected {}", ids[1]);
    // The marker's key and the next one are deleted between pages.
    ok("delete_key(marker key)", ctx.delete(&ids[1], Some(7)).await)?;
    ok("delete_key(next key)", ctx.delete(&ids[2], Some(7)).await)?;
    let next = ok(
        "list_keys after deleting the marker key",
        ctx.backend.list_keys(ListKeysRequest { limit: Some(2), marker: Some(marker), ..Default::default() }).await,
    )?;
    let got: Vec<&str> = next.keys.iter().map(|e| e.key_id.as_str()).collect();
    ensure!(got == [ids[2].as_str(), ids[3].as_str()], "the page after the deleted marker is {got:?}");
    // A marker naming a key that no longer exists at all (purged): listing resumes after it.
    let gone = ctx.id("s25");
    let resumed = ok(
        "list_keys with a marker naming no key",
        ctx.backend.list_keys(ListKeysRequest { limit: Some(2), marker: Some(gone), ..Default::default() }).await,
    )?;
    let got: Vec<&str> = resumed.keys.iter().map(|e| e.key_id.as_str()).collect();
    ensure!(got == [ids[3].as_str(), ids[4].as_str()], "the page after a vanished marker is {got:?}");
    Ok(())
}

async fn list_keys_with_a_prefix(ctx: Ctx) -> Outcome {
    let mut inside = Vec::new();
    for label in ["q-b", "q-a", "q-c", "q-d"] {
        inside.push(ctx.create(label).await?);
    }
    inside.sort();
    let before = ctx.create("q").await?;
    let after = ctx.create("r-a").await?;
    let prefix = ctx.id("q-");
    let list = |limit: u32, marker: Option<String>| {
        let request = ListKeysRequest { limit: Some(limit), marker, prefix: Some(prefix.clone()) };
        ctx.backend.list_keys(request)
    };
    let ids = |page: &ListKeysResponse| page.keys.iter().map(|e| e.key_id.clone()).collect::<Vec<_>>();
    // From the start, from a marker before the range, inside it, and past it.
    let page = ok("list_keys(prefix)", list(10, None).await)?;
    ensure!(ids(&page) == inside && !page.truncated, "prefix {prefix} listed {:?}", ids(&page));
    let page = ok("list_keys(prefix, early marker)", list(10, Some(before.clone())).await)?;
    ensure!(ids(&page) == inside, "prefix {prefix} after {before} listed {:?}", ids(&page));
    let page = ok("list_keys(prefix, limit 2)", list(2, None).await)?;
    ensure!(ids(&page) == inside[..2] && page.truncated, "first page {:?}", ids(&page));
    let page = ok("list_keys(prefix, second page)", list(2, page.next_marker.clone()).await)?;
    ensure!(ids(&page) == inside[2..] && !page.truncated && page.next_marker.is_none(), "second page {:?}", ids(&page));
    let page = ok("list_keys(prefix, late marker)", list(10, Some(after)).await)?;
    ensure!(page.keys.is_empty() && !page.truncated, "past the range listed {:?}", ids(&page));
    for bad in ["q-*", ".q"] {
        let request = ListKeysRequest { prefix: Some(bad.into()), ..Default::default() };
        let r = ctx.backend.list_keys(request).await;
        err(format!("list_keys(prefix {bad})"), r, "InvalidRequest(prefix)", is_invalid_request("prefix"))?;
    }
    Ok(())
}

async fn the_longest_key_id_is_storable(ctx: Ctx) -> Outcome {
    let key_id = ctx.id(&"l".repeat(MAX_KEY_ID_LEN - ctx.prefix.len()));
    ensure!(key_id.len() == MAX_KEY_ID_LEN, "test id has {} bytes", key_id.len());
    let label = &key_id[ctx.prefix.len()..];
    let created = ok("create_key(256-byte id)", ctx.create_with(label, CreateKeyRequest::default()).await)?;
    ensure!(created.key_id == key_id, "created {} instead", created.key_id);
    let meta = ctx.describe(&key_id).await?;
    ensure!(meta.key_state == KeyState::Enabled, "the 256-byte key is {}", meta.key_state);
    let sealed = ok(
        "encrypt(256-byte id)",
        ctx.backend
            .encrypt(EncryptRequest {
                key_id: key_id.clone(),
                plaintext: b"longest".as_slice().into(),
                encryption_context: EncryptionContext::new(),
            })
            .await,
    )?;
    let opened = ok(
        "decrypt(256-byte id)",
        ctx.backend
            .decrypt(DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob,
                encryption_context: EncryptionContext::new(),
                key_id: Some(key_id.clone()),
            })
            .await,
    )?;
    ensure!(opened.plaintext.expose_secret() == b"longest", "the 256-byte key does not round-trip");
    let request = ListKeysRequest { prefix: Some(key_id.clone()), ..Default::default() };
    let page = ok("list_keys(256-byte prefix)", ctx.backend.list_keys(request).await)?;
    ensure!(page.keys.len() == 1 && page.keys[0].key_id == key_id, "listing by its id found {} keys", page.keys.len());
    ok("delete_key(256-byte id)", ctx.delete(&key_id, None).await)?;
    Ok(())
}

async fn list_keys_under_concurrent_creates(ctx: Ctx) -> Outcome {
    // Existing keys: even numbers. Created while paging: odd numbers, interleaved.
    let mut existing = Vec::new();
    for n in (0..24).step_by(2) {
        existing.push(ctx.create(&format!("c{n:03}")).await?);
    }
    let creator = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for n in (1..24).step_by(2) {
                ctx.create(&format!("c{n:03}")).await?;
                tokio::task::yield_now().await;
            }
            Ok::<(), String>(())
        })
    };
    let listed = list_ours(&ctx, 2).await?;
    creator.await.map_err(|e| format!("the creating task panicked: {e}"))??;
    let ids: Vec<String> = listed.into_iter().map(|(id, _)| id).collect();
    strictly_ascending(&ids)?;
    for id in &existing {
        ensure!(ids.contains(id), "{id} existed before paging began but was skipped");
    }
    Ok(())
}

async fn concurrent_creates(ctx: Ctx) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let backend = Arc::clone(&ctx.backend);
        tasks.spawn(async move { backend.create_key(CreateKeyRequest::default()).await });
    }
    let mut ids = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let created = ok("concurrent create_key", joined.map_err(|e| format!("a task panicked: {e}"))?)?;
        ctx.track(&created.key_id);
        ensure!(ids.insert(created.key_id.clone()), "two concurrent creates both got id {}", created.key_id);
    }
    for id in &ids {
        ctx.describe(id).await?;
    }
    // Racing creates of one name: exactly one wins.
    let name = ctx.id("race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let backend = Arc::clone(&ctx.backend);
        let request = CreateKeyRequest { key_name: Some(name.clone()), ..Default::default() };
        tasks.spawn(async move { backend.create_key(request).await });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| format!("a create task panicked: {e}"))? {
            Ok(_) => won += 1,
            Err(KmsError::KeyAlreadyExists { .. }) => lost += 1,
            Err(e) => return Err(format!("a racing create_key failed with {e:?} (expected KeyAlreadyExists)")),
        }
    }
    if won > 0 {
        ctx.track(&name);
    }
    ensure!(won == 1 && lost == 7, "8 racing creates of one name: {won} succeeded, {lost} got KeyAlreadyExists");
    Ok(())
}

async fn concurrent_data_keys(ctx: Ctx) -> Outcome {
    let id = ctx.create("dks").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let backend = Arc::clone(&ctx.backend);
        let request = GenerateDataKeyRequest {
            key_id: id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: ctx_of(&[("n", &n.to_string())]),
        };
        tasks.spawn(async move {
            let context = request.encryption_context.clone();
            backend.generate_data_key(request).await.map(|dk| (context, dk))
        });
    }
    let mut seen_keys = BTreeSet::new();
    let mut seen_blobs = BTreeSet::new();
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (context, dk) = ok("concurrent generate_data_key", joined.map_err(|e| format!("a task panicked: {e}"))?)?;
        ensure!(seen_keys.insert(dk.plaintext_key.expose_secret().to_vec()), "two data keys are equal");
        ensure!(seen_blobs.insert(dk.ciphertext_blob.clone()), "two wrapped data keys are equal");
        all.push((context, dk));
    }
    for (context, dk) in &all {
        let plain = ok("decrypt of a data key", ctx.decrypt(&dk.ciphertext_blob, context, None).await)?;
        ensure!(plain.expose_secret() == dk.plaintext_key.expose_secret(), "a wrapped data key unwraps to another key");
    }
    Ok(())
}

async fn capabilities_gate_optional_operations(ctx: Ctx) -> Outcome {
    let helper = ctx.create("cap-helper").await?;
    let helper_blob = ok("encrypt", ctx.encrypt(&helper, b"x", &EncryptionContext::new()).await)?;
    for (n, op) in ALL_OPS.iter().copied().enumerate() {
        let id = ctx.create(&format!("cap{n:02}")).await?;
        let blob = ok("encrypt", ctx.encrypt(&id, b"x", &EncryptionContext::new()).await)?;
        let result = op.run(&ctx, &id, &blob, &helper_blob).await;
        let unsupported = matches!(result, Err(KmsError::Unsupported { .. }));
        if op.supported(ctx.caps) {
            ensure!(!unsupported, "{op:?} is declared in capabilities() but returns Unsupported");
        } else {
            err(format!("{op:?}, not declared in capabilities()"), result, "Unsupported", is_unsupported)?;
        }
    }
    Ok(())
}

async fn health_check_reports_healthy(ctx: Ctx) -> Outcome {
    let healthy = ok("health_check", ctx.backend.health_check().await)?;
    ensure!(healthy, "a freshly built backend reports unhealthy");
    Ok(())
}
