//! Import of key material (BYOK, `docs/byok.md`), through the [`KmsManager`] that holds the
//! import sessions: run on every backend that declares
//! [`BackendCapabilities::import_key_material`](kms_types::types::BackendCapabilities); on the
//! others, parameters are refused as `Unsupported`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kms_crypto::wrapping::wrap_material;
use kms_types::byok::{
    DeleteImportedKeyMaterialRequest, GetParametersForImportRequest, ImportKeyMaterialRequest, ImportRefusal,
    WrappingKeySpec,
};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, DescribeKeyRequest, EncryptRequest, EncryptionContext, GenerateDataKeyRequest,
    KeyMetadataResponse, KeyOrigin, KeySpec, KeyState, RotateKeyRequest,
};
use time::OffsetDateTime;

use super::Outcome;
use super::ctx::{Ctx, err, is_crypto, is_invalid_request, is_refused, is_unsupported, ok};
use crate::import_sessions::{ImportSessions, MAX_IMPORT_SESSIONS};
use crate::manager::{KmsManager, ManagerOptions};

/// A manager over the case's backend whose import sessions run on `now` (Unix seconds).
fn manager(ctx: &Ctx, now: &Arc<AtomicI64>) -> KmsManager {
    let now = Arc::clone(now);
    let clock = Arc::new(move || OffsetDateTime::now_utc() + time::Duration::seconds(now.load(Ordering::SeqCst)));
    let sessions = ImportSessions::new(clock, kms_types::byok::IMPORT_PARAMETERS_LIFETIME, MAX_IMPORT_SESSIONS);
    KmsManager::with_options(ctx.backend.clone(), ManagerOptions { cache: None, ..ManagerOptions::default() })
        .with_import_sessions(sessions)
}

fn is_refusal(reason: ImportRefusal) -> impl Fn(&KmsError) -> bool {
    move |e| matches!(e, KmsError::ImportRefused { reason: r, .. } if *r == reason)
}

/// Parameters for `key_id`, then `material` wrapped under them, imported.
async fn import(
    m: &KmsManager,
    key_id: &str,
    material: &[u8],
    valid_to: Option<OffsetDateTime>,
    new_version: bool,
) -> Result<KeyMetadataResponse> {
    let params = m
        .get_parameters_for_import(GetParametersForImportRequest {
            key_id: key_id.into(),
            wrapping_key_spec: WrappingKeySpec::Rsa3072,
            ..Default::default()
        })
        .await?;
    let wrapped = wrap_material(&params.public_key, material)?;
    m.import_key_material(ImportKeyMaterialRequest {
        key_id: key_id.into(),
        encrypted_key_material: wrapped,
        import_token: params.import_token,
        valid_to,
        new_version,
    })
    .await
}

async fn create_external(ctx: &Ctx, label: &str) -> std::result::Result<String, String> {
    let request = CreateKeyRequest { origin: Some(KeyOrigin::External), ..Default::default() };
    let meta = ok(format!("create_key({label}, origin External)"), ctx.create_with(label, request).await)?;
    if meta.key_state != KeyState::PendingImport || meta.origin != KeyOrigin::External {
        return Err(format!("a new external key must be PendingImport/External, got {meta:?}"));
    }
    Ok(meta.key_id)
}

async fn encrypt(m: &KmsManager, key_id: &str) -> Result<Vec<u8>> {
    m.encrypt(EncryptRequest {
        key_id: key_id.into(),
        plaintext: b"byok".as_slice().into(),
        encryption_context: EncryptionContext::new(),
    })
    .await
    .map(|r| r.ciphertext_blob)
}

async fn decrypt(m: &KmsManager, blob: &[u8]) -> Result<(u32, Vec<u8>)> {
    m.decrypt(DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: EncryptionContext::new(),
        key_id: None,
    })
    .await
    .map(|r| (r.key_version, r.plaintext.expose_secret().to_vec()))
}

/// On a backend without import: the parameters are `Unsupported`. `None`: go on.
async fn unsupported_here(ctx: &Ctx, m: &KmsManager) -> Option<Outcome> {
    if ctx.caps.import_key_material {
        return None;
    }
    let key_id = match ctx.create("no-import").await {
        Ok(id) => id,
        Err(e) => return Some(Err(e)),
    };
    let params = m.get_parameters_for_import(GetParametersForImportRequest { key_id, ..Default::default() }).await;
    Some(err("get_parameters_for_import without the capability", params, "Unsupported", is_unsupported).map(drop))
}

/// An external key is `PendingImport` until imported, and refuses cryptographic use; material
/// imported makes it `Enabled`; the same material may come back, different material never.
pub(super) async fn import_key_material_lifecycle(ctx: Ctx) -> Outcome {
    let now = Arc::new(AtomicI64::new(0));
    let m = manager(&ctx, &now);
    if let Some(outcome) = unsupported_here(&ctx, &m).await {
        return outcome;
    }
    let key_id = create_external(&ctx, "byok").await?;
    let refused = encrypt(&m, &key_id).await;
    err(
        "encrypt on a PendingImport key",
        refused,
        "InvalidKeyState",
        is_refused(&key_id, KeyState::PendingImport, Operation::Encrypt),
    )?;
    let data_key = m
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key_id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: EncryptionContext::new(),
        })
        .await;
    let expected = is_refused(&key_id, KeyState::PendingImport, Operation::GenerateDataKey);
    err("generate_data_key on a PendingImport key", data_key, "InvalidKeyState", expected)?;

    let material = [0x5Au8; 32];
    let imported = ok("import_key_material", import(&m, &key_id, &material, None, false).await)?;
    ensure!(imported.key_metadata.key_state == KeyState::Enabled, "after import: {:?}", imported.key_metadata);
    ctx.expect_state(&key_id, KeyState::Enabled, "import_key_material").await?;
    let blob = ok("encrypt after import", encrypt(&m, &key_id).await)?;
    let (_, plaintext) = ok("decrypt after import", decrypt(&m, &blob).await)?;
    ensure!(plaintext == b"byok", "round trip gave {plaintext:?}");

    ok("re-import of the same material", import(&m, &key_id, &material, None, false).await)?;
    let different = import(&m, &key_id, &[0x5Bu8; 32], None, false).await;
    err(
        "import of different material",
        different,
        "incorrect_key_material",
        is_refusal(ImportRefusal::IncorrectKeyMaterial),
    )?;

    let deleted = m.delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id: key_id.clone() }).await;
    ok("delete_imported_key_material", deleted)?;
    ctx.expect_state(&key_id, KeyState::PendingImport, "delete_imported_key_material").await?;
    let refused = decrypt(&m, &blob).await;
    err(
        "decrypt after the material was deleted",
        refused,
        "InvalidKeyState",
        is_refused(&key_id, KeyState::PendingImport, Operation::Decrypt),
    )?;
    let different = import(&m, &key_id, &[0x5Bu8; 32], None, false).await;
    err(
        "different material after delete",
        different,
        "incorrect_key_material",
        is_refusal(ImportRefusal::IncorrectKeyMaterial),
    )?;
    ok("re-import after delete", import(&m, &key_id, &material, None, false).await)?;
    let (_, plaintext) = ok("decrypt of the old ciphertext after re-import", decrypt(&m, &blob).await)?;
    ensure!(plaintext == b"byok", "old ciphertext gave {plaintext:?}");

    // Keys kms generated take no material.
    let kms_key = ctx.create("kms-made").await?;
    let params = m
        .get_parameters_for_import(GetParametersForImportRequest { key_id: kms_key.clone(), ..Default::default() })
        .await;
    err("parameters for a key kms generated", params, "not_external_key", is_refusal(ImportRefusal::NotExternalKey))?;
    let deleted = m.delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id: kms_key }).await;
    err(
        "delete material of a key kms generated",
        deleted,
        "not_external_key",
        is_refusal(ImportRefusal::NotExternalKey),
    )?;
    Ok(())
}

/// Wrong, foreign and expired tokens, material of the wrong length and tampered wrapped
/// bytes are refused, each with its own error; none changes the key.
pub(super) async fn import_refuses_bad_tokens_and_material(ctx: Ctx) -> Outcome {
    let now = Arc::new(AtomicI64::new(0));
    let m = manager(&ctx, &now);
    if let Some(outcome) = unsupported_here(&ctx, &m).await {
        return outcome;
    }
    let key_id = create_external(&ctx, "bad").await?;
    let other = create_external(&ctx, "other").await?;
    let params = |key_id: &str| {
        m.get_parameters_for_import(GetParametersForImportRequest {
            key_id: key_id.into(),
            wrapping_key_spec: WrappingKeySpec::Rsa3072,
            ..Default::default()
        })
    };
    let ours = ok("get_parameters_for_import", params(&key_id).await)?;
    let theirs = ok("get_parameters_for_import(other)", params(&other).await)?;
    let request = |wrapped: Vec<u8>, token: &[u8]| ImportKeyMaterialRequest {
        key_id: key_id.clone(),
        encrypted_key_material: wrapped,
        import_token: token.to_vec(),
        valid_to: None,
        new_version: false,
    };
    let good = ok("wrap", wrap_material(&ours.public_key, &[1u8; 32]).map_err(KmsError::from))?;

    let mut wrong_token = ours.import_token.clone();
    wrong_token[0] ^= 1;
    let r = m.import_key_material(request(good.clone(), &wrong_token)).await;
    err("a wrong token", r, "invalid_import_token", is_refusal(ImportRefusal::InvalidImportToken))?;
    let r = m.import_key_material(request(good.clone(), &theirs.import_token)).await;
    err("another key's token", r, "invalid_import_token", is_refusal(ImportRefusal::InvalidImportToken))?;
    let for_theirs = ok("wrap", wrap_material(&theirs.public_key, &[1u8; 32]).map_err(KmsError::from))?;
    let r = m.import_key_material(request(for_theirs, &ours.import_token)).await;
    err("material wrapped under another key's parameters", r, "Crypto", is_crypto)?;
    let mut tampered = good.clone();
    tampered[7] ^= 0x80;
    let r = m.import_key_material(request(tampered, &ours.import_token)).await;
    err("tampered wrapped material", r, "Crypto", is_crypto)?;
    let r = m.import_key_material(request(good[..good.len() - 1].to_vec(), &ours.import_token)).await;
    err("truncated wrapped material", r, "Crypto", is_crypto)?;
    for len in [16, 31, 33] {
        let short = ok("wrap", wrap_material(&ours.public_key, &vec![1u8; len]).map_err(KmsError::from))?;
        let r = m.import_key_material(request(short, &ours.import_token)).await;
        err(
            format!("{len}-byte material"),
            r,
            "InvalidRequest(encrypted_key_material)",
            is_invalid_request("encrypted_key_material"),
        )?;
    }
    ctx.expect_state(&key_id, KeyState::PendingImport, "refused imports").await?;

    // 24 hours later the parameters are refused as expired.
    now.store(24 * 3600 + 1, Ordering::SeqCst);
    let r = m.import_key_material(request(good, &ours.import_token)).await;
    err("expired parameters", r, "expired_import_token", is_refusal(ImportRefusal::ExpiredImportToken))?;
    ctx.expect_state(&key_id, KeyState::PendingImport, "an expired import").await?;

    // A token is used up by a successful import.
    now.store(0, Ordering::SeqCst);
    let fresh = ok("get_parameters_for_import", params(&key_id).await)?;
    let wrapped = ok("wrap", wrap_material(&fresh.public_key, &[1u8; 32]).map_err(KmsError::from))?;
    ok("import", m.import_key_material(request(wrapped.clone(), &fresh.import_token)).await)?;
    let r = m.import_key_material(request(wrapped, &fresh.import_token)).await;
    err("a used token", r, "invalid_import_token", is_refusal(ImportRefusal::InvalidImportToken))?;
    Ok(())
}

/// Material imported with `valid_to` expires: the key is `PendingImport` again.
pub(super) async fn imported_material_expires(ctx: Ctx) -> Outcome {
    let now = Arc::new(AtomicI64::new(0));
    let m = manager(&ctx, &now);
    if let Some(outcome) = unsupported_here(&ctx, &m).await {
        return outcome;
    }
    let key_id = create_external(&ctx, "expiring").await?;
    // Wrapping keys take a while on a loaded machine: the expiry leaves room for them.
    let valid_to = OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let imported = ok("import with valid_to", import(&m, &key_id, &[3u8; 32], Some(valid_to), false).await)?;
    ensure!(
        imported.key_metadata.valid_to.map(OffsetDateTime::unix_timestamp) == Some(valid_to.unix_timestamp()),
        "valid_to not reported: {:?}",
        imported.key_metadata
    );
    ok("encrypt before expiry", encrypt(&m, &key_id).await)?;
    let left = (valid_to - OffsetDateTime::now_utc()).whole_milliseconds().max(0) as u64;
    tokio::time::sleep(Duration::from_millis(left + 1100)).await;
    ctx.expect_state(&key_id, KeyState::PendingImport, "the material's valid_to").await?;
    let refused = encrypt(&m, &key_id).await;
    err(
        "encrypt after expiry",
        refused,
        "InvalidKeyState",
        is_refused(&key_id, KeyState::PendingImport, Operation::Encrypt),
    )?;
    ok("re-import after expiry", import(&m, &key_id, &[3u8; 32], None, false).await)?;
    ctx.expect_state(&key_id, KeyState::Enabled, "re-import").await
}

/// New material as a new version: new ciphertexts use it, older ones still decrypt.
pub(super) async fn import_new_version(ctx: Ctx) -> Outcome {
    let now = Arc::new(AtomicI64::new(0));
    let m = manager(&ctx, &now);
    if let Some(outcome) = unsupported_here(&ctx, &m).await {
        return outcome;
    }
    let key_id = create_external(&ctx, "versions").await?;
    let early = import(&m, &key_id, &[7u8; 32], None, true).await;
    err("new_version on a key without material", early, "no_key_material", is_refusal(ImportRefusal::NoMaterialYet))?;
    ok("first import", import(&m, &key_id, &[7u8; 32], None, false).await)?;
    let old = ok("encrypt under version 1", encrypt(&m, &key_id).await)?;
    let same = import(&m, &key_id, &[7u8; 32], None, true).await;
    err(
        "the same material as a new version",
        same,
        "incorrect_key_material",
        is_refusal(ImportRefusal::IncorrectKeyMaterial),
    )?;
    let v2 = ok("import a new version", import(&m, &key_id, &[8u8; 32], None, true).await)?;
    ensure!(v2.key_metadata.current_version == 2, "current version after a new version: {:?}", v2.key_metadata);
    let new = ok("encrypt under version 2", encrypt(&m, &key_id).await)?;
    let (version, _) = ok("decrypt the new ciphertext", decrypt(&m, &new).await)?;
    ensure!(version == 2, "a new ciphertext is under version {version}");
    let (version, plaintext) = ok("decrypt the old ciphertext", decrypt(&m, &old).await)?;
    ensure!(version == 1 && plaintext == b"byok", "old ciphertext: version {version}, {plaintext:?}");
    // Material of an imported key comes only from its owner: kms never generates a version.
    let rotated = m.rotate_key(RotateKeyRequest { key_id: key_id.clone() }).await;
    err("rotate_key of a key with imported material", rotated, "Unsupported", is_unsupported)?;
    let described = ok("describe after the refused rotation", m.describe_key(DescribeKeyRequest { key_id }).await)?;
    ensure!(
        described.key_metadata.current_version == 2,
        "a refused rotation changed the key: {:?}",
        described.key_metadata
    );
    Ok(())
}
