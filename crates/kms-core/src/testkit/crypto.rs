//! Contract cases of ciphertexts and data keys: round trips, context binding, wrong keys,
//! tampering, the key a ciphertext names, re-encryption and concurrent data keys.

use std::collections::BTreeSet;
use std::sync::Arc;

use kms_types::error::KmsError;
use kms_types::types::{
    DecryptRequest, EncryptRequest, EncryptionContext, GenerateDataKeyRequest, GenerateDataKeyWithoutPlaintextRequest,
    KeyIdRequest, KeySpec, MAX_ENCRYPT_PLAINTEXT_BYTES, ReEncryptRequest,
};

use super::Outcome;
use super::ctx::{Ctx, ctx_of, err, is_crypto, is_not_found, is_unsupported, ok};

pub(super) async fn encrypt_decrypt_round_trip(ctx: Ctx) -> Outcome {
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

pub(super) async fn encryption_context_is_bound(ctx: Ctx) -> Outcome {
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

pub(super) async fn wrong_key_ciphertexts_fail(ctx: Ctx) -> Outcome {
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

pub(super) async fn tampered_ciphertexts_fail(ctx: Ctx) -> Outcome {
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
pub(super) async fn ciphertexts_name_their_key(ctx: Ctx) -> Outcome {
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

pub(super) async fn generate_data_key_round_trip(ctx: Ctx) -> Outcome {
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

pub(super) async fn generate_data_key_without_plaintext(ctx: Ctx) -> Outcome {
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

pub(super) async fn re_encrypt_moves_ciphertexts(ctx: Ctx) -> Outcome {
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

pub(super) async fn concurrent_data_keys(ctx: Ctx) -> Outcome {
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
