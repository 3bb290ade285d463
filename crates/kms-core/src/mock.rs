//! [`MemoryBackend`]: an in-memory key store with the full key lifecycle, for tests of the
//! layers above backends (manager, service manager, `EncryptionService`, admin handlers).
//!
//! It behaves as the contract (and AWS KMS) says a backend must: cryptographic operations only
//! on `Enabled` keys, deletion scheduled 7-30 days ahead and cancellable (the key comes back
//! `Disabled`), rotation that keeps older versions decrypting, ciphertexts that name their key
//! and version, and encryption contexts bound into `kms_crypto` envelopes. It passes the
//! contract suite (`kms_core::testkit`). Keys live only in the process: nothing is persisted.
//!
//! [`MemoryBackend::with_capabilities`] builds one that implements only some optional
//! operations (the others return [`KmsError::Unsupported`]), and [`MemoryBackend::set_healthy`]
//! makes its health check fail, so the layers above can be tested against both.
//!
//! # Ciphertext format (`KMM2`, in memory only)
//!
//! ```text
//! "KMM2" | u16 BE key-id length | key id (ASCII) | u32 BE key version | envelope
//! ```
//! The envelope is a `kms_crypto::envelope` (version 2) sealed under that key version and
//! bound to the key id, the version and the encryption context; the header only names the
//! key to open it with. Specified in `docs/formats.md` ("Memory backend ciphertext").
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use kms_core::backends::KmsBackend;
//! use kms_core::mock::MemoryBackend;
//! use kms_types::types::{CreateKeyRequest, DecryptRequest, EncryptRequest};
//!
//! let backend = MemoryBackend::new();
//! let key = backend.create_key(CreateKeyRequest::default()).await?;
//! let sealed = backend
//!     .encrypt(EncryptRequest { key_id: key.key_id, plaintext: b"hello".as_slice().into(), encryption_context: Default::default() })
//!     .await?;
//! let opened = backend
//!     .decrypt(DecryptRequest { ciphertext_blob: sealed.ciphertext_blob, encryption_context: Default::default(), key_id: None })
//!     .await?;
//! assert_eq!(opened.plaintext.expose_secret(), b"hello");
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kms_crypto::envelope::{self, Binding};
use kms_crypto::keys::KeyEncryptionKey;
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::byok::{DeleteImportedKeyMaterialRequest, ImportMaterial, ImportRefusal};
use kms_types::config::{self, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyListEntry, KeyMetadata, KeyMetadataResponse, KeyOrigin, KeySpec, KeyState, ListKeysRequest, ListKeysResponse,
    ReEncryptRequest, ReEncryptResponse, RotateKeyRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
    validate_key_id, validate_list_limit, validate_pending_window,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::aliases::AliasTable;
use crate::backends::{BackendFactory, KmsBackend};

pub use kms_types::types::MAX_DESCRIPTION_LEN;

type MasterKey = KeyEncryptionKey;

struct KeyRecord {
    metadata: KeyMetadata,
    /// Material of versions 1..=n (index = version - 1); `None` for a version of an external
    /// key whose imported material was deleted (or expired).
    versions: Vec<Option<MasterKey>>,
    /// External keys: the fingerprint of each version's imported material (index = version
    /// - 1), kept when the material is deleted so only the same material comes back.
    fingerprints: Vec<[u8; kms_types::byok::MATERIAL_FINGERPRINT_LEN]>,
}

/// An in-memory key store with the full lifecycle. See the [module docs](self).
pub struct MemoryBackend {
    keys: Mutex<BTreeMap<String, KeyRecord>>,
    aliases: Mutex<AliasTable>,
    capabilities: BackendCapabilities,
    healthy: AtomicBool,
    /// The earliest `valid_to` of imported material, in Unix seconds (`i64::MAX`: none).
    earliest_expiry: AtomicI64,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("keys", &self.key_count())
            .field("capabilities", &self.capabilities)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty store implementing every optional operation.
    pub fn new() -> Self {
        Self::with_capabilities(BackendCapabilities::ALL)
    }

    /// An empty store implementing only the optional operations in `capabilities`; the others
    /// return [`KmsError::Unsupported`], as the trait's defaults do.
    pub fn with_capabilities(capabilities: BackendCapabilities) -> Self {
        Self {
            keys: Mutex::new(BTreeMap::new()),
            aliases: Mutex::new(AliasTable::default()),
            capabilities,
            healthy: AtomicBool::new(true),
            earliest_expiry: AtomicI64::new(i64::MAX),
        }
    }

    /// Makes [`KmsBackend::health_check`] report `healthy` (it starts healthy).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Number of keys held, in any state.
    pub fn key_count(&self) -> usize {
        self.lock().len()
    }

    /// Removes keys whose scheduled deletion date is at or before `now`, as a deletion sweep
    /// would; returns their ids, ascending (as every backend's `purge_expired_keys`).
    pub fn purge_expired_keys(&self, now: OffsetDateTime) -> Vec<String> {
        let mut keys = self.lock();
        let due: Vec<String> = keys
            .iter()
            .filter(|(_, rec)| {
                rec.metadata.key_state == KeyState::PendingDeletion
                    && rec.metadata.deletion_date.is_some_and(|date| date <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            keys.remove(id);
        }
        due
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, KeyRecord>> {
        // A panic while holding the lock cannot leave a record half-written (every mutation
        // is a single assignment), so a poisoned map is still consistent.
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Imported material past its `valid_to` is deleted before anyone sees the key, so
        // the key reads as `PendingImport` from that instant on.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if now >= self.earliest_expiry.load(Ordering::Relaxed) {
            let mut next = i64::MAX;
            for rec in keys.values_mut() {
                match rec.metadata.valid_to.map(OffsetDateTime::unix_timestamp) {
                    Some(at) if at <= now => delete_material(rec),
                    Some(at) => next = next.min(at),
                    None => {}
                }
            }
            self.earliest_expiry.store(next, Ordering::Relaxed);
        }
        keys
    }

    fn aliases(&self) -> MutexGuard<'_, AliasTable> {
        self.aliases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key_exists(&self, key_id: &str) -> bool {
        self.lock().contains_key(key_id)
    }

    fn require(&self, supported: bool, operation: &'static str) -> Result<()> {
        if supported { Ok(()) } else { Err(self.unsupported(operation)) }
    }

    /// A fresh data key of the request's spec, sealed under the current version of its key.
    fn data_key(&self, request: GenerateDataKeyRequest, operation: Operation) -> Result<GenerateDataKeyResponse> {
        check_key_id(&request.key_id)?;
        let data_key = random_bytes(request.key_spec.key_len())?;
        let keys = self.lock();
        let rec = get(&keys, &request.key_id)?;
        require_state(rec, operation)?;
        let (key_version, ciphertext_blob) = rec.seal(data_key.expose_secret(), &request.encryption_context)?;
        Ok(GenerateDataKeyResponse { key_id: request.key_id, key_version, plaintext_key: data_key, ciphertext_blob })
    }
}

fn get<'a>(keys: &'a BTreeMap<String, KeyRecord>, key_id: &str) -> Result<&'a KeyRecord> {
    keys.get(key_id).ok_or_else(|| KmsError::key_not_found(key_id))
}

fn get_mut<'a>(keys: &'a mut BTreeMap<String, KeyRecord>, key_id: &str) -> Result<&'a mut KeyRecord> {
    keys.get_mut(key_id).ok_or_else(|| KmsError::key_not_found(key_id))
}

/// The key-state table of [`kms_types::operation`]: `Ok` when `rec`'s state allows `operation`.
fn require_state(rec: &KeyRecord, operation: Operation) -> Result<()> {
    operation.check_key_state(&rec.metadata.key_id, rec.metadata.key_state)
}

/// Moves `rec` to the state `operation` leads to (after [`require_state`] allowed it).
fn advance(rec: &mut KeyRecord, operation: Operation) {
    rec.metadata.key_state = operation.next_state(rec.metadata.key_state);
}

impl KeyRecord {
    fn current(&self) -> Result<(u32, &MasterKey)> {
        let version = self.metadata.current_version;
        self.version(version).map(|key| (version, key))
    }

    fn version(&self, version: u32) -> Result<&MasterKey> {
        version
            .checked_sub(1)
            .and_then(|i| self.versions.get(i as usize))
            .and_then(Option::as_ref)
            .ok_or_else(KmsError::crypto)
    }

    /// Seals `plaintext` under the current version into a `KMM2` blob.
    fn seal(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<(u32, Vec<u8>)> {
        let (version, key) = self.current()?;
        let binding = Binding { master_key_id: &self.metadata.key_id, master_key_version: version, context };
        let sealed = envelope::seal(key, plaintext, &binding)?;
        Ok((version, blob::encode(&self.metadata.key_id, version, &sealed)))
    }
}

/// Forgets every version's imported material (keeping the fingerprints): `PendingImport`.
fn delete_material(rec: &mut KeyRecord) {
    rec.versions.iter_mut().for_each(|v| *v = None);
    rec.metadata.valid_to = None;
    if matches!(rec.metadata.key_state, KeyState::Enabled | KeyState::Disabled) {
        rec.metadata.key_state = Operation::DeleteImportedKeyMaterial.next_state(rec.metadata.key_state);
    }
}

fn random_key() -> Result<MasterKey> {
    Ok(KeyEncryptionKey::generate()?)
}

fn random_bytes(len: usize) -> Result<SecretBytes> {
    let mut bytes = vec![0u8; len];
    kms_crypto::rand::fill(&mut bytes)?;
    Ok(SecretBytes::new(bytes))
}

fn check_key_id(key_id: &str) -> Result<()> {
    validate_key_id("key_id", key_id)
}

fn metadata_response(rec: &KeyRecord) -> KeyMetadataResponse {
    KeyMetadataResponse { key_metadata: rec.metadata.clone() }
}

/// Decrypts `blob` with its key, checking the optional expected key id and the key's state.
fn open_blob(
    keys: &BTreeMap<String, KeyRecord>,
    ciphertext: &[u8],
    context: &EncryptionContext,
    expected_key: Option<&str>,
    operation: Operation,
) -> Result<(String, u32, Zeroizing<Vec<u8>>)> {
    if let Some(expected) = expected_key {
        check_key_id(expected)?;
    }
    let (key_id, version, sealed) = blob::decode(ciphertext)?;
    if expected_key.is_some_and(|expected| expected != key_id) {
        return Err(KmsError::crypto());
    }
    let rec = get(keys, key_id)?;
    require_state(rec, operation)?;
    let key = rec.version(version)?;
    let binding = Binding { master_key_id: key_id, master_key_version: version, context };
    let plaintext = envelope::open(key, sealed, &binding)?;
    Ok((key_id.to_owned(), version, plaintext))
}

#[async_trait]
impl KmsBackend for MemoryBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        if let Some(name) = &request.key_name {
            validate_key_id("key_name", name)?;
        }
        let origin = request.origin.unwrap_or_default();
        if origin != KeyOrigin::Kms && !self.capabilities.import_key_material {
            // Without import, a key of external origin could never leave `PendingImport`.
            return Err(KmsError::Unsupported { operation: "create_key with an external origin", backend: "memory" });
        }
        // An external key has no material until it is imported.
        let (versions, key_state) = match origin {
            KeyOrigin::Kms => (vec![Some(random_key()?)], KeyState::Enabled),
            _ => (Vec::new(), KeyState::PendingImport),
        };
        let mut keys = self.lock();
        let key_id = match request.key_name {
            Some(name) if keys.contains_key(&name) => return Err(KmsError::KeyAlreadyExists { key_id: name }),
            Some(name) => name,
            None => loop {
                let id = kms_crypto::rand::key_id()?;
                if !keys.contains_key(&id) {
                    break id;
                }
            },
        };
        let metadata = KeyMetadata {
            key_id: key_id.clone(),
            key_state,
            key_usage: request.key_usage,
            key_spec: KeySpec::Aes256,
            origin,
            description: request.description,
            tags: request.tags,
            creation_date: OffsetDateTime::now_utc(),
            deletion_date: None,
            current_version: 1,
            rotation_date: None,
            valid_to: None,
        };
        keys.insert(key_id.clone(), KeyRecord { metadata: metadata.clone(), versions, fingerprints: Vec::new() });
        Ok(CreateKeyResponse { key_id, key_metadata: metadata })
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        check_key_id(&request.key_id)?;
        let keys = self.lock();
        let rec = get(&keys, &request.key_id)?;
        require_state(rec, Operation::Encrypt)?;
        let (key_version, ciphertext_blob) =
            rec.seal(request.plaintext.expose_secret(), &request.encryption_context)?;
        Ok(EncryptResponse { key_id: request.key_id, key_version, ciphertext_blob })
    }

    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
        let keys = self.lock();
        let (key_id, key_version, plaintext) = open_blob(
            &keys,
            &request.ciphertext_blob,
            &request.encryption_context,
            request.key_id.as_deref(),
            Operation::Decrypt,
        )?;
        Ok(DecryptResponse { key_id, key_version, plaintext: SecretBytes::new(plaintext.to_vec()) })
    }

    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        self.data_key(request, Operation::GenerateDataKey)
    }

    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        check_key_id(&request.key_id)?;
        let keys = self.lock();
        Ok(DescribeKeyResponse { key_metadata: get(&keys, &request.key_id)?.metadata.clone() })
    }

    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = validate_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_key_id("marker", marker)?;
        }
        let prefix = request.checked_prefix()?;
        let keys = self.lock();
        // The marker is a position, not a cursor: it stays valid when its key is removed. A
        // prefix is a range: the scan starts at it and stops at the first id outside it.
        let start = match &request.marker {
            Some(m) if m.as_str() >= prefix => Bound::Excluded(m.clone()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut page: Vec<KeyListEntry> = keys
            .range((start, Bound::Unbounded))
            .take_while(|(id, _)| id.starts_with(prefix))
            .take(limit + 1)
            .map(|(id, rec)| KeyListEntry { key_id: id.clone(), key_state: rec.metadata.key_state })
            .collect();
        let truncated = page.len() > limit;
        page.truncate(limit);
        let next_marker = if truncated { page.last().map(|e| e.key_id.clone()) } else { None };
        Ok(ListKeysResponse { keys: page, next_marker, truncated })
    }

    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        check_key_id(&request.key_id)?;
        let days = validate_pending_window(request.pending_window_in_days)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::ScheduleKeyDeletion)?;
        let deletion_date = OffsetDateTime::now_utc() + time::Duration::days(i64::from(days));
        advance(rec, Operation::ScheduleKeyDeletion);
        rec.metadata.deletion_date = Some(deletion_date);
        Ok(DeleteKeyResponse { key_id: request.key_id, key_state: KeyState::PendingDeletion, deletion_date })
    }

    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::CancelKeyDeletion)?;
        advance(rec, Operation::CancelKeyDeletion);
        rec.metadata.deletion_date = None;
        Ok(CancelKeyDeletionResponse { key_id: request.key_id, key_state: KeyState::Disabled })
    }

    async fn health_check(&self) -> Result<bool> {
        Ok(self.healthy.load(Ordering::Relaxed))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        blob::decode(ciphertext_blob).ok().map(|(key_id, _, _)| key_id.to_owned())
    }

    fn capabilities(&self) -> BackendCapabilities {
        self.capabilities
    }

    async fn import_key_material(&self, request: ImportMaterial) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.import_key_material, "import_key_material")?;
        check_key_id(&request.key_id)?;
        let material = KeyEncryptionKey::from_bytes(request.material.expose_secret())?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        if rec.metadata.origin != KeyOrigin::External {
            return Err(KmsError::import_refused(&request.key_id, ImportRefusal::NotExternalKey));
        }
        require_state(rec, Operation::ImportKeyMaterial)?;
        let known = rec.fingerprints.iter().position(|f| *f == request.fingerprint);
        let version = match (request.new_version, known) {
            (true, _) if rec.fingerprints.is_empty() || rec.metadata.key_state == KeyState::PendingImport => {
                return Err(KmsError::import_refused(&request.key_id, ImportRefusal::NoMaterialYet));
            }
            // A new version must be new material: the same bytes twice would be one key
            // under two version numbers.
            (true, Some(_)) => {
                return Err(KmsError::import_refused(&request.key_id, ImportRefusal::IncorrectKeyMaterial));
            }
            (true, None) => {
                rec.versions.push(None);
                rec.fingerprints.push(request.fingerprint);
                rec.metadata.rotation_date = Some(OffsetDateTime::now_utc());
                rec.versions.len()
            }
            (false, Some(index)) => index + 1,
            (false, None) if rec.fingerprints.is_empty() => {
                rec.versions.push(None);
                rec.fingerprints.push(request.fingerprint);
                1
            }
            (false, None) => {
                return Err(KmsError::import_refused(&request.key_id, ImportRefusal::IncorrectKeyMaterial));
            }
        };
        rec.versions[version - 1] = Some(material);
        if request.new_version {
            rec.metadata.current_version =
                u32::try_from(version).map_err(|_| KmsError::backend("key version counter overflow"))?;
        }
        rec.metadata.valid_to = request.valid_to;
        if let Some(valid_to) = request.valid_to {
            self.earliest_expiry.fetch_min(valid_to.unix_timestamp(), Ordering::Relaxed);
        }
        // Usable once the version new ciphertexts are made with has its material.
        let current = rec.metadata.current_version as usize;
        if rec.metadata.key_state == KeyState::PendingImport
            && rec.versions.get(current - 1).is_some_and(Option::is_some)
        {
            advance(rec, Operation::ImportKeyMaterial);
        }
        Ok(metadata_response(rec))
    }

    async fn delete_imported_key_material(
        &self,
        request: DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.import_key_material, "delete_imported_key_material")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        if rec.metadata.origin != KeyOrigin::External {
            return Err(KmsError::import_refused(&request.key_id, ImportRefusal::NotExternalKey));
        }
        require_state(rec, Operation::DeleteImportedKeyMaterial)?;
        delete_material(rec);
        Ok(metadata_response(rec))
    }

    fn supports_aliases(&self) -> bool {
        true
    }

    async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        let exists = self.key_exists(&request.target_key_id);
        self.aliases().create(request, exists)
    }

    async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        let exists = self.key_exists(&request.target_key_id);
        self.aliases().update(request, exists)
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.aliases().delete(alias_name).map(drop)
    }

    async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        self.aliases().list(&request)
    }

    async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        self.aliases().resolve(alias_name)
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        self.require(self.capabilities.data_key_without_plaintext, "generate_data_key_without_plaintext")?;
        let request = GenerateDataKeyRequest {
            key_id: request.key_id,
            key_spec: request.key_spec,
            encryption_context: request.encryption_context,
        };
        let response = self.data_key(request, Operation::GenerateDataKeyWithoutPlaintext)?;
        Ok(GenerateDataKeyWithoutPlaintextResponse {
            key_id: response.key_id,
            key_version: response.key_version,
            ciphertext_blob: response.ciphertext_blob,
        })
    }

    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.enable_disable, "enable_key")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::EnableKey)?;
        advance(rec, Operation::EnableKey);
        Ok(metadata_response(rec))
    }

    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.enable_disable, "disable_key")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::DisableKey)?;
        advance(rec, Operation::DisableKey);
        Ok(metadata_response(rec))
    }

    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.rotate, "rotate_key")?;
        check_key_id(&request.key_id)?;
        let material = random_key()?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::RotateKey)?;
        if rec.metadata.origin != KeyOrigin::Kms {
            // Every external key here is a BYOK key: its material comes only from its owner.
            return Err(self.unsupported("rotate_key of a key with imported material (import a new version instead)"));
        }
        rec.versions.push(Some(material));
        rec.metadata.current_version =
            u32::try_from(rec.versions.len()).map_err(|_| KmsError::backend("key version counter overflow"))?;
        rec.metadata.rotation_date = Some(OffsetDateTime::now_utc());
        Ok(metadata_response(rec))
    }

    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        self.require(self.capabilities.re_encrypt, "re_encrypt")?;
        if let Some(destination) = &request.destination_key_id {
            validate_key_id("destination_key_id", destination)?;
        }
        let keys = self.lock();
        let (source_key_id, source_key_version, plaintext) =
            open_blob(&keys, &request.ciphertext_blob, &request.source_encryption_context, None, Operation::ReEncrypt)?;
        let destination_id = request.destination_key_id.as_deref().unwrap_or(&source_key_id);
        let destination = get(&keys, destination_id)?;
        require_state(destination, Operation::ReEncrypt)?;
        let context = request.destination_encryption_context.as_ref().unwrap_or(&request.source_encryption_context);
        let (key_version, ciphertext_blob) = destination.seal(&plaintext, context)?;
        Ok(ReEncryptResponse {
            ciphertext_blob,
            key_id: destination_id.to_owned(),
            source_key_id,
            source_key_version,
            key_version,
        })
    }

    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.update_description, "update_key_description")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::UpdateKeyDescription)?;
        rec.metadata.description = Some(request.description);
        Ok(metadata_response(rec))
    }

    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.tags, "tag_key")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::TagKey)?;
        rec.metadata.tags.extend(request.tags);
        Ok(metadata_response(rec))
    }

    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        self.require(self.capabilities.tags, "untag_key")?;
        check_key_id(&request.key_id)?;
        let mut keys = self.lock();
        let rec = get_mut(&mut keys, &request.key_id)?;
        require_state(rec, Operation::UntagKey)?;
        for name in &request.tag_keys {
            rec.metadata.tags.remove(name);
        }
        Ok(metadata_response(rec))
    }
}

/// A [`BackendFactory`] that builds [`MemoryBackend`]s, registered under a backend kind of
/// your choice (the configuration's backend settings are ignored). For tests of the service
/// manager and of applications embedding it; never register it in production.
#[derive(Debug, Clone)]
pub struct MemoryBackendFactory {
    kind: config::KmsBackend,
    shared: Option<Arc<MemoryBackend>>,
}

impl MemoryBackendFactory {
    /// Builds a fresh, empty [`MemoryBackend`] for every configuration of `kind`.
    pub fn new(kind: config::KmsBackend) -> Self {
        Self { kind, shared: None }
    }

    /// Hands out `backend` itself for every configuration of `kind`, so keys survive a
    /// reconfigure and the test can reach the backend (to make it unhealthy, say).
    pub fn sharing(kind: config::KmsBackend, backend: Arc<MemoryBackend>) -> Self {
        Self { kind, shared: Some(backend) }
    }
}

#[async_trait]
impl BackendFactory for MemoryBackendFactory {
    fn kind(&self) -> config::KmsBackend {
        self.kind.clone()
    }

    async fn build(&self, _config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        Ok(match &self.shared {
            Some(backend) => Arc::clone(backend) as Arc<dyn KmsBackend>,
            None => Arc::new(MemoryBackend::new()),
        })
    }
}

/// The `KMM2` blob: which key and version sealed the envelope.
mod blob {
    use kms_types::error::{KmsError, Result};

    const MAGIC: &[u8; 4] = b"KMM2";

    pub(super) fn encode(key_id: &str, version: u32, sealed: &[u8]) -> Vec<u8> {
        let id = key_id.as_bytes();
        let mut out = Vec::with_capacity(4 + 2 + id.len() + 4 + sealed.len());
        out.extend_from_slice(MAGIC);
        // Key ids are at most 256 bytes (`validate_key_id`), so the length fits a u16.
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(sealed);
        out
    }

    /// Splits a blob into key id, version and sealed payload; any malformation is an opaque
    /// crypto error.
    pub(super) fn decode(blob: &[u8]) -> Result<(&str, u32, &[u8])> {
        let rest = blob.strip_prefix(MAGIC.as_slice()).ok_or_else(KmsError::crypto)?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(KmsError::crypto)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(KmsError::crypto());
        }
        let (id, rest) = rest.split_at(len);
        let id = std::str::from_utf8(id).map_err(|_| KmsError::crypto())?;
        if kms_types::types::validate_key_id("key_id", id).is_err() {
            return Err(KmsError::crypto());
        }
        let (version, sealed) = rest.split_first_chunk::<4>().ok_or_else(KmsError::crypto)?;
        Ok((id, u32::from_be_bytes(*version), sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt_req(key_id: &str, plaintext: &[u8]) -> EncryptRequest {
        EncryptRequest { key_id: key_id.into(), plaintext: plaintext.into(), encryption_context: Default::default() }
    }

    #[tokio::test]
    async fn ciphertexts_name_key_and_version() {
        let backend = MemoryBackend::new();
        let key = backend.create_key(CreateKeyRequest::default()).await.unwrap();
        let sealed = backend.encrypt(encrypt_req(&key.key_id, b"x")).await.unwrap();
        let (id, version, _) = blob::decode(&sealed.ciphertext_blob).unwrap();
        assert_eq!((id, version), (key.key_id.as_str(), 1));
        validate_key_id("key_id", &key.key_id).unwrap();
        assert_eq!(key.key_id.len(), 36, "a kms_crypto::rand::key_id, as every backend makes");
    }

    #[tokio::test]
    async fn purge_removes_only_due_keys_and_markers_still_work() {
        let backend = MemoryBackend::new();
        for id in ["a", "b", "c"] {
            backend.create_key(CreateKeyRequest { key_name: Some(id.into()), ..Default::default() }).await.unwrap();
        }
        backend.delete_key(DeleteKeyRequest { key_id: "b".into(), pending_window_in_days: Some(7) }).await.unwrap();
        assert!(backend.purge_expired_keys(OffsetDateTime::now_utc()).is_empty());
        let later = OffsetDateTime::now_utc() + time::Duration::days(8);
        assert_eq!(backend.purge_expired_keys(later), ["b"]);
        let page = backend
            .list_keys(ListKeysRequest { limit: None, marker: Some("b".into()), ..Default::default() })
            .await
            .unwrap();
        let ids: Vec<_> = page.keys.iter().map(|k| k.key_id.as_str()).collect();
        assert_eq!(ids, ["c"]);
    }

    #[tokio::test]
    async fn debug_shows_no_key_material() {
        let backend = MemoryBackend::new();
        backend.create_key(CreateKeyRequest::default()).await.unwrap();
        assert_eq!(
            format!("{backend:?}").split_once('{').unwrap().1.trim(),
            format!("keys: 1, capabilities: {:?}, healthy: true }}", BackendCapabilities::ALL)
        );
    }

    /// Known-answer vector of the `KMM2` blob (`docs/vectors/memory-blob-v2.json`, which also
    /// holds this hex): key
    /// `"k1"`, version 2, key material 0x42 × 32, context `{"bucket": "b"}`, plaintext "hello".
    #[test]
    fn known_answer_kmm2_blob_opens() {
        let vector = include_str!("../../../docs/vectors/memory-blob-v2.json");
        assert!(vector.contains(KAT_KMM2) && vector.contains(&format!("\"kek\": \"{}\"", "42".repeat(32))));
        let blob = hex(KAT_KMM2);
        let (key_id, version, sealed) = blob::decode(&blob).unwrap();
        assert_eq!((key_id, version), ("k1", 2));
        let key = KeyEncryptionKey::from_bytes(&[0x42; 32]).unwrap();
        let context: EncryptionContext = [("bucket".to_owned(), "b".to_owned())].into();
        let binding = Binding { master_key_id: key_id, master_key_version: version, context: &context };
        assert_eq!(&envelope::open(&key, sealed, &binding).unwrap()[..], b"hello");
        // Bound to the version in the header and to the key: another version or key fails.
        let v1 = Binding { master_key_version: 1, ..binding };
        assert!(matches!(envelope::open(&key, sealed, &v1), Err(kms_crypto::CryptoError::Unauthenticated)));
        let other = KeyEncryptionKey::from_bytes(&[0x41; 32]).unwrap();
        assert!(matches!(envelope::open(&other, sealed, &binding), Err(kms_crypto::CryptoError::Unauthenticated)));
        // A fresh seal has the same framing and length (the envelope's salt is random).
        let fresh = blob::encode("k1", 2, &envelope::seal(&key, b"hello", &binding).unwrap());
        assert_eq!((&fresh[..12], fresh.len()), (&blob[..12], blob.len()));
    }

    #[tokio::test]
    async fn other_blob_formats_and_tampering_are_opaque_crypto_errors() {
        let backend = MemoryBackend::new();
        let key = backend.create_key(CreateKeyRequest::default()).await.unwrap();
        let sealed = backend.encrypt(encrypt_req(&key.key_id, b"x")).await.unwrap().ciphertext_blob;
        let decrypt = |blob: Vec<u8>| {
            backend.decrypt(DecryptRequest {
                ciphertext_blob: blob,
                encryption_context: Default::default(),
                key_id: None,
            })
        };
        let mut kmm1 = sealed.clone();
        kmm1[3] = b'1';
        assert!(matches!(decrypt(kmm1).await, Err(KmsError::Crypto { .. })));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decrypt(flipped).await, Err(KmsError::Crypto { .. })));
        assert_eq!(decrypt(sealed).await.unwrap().plaintext.expose_secret(), b"x");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    const KAT_KMM2: &str = "4b4d4d3200026b31000000020201368efcfa8fe913a7449095dca8422e76628daa03e7d79356b2939b55bcd4b01fb61f8e37deb7de9243a9e62340ab3d8495f9a992b5";

    #[tokio::test]
    async fn unhealthy_backend_reports_false() {
        let backend = MemoryBackend::new();
        backend.set_healthy(false);
        assert!(!backend.health_check().await.unwrap());
    }
}
