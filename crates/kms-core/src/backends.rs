//! The [`KmsBackend`] trait every key store implements, and the [`BackendFactory`] registry
//! that builds one from configuration.
//!
//! A backend holds master keys and performs the operations that need them. The nine methods
//! of the spec are required; the rest default to [`KmsError::Unsupported`] and a backend
//! declares what it implements in [`KmsBackend::capabilities`]. Every backend crate runs the
//! contract suite (`kms_core::testkit`) against itself.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::config::{self, BackendConfig, BackendSettings, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyMetadataResponse, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest,
    TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};

/// A key store: holds master keys and performs the operations that need them.
///
/// Contract (checked by the contract suite): cryptographic operations are refused with
/// [`KmsError::InvalidKeyState`] unless the key is `Enabled`; an unknown key is
/// [`KmsError::KeyNotFound`]; a ciphertext that does not authenticate under the given
/// encryption context is [`KmsError::Crypto`] (so is one named by a [`DecryptRequest::key_id`]
/// it does not belong to); [`ciphertext_key_id`](Self::ciphertext_key_id) names the key of
/// every ciphertext the backend made; `list_keys` pages in ascending key-id order and a marker
/// survives the deletion of the key it names.
#[async_trait]
pub trait KmsBackend: Send + Sync {
    /// Creates a master key.
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse>;
    /// Encrypts at most 4096 bytes under a master key.
    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse>;
    /// Decrypts a ciphertext made by `encrypt` or `generate_data_key`.
    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse>;
    /// Generates a data key, returned in plaintext and wrapped.
    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse>;
    /// Describes a key.
    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse>;
    /// Lists keys, one page at a time, ascending by key id.
    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse>;
    /// Schedules a key's deletion after a 7-30 day waiting period.
    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse>;
    /// Cancels a scheduled deletion; the key comes back `Disabled`.
    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse>;
    /// Whether the backend can serve requests now.
    async fn health_check(&self) -> Result<bool>;

    /// The backend's name, for errors and metrics (`local`, `vault`, `memory`).
    fn backend_name(&self) -> &'static str {
        "custom"
    }

    /// Which optional operations this backend implements.
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities::default()
    }

    /// The key id a ciphertext made by this backend names, read from its unauthenticated
    /// header without any cryptography and without calling the key store; `None` if
    /// `ciphertext_blob` is not in this backend's format. A returned id is a valid key id
    /// (`validate_key_id`).
    ///
    /// The id is a claim, not a proof: anyone can write a header naming any key. It exists so
    /// that a caller can authorize a decrypt or re-encrypt *before* the backend opens the
    /// ciphertext (whether a ciphertext authenticates, or what state its key is in, must not
    /// be revealed to someone who may not use that key), and then pass the id as
    /// [`DecryptRequest::key_id`] so the backend itself refuses a ciphertext that does not
    /// belong to that key.
    ///
    /// Contract (checked by the contract suite): the id is returned for every ciphertext the
    /// backend produced (`encrypt`, `generate_data_key`, `generate_data_key_without_plaintext`,
    /// `re_encrypt`), and `None` for bytes that are no ciphertext of its format. The default
    /// returns `None`, so a backend that does not implement it cannot serve decrypt or
    /// re-encrypt through the admin API (which fails closed).
    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        let _ = ciphertext_blob;
        None
    }

    /// Generates a data key and returns only its wrapped form.
    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        let _ = request;
        Err(self.unsupported("generate_data_key_without_plaintext"))
    }
    /// Enables a `Disabled` key.
    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("enable_key"))
    }
    /// Disables an `Enabled` key.
    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("disable_key"))
    }
    /// Makes a new key version current; older versions keep decrypting.
    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("rotate_key"))
    }
    /// Moves a ciphertext to another key or to the newest version, without exposing plaintext.
    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let _ = request;
        Err(self.unsupported("re_encrypt"))
    }
    /// Replaces a key's description.
    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("update_key_description"))
    }
    /// Adds or overwrites tags.
    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("tag_key"))
    }
    /// Removes tags.
    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("untag_key"))
    }

    /// Whether this backend stores aliases (the `*_alias` operations and
    /// [`resolve_alias`](Self::resolve_alias)); `false` by default.
    ///
    /// Contract (checked by the contract suite when `true`): names are unique; an alias points
    /// at an existing key, never at an alias; `resolve_alias` of an unknown name is
    /// `KeyNotFound` naming the alias; `list_aliases` is in name order and pages by name.
    fn supports_aliases(&self) -> bool {
        false
    }
    /// Creates an alias of an existing key (`KeyAlreadyExists` if the name is taken).
    async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        let _ = request;
        Err(self.unsupported("create_alias"))
    }
    /// Points an existing alias at another existing key.
    async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        let _ = request;
        Err(self.unsupported("update_alias"))
    }
    /// Deletes an alias (the key stays).
    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        let _ = alias_name;
        Err(self.unsupported("delete_alias"))
    }
    /// Lists aliases, one page at a time, in name order.
    async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        let _ = request;
        Err(self.unsupported("list_aliases"))
    }
    /// The key id an alias points at.
    async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        let _ = alias_name;
        Err(self.unsupported("resolve_alias"))
    }

    /// Releases background tasks and handles; called when the service stops or swaps backends.
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// Hits, misses, entries and capacity of the backend's own cache of opened keys, for
    /// `/metrics`; `None` for a backend without one (the default).
    fn key_cache_stats(&self) -> Option<kms_types::api_types::CacheStats> {
        None
    }

    /// What the manager may do after `error` (the manager is the one place that retries;
    /// the backend knows what its failures mean). The default: retryable errors
    /// ([`KmsError::is_retryable`]) are retried, anything else is final.
    fn retry_class(&self, error: &KmsError) -> RetryClass {
        if error.is_retryable() { RetryClass::Retry } else { RetryClass::Final }
    }

    /// Whether calls that create or change something (`create_key`, `encrypt`,
    /// `generate_data_key`, `re_encrypt`, every key-state and metadata change) may be tried
    /// again after a retryable failure. A backend says yes only when a repeat can never apply
    /// a change twice or report a conflict that did not happen (the Vault backend reads a
    /// write whose reply was lost back). Default: no, they run once.
    fn writes_are_retry_safe(&self) -> bool {
        false
    }

    /// Whether a call can fail in a way that asking again may cure: a network between kms
    /// and the keys, a cluster electing a leader, a per-attempt timeout. Default: yes. A
    /// backend that says no (its keys are in this process and on its own disk) gets exactly
    /// one attempt per call under the whole budget, and the manager hands it each request
    /// without the copy a retry would need.
    fn may_fail_transiently(&self) -> bool {
        true
    }

    /// For a backend shared by several servers (Vault): how long key metadata may be cached
    /// before a change made elsewhere must be seen. The manager caps its own cache's TTL to
    /// it. `None` (the default): this process is the only writer.
    fn metadata_staleness_bound(&self) -> Option<std::time::Duration> {
        None
    }

    /// Drops every cache the backend holds (`POST /kms/v1/cache/clear`). Default: none held.
    async fn clear_caches(&self) {}

    /// A backup bundle of every key, consistent and sealed (the local backend's format is in
    /// `docs/formats.md`, "Backup bundle"). Optional: a backend whose store has its own backup
    /// (Vault/OpenBao: the raft snapshot, docs/vault.md) answers `Unsupported`.
    async fn backup(&self) -> Result<Vec<u8>> {
        Err(self.unsupported("backup"))
    }

    /// Creates a key with material brought from another KMS (`kms migrate`); never overwrites
    /// an existing key ([`KmsError::KeyAlreadyExists`]). Optional: default `Unsupported`.
    async fn import_key(&self, request: kms_types::import::ImportKeyRequest) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("import_key"))
    }

    /// Adopts a key its store already holds but kms did not make (`kms migrate vault-transit`),
    /// after checking the key's parameters; without `request.commit` only checks. Never
    /// implicit, never for a key kms already has. A refusal is an [`AdoptOutcome::Refused`]
    /// answer with its reason. Optional: default `Unsupported`.
    ///
    /// [`AdoptOutcome::Refused`]: kms_types::adopt::AdoptOutcome::Refused
    async fn adopt_key(
        &self,
        request: kms_types::adopt::AdoptKeyRequest,
    ) -> Result<kms_types::adopt::AdoptKeyResponse> {
        let _ = request;
        Err(self.unsupported("adopt_key"))
    }

    /// Imports key material (BYOK) into an external key, already unwrapped and checked by the
    /// manager (`kms_core::import_sessions`). Optional: a backend that implements it declares
    /// [`BackendCapabilities::import_key_material`] and then also creates keys of origin
    /// `external` as `PendingImport`, without material. Default `Unsupported`.
    ///
    /// Contract (checked by the contract suite when declared; `docs/byok.md`):
    /// - only a key of origin `external` ([`ImportRefusal::NotExternalKey`] otherwise), in
    ///   `PendingImport`, `Enabled` or `Disabled` (the key-state table of
    ///   [`kms_types::operation::Operation::ImportKeyMaterial`]);
    /// - without `new_version`: the first material makes the key `Enabled`; later imports must
    ///   carry the same material (same [`ImportMaterial::fingerprint`]), even after it was
    ///   deleted, else [`ImportRefusal::IncorrectKeyMaterial`]; a re-import brings back every
    ///   version's ciphertexts;
    /// - with `new_version`: a key with material gains a new current version (older versions
    ///   keep decrypting); a key without material is [`ImportRefusal::NoMaterialYet`];
    /// - `valid_to`: after it, the key reads as `PendingImport` and its material is deleted.
    ///
    /// [`ImportRefusal::NotExternalKey`]: kms_types::byok::ImportRefusal::NotExternalKey
    /// [`ImportRefusal::IncorrectKeyMaterial`]: kms_types::byok::ImportRefusal::IncorrectKeyMaterial
    /// [`ImportRefusal::NoMaterialYet`]: kms_types::byok::ImportRefusal::NoMaterialYet
    /// [`ImportMaterial::fingerprint`]: kms_types::byok::ImportMaterial::fingerprint
    async fn import_key_material(&self, request: kms_types::byok::ImportMaterial) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("import_key_material"))
    }

    /// Deletes the imported material of an external key (every version's); the key becomes
    /// `PendingImport`, keeps its metadata and the material fingerprints, and accepts the same
    /// material again. Optional (with [`BackendCapabilities::import_key_material`]); default
    /// `Unsupported`.
    async fn delete_imported_key_material(
        &self,
        request: kms_types::byok::DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        let _ = request;
        Err(self.unsupported("delete_imported_key_material"))
    }

    /// The error an unimplemented optional operation returns.
    fn unsupported(&self, operation: &'static str) -> KmsError {
        KmsError::Unsupported { operation, backend: self.backend_name() }
    }
}

/// How the manager treats a failed call (see [`KmsBackend::retry_class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryClass {
    /// The answer stands (bad request, crypto failure, not found, refused...).
    Final,
    /// A transient failure of the call: retried at most `retry_attempts` times.
    Retry,
    /// The part of the backend that was asked cannot serve now (a node down, no leader
    /// elected yet): retried on another node for as long as the call's budget lasts.
    Move,
}

/// Builds a backend of one kind from a validated configuration.
///
/// The kind is a [`config::KmsBackend`]: `local`, `vault`, or a name of the implementor's own.
/// A backend with settings of its own implements [`TypedBackendFactory`] instead and is
/// registered with [`BackendRegistry::register_typed`].
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The kind of backend this factory builds.
    fn kind(&self) -> config::KmsBackend;
    /// Builds (and connects) a backend; the caller health-checks it before use.
    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>>;
    /// Checks what [`KmsConfig::validate`] cannot: the settings of a backend kind that
    /// `kms-types` does not describe. Default: nothing more to check.
    fn check(&self, config: &KmsConfig) -> Result<()> {
        let _ = config;
        Ok(())
    }
    /// `config` with every secret hidden. Default: [`KmsConfig::redacted`], which hides every
    /// setting of a custom backend.
    fn redact(&self, config: &KmsConfig) -> KmsConfig {
        config.redacted()
    }
}

/// A factory of a backend kind with typed settings of its own ([`BackendSettings`]): its
/// `backend_config` (a custom [`BackendConfig`]) is read as [`Self::Settings`] and checked
/// before [`Self::build`] sees it. Register it with [`BackendRegistry::register_typed`].
#[async_trait]
pub trait TypedBackendFactory: Send + Sync + 'static {
    /// The backend's own settings.
    type Settings: BackendSettings;
    /// The kind this factory builds: a name of its own (not `local` nor `vault`).
    fn kind(&self) -> config::KmsBackend;
    /// Builds (and connects) a backend from its checked settings; `config` holds the manager
    /// options (timeouts, cache) for a backend that wants them.
    async fn build(&self, settings: Self::Settings, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>>;
}

/// A [`TypedBackendFactory`] seen as a [`BackendFactory`].
struct Typed<F>(F);

impl<F: TypedBackendFactory> Typed<F> {
    fn settings(&self, config: &KmsConfig) -> Result<F::Settings> {
        match &config.backend_config {
            BackendConfig::Custom(custom) if *custom.backend_type() == self.0.kind() => custom.settings(),
            _ => Err(KmsError::configuration(
                "backend_config",
                format!("holds no settings of the {} backend", self.0.kind()),
            )),
        }
    }
}

#[async_trait]
impl<F: TypedBackendFactory> BackendFactory for Typed<F> {
    fn kind(&self) -> config::KmsBackend {
        self.0.kind()
    }
    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        let settings = self.settings(config)?;
        self.0.build(settings, config).await
    }
    fn check(&self, config: &KmsConfig) -> Result<()> {
        self.settings(config).map(drop)
    }
    fn redact(&self, config: &KmsConfig) -> KmsConfig {
        let mut shown = config.redacted();
        if let BackendConfig::Custom(custom) = &config.backend_config
            && let Ok(redacted) = custom.redacted_as::<F::Settings>()
        {
            shown.backend_config = BackendConfig::Custom(redacted);
        }
        shown
    }
}

/// The factories the service manager may use, by backend kind. `kms-core` cannot depend on
/// the backend crates, so the facade (or an embedding application) registers them; a crate
/// outside this workspace registers its own kinds the same way.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    factories: HashMap<config::KmsBackend, Arc<dyn BackendFactory>>,
}

impl std::fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRegistry").field("kinds", &self.kinds()).finish()
    }
}

impl BackendRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the factory for its kind.
    pub fn register(&mut self, factory: Arc<dyn BackendFactory>) -> &mut Self {
        self.factories.insert(factory.kind(), factory);
        self
    }

    /// Registers (or replaces) a factory of a kind with typed settings of its own.
    pub fn register_typed<F: TypedBackendFactory>(&mut self, factory: F) -> &mut Self {
        self.register(Arc::new(Typed(factory)))
    }

    /// Whether a factory for `kind` is registered.
    pub fn supports(&self, kind: &config::KmsBackend) -> bool {
        self.factories.contains_key(kind)
    }

    /// The kinds registered, in name order.
    pub fn kinds(&self) -> Vec<config::KmsBackend> {
        let mut kinds: Vec<_> = self.factories.keys().cloned().collect();
        kinds.sort_unstable();
        kinds
    }

    fn factory(&self, config: &KmsConfig) -> Result<&Arc<dyn BackendFactory>> {
        self.factories.get(&config.backend).ok_or_else(|| {
            KmsError::configuration("backend", format!("the {} backend is not available in this build", config.backend))
        })
    }

    /// Validates `config` completely: [`KmsConfig::validate`], a factory for its kind, and
    /// that factory's own checks (the settings of a custom backend).
    pub fn check(&self, config: &KmsConfig) -> Result<()> {
        config.validate()?;
        self.factory(config)?.check(config)
    }

    /// `config` with every secret hidden, by the factory of its kind when registered (which
    /// knows which settings of a custom backend are secret).
    pub fn redacted(&self, config: &KmsConfig) -> KmsConfig {
        match self.factory(config) {
            Ok(factory) => factory.redact(config),
            Err(_) => config.redacted(),
        }
    }

    /// Validates `config` and builds its backend.
    pub async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        self.check(config)?;
        self.factory(config)?.build(config).await
    }
}
