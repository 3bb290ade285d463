//! The state matrix: every key operation on a key in every state a caller can put it in,
//! against the suite's own expectation table (the one in the [`testkit`](super) docs).
//!
//! The table here is deliberately written out again rather than read from
//! [`kms_types::operation`]: the suite is an independent check of every backend *and* of that
//! table, so a change to either that the other does not share fails a case.

use std::fmt;

use kms_types::error::Result;
use kms_types::operation::Operation;
use kms_types::types::{
    BackendCapabilities, DescribeKeyRequest, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyWithoutPlaintextRequest, KeyIdRequest, KeySpec, KeyState, ReEncryptRequest, TagKeyRequest,
    UntagKeyRequest, UpdateKeyDescriptionRequest,
};

use super::Outcome;
use super::ctx::{Ctx, ctx_of, err, is_not_found, is_refused, is_unsupported, ok};

/// One row of the matrix: an operation on the key under test. `ReEncrypt` is two rows: the
/// key as the source of the ciphertext, and as the destination of another key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Probe {
    op: Operation,
    as_destination: bool,
}

const fn probe(op: Operation) -> Probe {
    Probe { op, as_destination: false }
}

/// Every row, in the order a case runs them.
pub(super) const PROBES: &[Probe] = &[
    probe(Operation::Encrypt),
    probe(Operation::Decrypt),
    probe(Operation::GenerateDataKey),
    probe(Operation::GenerateDataKeyWithoutPlaintext),
    probe(Operation::DescribeKey),
    probe(Operation::EnableKey),
    probe(Operation::DisableKey),
    probe(Operation::ScheduleKeyDeletion),
    probe(Operation::CancelKeyDeletion),
    probe(Operation::RotateKey),
    probe(Operation::ReEncrypt),
    Probe { op: Operation::ReEncrypt, as_destination: true },
    probe(Operation::UpdateKeyDescription),
    probe(Operation::TagKey),
    probe(Operation::UntagKey),
];

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.op, self.as_destination) {
            (Operation::ReEncrypt, true) => f.write_str("re_encrypt (to the key)"),
            (Operation::ReEncrypt, false) => f.write_str("re_encrypt (from the key)"),
            (op, _) => f.write_str(op.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Succeeds; the key is then in this state.
    Ok(KeyState),
    /// `InvalidKeyState` naming the key, its state and the operation; the state does not change.
    Refused,
    /// `Unsupported`: the backend does not declare the capability.
    Unsupported,
}

impl Probe {
    /// Whether the backend declares this operation (the nine required ones always are).
    pub(super) fn supported(self, caps: BackendCapabilities) -> bool {
        match self.op {
            Operation::GenerateDataKeyWithoutPlaintext => caps.data_key_without_plaintext,
            Operation::EnableKey | Operation::DisableKey => caps.enable_disable,
            Operation::RotateKey => caps.rotate,
            Operation::ReEncrypt => caps.re_encrypt,
            Operation::UpdateKeyDescription => caps.update_description,
            Operation::TagKey | Operation::UntagKey => caps.tags,
            _ => true,
        }
    }

    /// Whether the row takes a ciphertext of the key rather than its id.
    pub(super) fn takes_ciphertext(self) -> bool {
        matches!((self.op, self.as_destination), (Operation::Decrypt, _) | (Operation::ReEncrypt, false))
    }

    /// The suite's expectation table.
    fn expect(self, state: KeyState, caps: BackendCapabilities) -> Expect {
        use KeyState::{Disabled, Enabled, PendingDeletion};
        if !self.supported(caps) {
            return Expect::Unsupported;
        }
        let allowed = match self.op {
            Operation::DescribeKey => return Expect::Ok(state),
            Operation::EnableKey => matches!(state, Enabled | Disabled).then_some(Enabled),
            Operation::DisableKey => matches!(state, Enabled | Disabled).then_some(Disabled),
            Operation::ScheduleKeyDeletion => (state != PendingDeletion).then_some(PendingDeletion),
            Operation::CancelKeyDeletion => (state == PendingDeletion).then_some(Disabled),
            Operation::UpdateKeyDescription | Operation::TagKey | Operation::UntagKey => {
                (state != PendingDeletion).then_some(state)
            }
            _ => (state == Enabled).then_some(Enabled),
        };
        allowed.map_or(Expect::Refused, Expect::Ok)
    }

    /// Runs the row on `key_id` (on `blob`, a ciphertext of that key, when it
    /// [takes one](Self::takes_ciphertext); moving `other_blob` to `key_id` for a re-encrypt
    /// to the key).
    pub(super) async fn run(self, ctx: &Ctx, key_id: &str, blob: &[u8], other_blob: &[u8]) -> Result<String> {
        let b = &ctx.backend;
        let id = || KeyIdRequest { key_id: key_id.to_owned() };
        let empty = EncryptionContext::new;
        let shown = |v: &dyn fmt::Debug| format!("{v:?}");
        let data_key =
            || GenerateDataKeyRequest { key_id: key_id.into(), key_spec: KeySpec::Aes256, encryption_context: empty() };
        Ok(match self.op {
            Operation::Encrypt => shown(&ctx.encrypt(key_id, b"x", &empty()).await?.len()),
            Operation::Decrypt => shown(&ctx.decrypt(blob, &empty(), None).await?.len()),
            Operation::GenerateDataKey => shown(&b.generate_data_key(data_key()).await?.key_id),
            Operation::GenerateDataKeyWithoutPlaintext => shown(
                &b.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                    key_id: key_id.into(),
                    key_spec: KeySpec::Aes256,
                    encryption_context: empty(),
                })
                .await?,
            ),
            Operation::DescribeKey => shown(&b.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await?),
            Operation::EnableKey => shown(&b.enable_key(id()).await?),
            Operation::DisableKey => shown(&b.disable_key(id()).await?),
            Operation::ScheduleKeyDeletion => shown(&ctx.delete(key_id, Some(7)).await?),
            Operation::CancelKeyDeletion => shown(&ctx.cancel(key_id).await?),
            Operation::RotateKey => shown(&b.rotate_key(id()).await?),
            Operation::ReEncrypt if self.as_destination => {
                shown(&b.re_encrypt(re_encrypt_request(other_blob, Some(key_id.to_owned()))).await?)
            }
            Operation::ReEncrypt => shown(&b.re_encrypt(re_encrypt_request(blob, None)).await?),
            Operation::UpdateKeyDescription => shown(
                &b.update_key_description(UpdateKeyDescriptionRequest {
                    key_id: key_id.into(),
                    description: "changed by the contract suite".into(),
                })
                .await?,
            ),
            Operation::TagKey => {
                shown(&b.tag_key(TagKeyRequest { key_id: key_id.into(), tags: ctx_of(&[("t", "v")]) }).await?)
            }
            Operation::UntagKey => {
                shown(&b.untag_key(UntagKeyRequest { key_id: key_id.into(), tag_keys: vec!["t".into()] }).await?)
            }
            other => unreachable!("{other} is not a row of the state matrix"),
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

/// Every row on a fresh key in `state`.
async fn state_matrix(ctx: Ctx, state: KeyState) -> Outcome {
    let helper = ctx.create("matrix-helper").await?;
    let helper_blob = ok("encrypt(helper)", ctx.encrypt(&helper, b"contract", &EncryptionContext::new()).await)?;
    for (n, probe) in PROBES.iter().copied().enumerate() {
        let (key_id, blob) = ctx.key_in(&format!("m{n:02}"), state).await?;
        let what = format!("{probe} on a {state} key");
        let result = probe.run(&ctx, &key_id, &blob, &helper_blob).await;
        match probe.expect(state, ctx.caps) {
            Expect::Ok(after) => {
                ok(&what, result)?;
                ctx.expect_state(&key_id, after, &what).await?;
            }
            Expect::Refused => {
                let expected = format!("InvalidKeyState naming {key_id}, {state} and {}", probe.op);
                err(&what, result, &expected, is_refused(&key_id, state, probe.op))?;
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

pub(super) async fn enabled_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::Enabled).await
}

pub(super) async fn disabled_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::Disabled).await
}

pub(super) async fn pending_deletion_key_operations(ctx: Ctx) -> Outcome {
    state_matrix(ctx, KeyState::PendingDeletion).await
}

pub(super) async fn unknown_keys_are_not_found(ctx: Ctx) -> Outcome {
    let missing = ctx.id("never-created");
    let other = ctx.create("known").await?;
    let other_blob = ok("encrypt", ctx.encrypt(&other, b"x", &EncryptionContext::new()).await)?;
    for probe in PROBES.iter().copied().filter(|p| !p.takes_ciphertext()) {
        let what = format!("{probe} on an unknown key");
        let result = probe.run(&ctx, &missing, &[], &other_blob).await;
        if probe.supported(ctx.caps) {
            err(&what, result, "KeyNotFound naming the key", is_not_found(&missing))?;
        } else {
            err(&what, result, "Unsupported", is_unsupported)?;
        }
    }
    Ok(())
}

pub(super) async fn capabilities_gate_optional_operations(ctx: Ctx) -> Outcome {
    let helper = ctx.create("cap-helper").await?;
    let helper_blob = ok("encrypt", ctx.encrypt(&helper, b"x", &EncryptionContext::new()).await)?;
    for (n, probe) in PROBES.iter().copied().enumerate() {
        let id = ctx.create(&format!("cap{n:02}")).await?;
        let blob = ok("encrypt", ctx.encrypt(&id, b"x", &EncryptionContext::new()).await)?;
        let result = probe.run(&ctx, &id, &blob, &helper_blob).await;
        let unsupported = matches!(result, Err(kms_types::KmsError::Unsupported { .. }));
        if probe.supported(ctx.caps) {
            ensure!(!unsupported, "{probe} is declared in capabilities() but returns Unsupported");
        } else {
            err(format!("{probe}, not declared in capabilities()"), result, "Unsupported", is_unsupported)?;
        }
    }
    Ok(())
}
