#!/usr/bin/env python3
"""Independent checker of the kms format vectors (docs/vectors/*.json).

Written from docs/formats.md alone, without the Rust source: every derived value of every
vector is recomputed from its inputs with the `cryptography` and `argon2-cffi` packages, every
ciphertext is opened, and a flipped byte must be refused. `cargo xtask test` runs it (after
installing the two packages into .tools/python); by hand:

    PYTHONPATH=.tools/python python3 docs/vectors/check.py [VECTOR_DIR]

The formats themselves (readers, and writers where a vector is re-derived) are in
`kmsformats.py` beside it; this file holds one check per vector file. Adding a format version
is one vector file `<format>-v<N>.json` and one function `check_<format>_v<N>(case)`
registered in CHECKS (with its reader in `kmsformats.py` if it needs one). The run fails on
a file without a check and on a check without a file.
"""

import base64
import binascii
import hashlib
import json
import re
import struct
import sys
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmsformats import (  # the formats, as docs/formats.md describes them
    Mismatch, expect, same, hx, b64, unb64, refused, u32, hmac_sha256, hkdf_extract, hkdf_expand, aead,
    canonical_context, envelope_seal, envelope_open, envelope_v2_seal, stream_keys, segment_nonce,
    stream_decrypt, VERIFIER_AAD, VERIFIER_PLAINTEXT, record_kek, record_aad, META_MEMBERS, RFC3339_UTC,
    parse_record_body, record_v2_aad, open_record_v2, parse_local_blob,
)


# ---------------------------------------------------------------- checks, one per vector file

def check_canonical_context_v1(case):
    same(canonical_context(case["context"]), hx(case["encoding"]), "encoding")


def check_envelope_v1(case):
    kek, plaintext, envelope = hx(case["kek"]), hx(case["plaintext"]), hx(case["envelope"])
    binding = (case["master_key_id"], case["master_key_version"], case["context"])
    aad, sealed = envelope_seal(kek, case["algorithm"], hx(case["nonce"]), *binding, plaintext)
    same(aad, hx(case["aad"]), "associated data")
    same(sealed, envelope, "envelope")
    same(len(envelope), len(plaintext) + 30, "length")
    same(envelope_open(kek, envelope, *binding), plaintext, "opened")
    refused(lambda e: envelope_open(kek, e, *binding), envelope)
    refused(lambda k: envelope_open(kek, envelope, k.decode("latin-1"), *binding[1:]), binding[0].encode())


def check_envelope_v2(case):
    kek, plaintext, envelope = hx(case["kek"]), hx(case["plaintext"]), hx(case["envelope"])
    binding = (case["master_key_id"], case["master_key_version"], case["context"])
    same(case["algorithm"], 1, "algorithm (AES-256-GCM, the only one version 2 takes)")
    salt = hx(case["salt"])
    same(len(salt), 32, "salt length")
    key, aad, sealed = envelope_v2_seal(kek, salt, *binding, plaintext)
    same(key, hx(case["derived_key"]), "derived key")
    same(aad, hx(case["aad"]), "associated data")
    same(sealed, envelope, "envelope")
    same(len(envelope), len(plaintext) + 50, "length")
    same(envelope_open(kek, envelope, *binding), plaintext, "opened")
    refused(lambda e: envelope_open(kek, e, *binding), envelope)
    refused(lambda k: envelope_open(kek, envelope, k.decode("utf-8", "replace"), *binding[1:]), binding[0].encode())
    refused(lambda v: envelope_open(kek, envelope, binding[0], struct.unpack(">I", v)[0], binding[2]), u32(binding[1]))
    # Relabelled version 1 (a downgrade): read as a v1 envelope, it does not authenticate.
    refused(lambda _: envelope_open(kek, b"\x01" + envelope[1:], *binding), b"\x00")


def check_stream_v1(case):
    data_key, context, part = hx(case["data_key"]), case["context"], case["part"]
    segment_size, salt, prefix = case["segment_size"], hx(case["salt"]), hx(case["nonce_prefix"])
    fields = b"KMSS" + bytes([1, case["algorithm"]]) + u32(segment_size)
    prk, segment_key, commitment_key = stream_keys(data_key, fields + salt, part, context)
    same(prk, hx(case["prk"]), "PRK")
    same(segment_key, hx(case["segment_key"]), "segment key")
    same(commitment_key, hx(case["commitment_key"]), "commitment key")
    commitment = hmac_sha256(commitment_key, fields + salt + prefix)
    same(commitment, hx(case["commitment"]), "commitment")
    header = fields + salt + prefix + commitment
    same(header, hx(case["header"]), "header")
    plaintext = hx(case["plaintext"])
    chunks = [plaintext[i:i + segment_size] for i in range(0, len(plaintext), segment_size)] or [b""]
    cipher = aead(case["algorithm"], segment_key)
    segments = [cipher.encrypt(segment_nonce(prefix, i, i == len(chunks) - 1), c, b"") for i, c in enumerate(chunks)]
    same([s.hex() for s in segments], case["segments"], "segments")
    stream = header + b"".join(segments)
    same(stream, hx(case["stream"]), "stream")
    same(len(stream), 81 + len(plaintext) + 16 * max(1, -(-len(plaintext) // segment_size)), "length formula")
    same(stream_decrypt(data_key, context, part, stream), plaintext, "decrypted")
    refused(lambda s: stream_decrypt(data_key, context, part, s), stream)
    for cut in (len(stream) - 1, len(stream) - 17) if len(chunks) > 1 else (len(stream) - 1,):
        try:
            stream_decrypt(data_key, context, part, stream[:cut])
        except (InvalidTag, Mismatch):
            continue
        raise Mismatch(f"a stream truncated to {cut} bytes was accepted")


def check_local_verifier_v1(case):
    verifier = json.loads(case["file"])
    protection = verifier["protection"]
    expected_members = {"format", "format_version", "protection", "salt"}
    expected_members |= {"argon2id", "check"} if protection == "passphrase" else set()
    expected_members |= {"check"} if protection == "master_key" else set()
    same(set(verifier), expected_members, "members of a %s verifier" % protection)
    same((verifier["format"], verifier["format_version"]), ("kms-local-verifier", 1), "format")
    same(protection, case["protection"], "protection")
    salt = unb64(verifier["salt"])
    same(salt, hx(case["salt"]), "salt")
    same(len(salt), 16, "salt length")
    if protection == "insecure_plaintext_for_development":
        return
    if protection == "master_key":
        text = case["master_key_text"]
        same(len(text), 44, "a 32-byte key in base64")
        root = unb64(text.strip())
        same(root, hx(case["master_key"]), "master key")
    else:
        params = verifier["argon2id"]
        same(params, case["argon2id"], "Argon2id parameters")
        expect(19 * 1024 <= params["m_cost_kib"] <= 1024 * 1024 and 2 <= params["t_cost"] <= 16 and 1 <= params["p_cost"] <= 16,
               "Argon2id parameters within the limits")
        root = hash_secret_raw(case["passphrase"].encode("utf-8"), salt, time_cost=params["t_cost"], memory_cost=params["m_cost_kib"],
                               parallelism=params["p_cost"], hash_len=32, type=Type.ID, version=0x13)
    same(root, hx(case["root"]), "root key")
    kek = record_kek(root, salt)
    same(kek, hx(case["kek"]), "record KEK")
    check = unb64(verifier["check"])
    same(check, hx(case["check"]), "check")
    same(len(check), 71, "check length")
    same(check[:12], hx(case["check_nonce"]), "check nonce")
    same(AESGCM(kek).decrypt(check[:12], check[12:], VERIFIER_AAD), VERIFIER_PLAINTEXT, "check opens")
    refused(lambda c: AESGCM(kek).decrypt(c[:12], c[12:], VERIFIER_AAD), check)


def check_local_key_record_v1(case):
    text = case["file"]
    expect(text.endswith("}\n"), "a record file ends with one newline")
    record = json.loads(text)
    same(list(record), ["format", "format_version", "key_id", "current_version", "protection", "body"], "members")
    same((record["format"], record["format_version"]), ("kms-local-key", 1), "format")
    same((record["key_id"], record["current_version"], record["protection"]), (case["key_id"], case["current_version"], case["protection"]), "header")
    sealed = record["protection"] == "aes_256_gcm"
    expect(sealed or record["protection"] == "insecure_plaintext_for_development", "protection")
    aad = record_aad(record["key_id"], record["format_version"], record["current_version"], sealed)
    same(aad, hx(case["aad"]), "associated data")
    raw = unb64(record["body"])
    if sealed:
        kek = hx(case["kek"])
        same(raw, hx(case["sealed_body"]), "sealed body")
        same(raw[:12], hx(case["nonce"]), "nonce")
        body = AESGCM(kek).decrypt(raw[:12], raw[12:], aad)
        refused(lambda r: AESGCM(kek).decrypt(r[:12], r[12:], aad), raw)
        edited = record_aad(record["key_id"], 1, record["current_version"] + 1, True)
        refused(lambda _: AESGCM(kek).decrypt(raw[:12], raw[12:], edited), b"\x00")
    else:
        body = raw  # in the clear: base64 of the body bytes themselves
    same(body, hx(case["body"]), "body")
    meta_bytes, versions = parse_record_body(body)
    same(versions, case["versions"], "versions")
    same(versions[-1]["version"], record["current_version"], "current version is the last entry")
    meta = json.loads(meta_bytes)
    same(list(meta), META_MEMBERS, "meta members, in order")
    check_meta(meta, meta_bytes, case["meta"])


def check_meta(meta, meta_bytes, expected):
    """The key record's `meta`: compact JSON, members in the documented order. Format 1
    writes every member; format 2 leaves out absent optional ones, which read as null or {}."""
    same(meta_bytes, json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), "meta is compact JSON")
    same(meta, expected, "meta")
    meta = dict({"description": None, "tags": {}, "policy": None, "deletion_date": None, "rotation_date": None}, **meta)
    expect(meta["state"] in ("enabled", "disabled", "pending_deletion"), "state")
    same((meta["usage"], meta["spec"]), ("encrypt_decrypt", "aes256"), "usage and spec")
    expect(meta["origin"] in ("kms", "external"), "origin")
    expect(meta["description"] is None or isinstance(meta["description"], str), "description")
    expect(isinstance(meta["tags"], dict) and list(meta["tags"]) == sorted(meta["tags"], key=lambda k: k.encode()), "tags sorted")
    expect(meta["policy"] is None or isinstance(meta["policy"], str), "policy")
    expect(re.fullmatch(RFC3339_UTC, meta["creation_date"]) is not None, "creation_date")
    for member in ("deletion_date", "rotation_date"):
        expect(meta[member] is None or re.fullmatch(RFC3339_UTC, meta[member]) is not None, member)
    same(meta["deletion_date"] is not None, meta["state"] == "pending_deletion", "deletion_date only when pending deletion")


def check_local_key_record_v2(case):
    key_id, current, protection = case["key_id"], case["current_version"], case["protection"]
    expect(re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,255}", key_id) is not None, "key id")
    value, body = hx(case["value"]), hx(case["body"])
    header = bytes([2, protection]) + u32(current)
    kek = hx(case["kek"]) if protection == 1 else None
    if kek is not None:
        aad = record_v2_aad(key_id, current, protection)
        same(aad, hx(case["aad"]), "associated data")
        nonce = hx(case["nonce"])
        same(header + nonce + AESGCM(kek).encrypt(nonce, body, aad), value, "sealed value")
        refused(lambda v: open_record_v2(key_id, v, kek), value)
        refused(lambda k: open_record_v2(k.decode("ascii"), value, kek), key_id.encode("ascii"))
    else:
        same(header + body, value, "development-mode value: header and the body in the clear")
    same(open_record_v2(key_id, value, kek), (current, body), "opened")
    meta_bytes, versions = parse_record_body(body)
    same(versions, case["versions"], "versions")
    same(versions[-1]["version"], current, "current version is the last entry")
    meta = json.loads(meta_bytes)
    present = [m for m in META_MEMBERS if m in meta]
    same(list(meta), present, "meta members, in order")
    expect(set(["state", "usage", "spec", "origin", "creation_date"]) <= set(meta), "required meta members")
    expect(all(meta[m] is not None for m in meta) and meta.get("tags") != {}, "format 2 leaves out absent members and empty tags")
    check_meta(meta, meta_bytes, case["meta"])


def check_local_blob_v1(case):
    blob = hx(case["blob"])
    key_id, version, envelope = parse_local_blob(blob)
    same((key_id, version), (case["key_id"], case["key_version"]), "header")
    same(envelope, hx(case["envelope"]), "envelope")
    material = hx(case["material"])  # the version's material is the envelope's KEK, as is
    if envelope[0] == 2:  # written now: the per-envelope key is derived from the material
        key, aad, sealed = envelope_v2_seal(material, hx(case["salt"]), key_id, version, case["context"], hx(case["plaintext"]))
        same(key, hx(case["derived_key"]), "derived envelope key")
    else:  # version 1, read: sealed under the material itself
        aad, sealed = envelope_seal(material, 1, hx(case["nonce"]), key_id, version, case["context"], hx(case["plaintext"]))
    same(aad, hx(case["envelope_aad"]), "envelope associated data")
    same(sealed, envelope, "envelope")
    opened = lambda b: envelope_open(material, parse_local_blob(b)[2], *parse_local_blob(b)[:2], case["context"])
    same(opened(blob), hx(case["plaintext"]), "opened")
    refused(opened, blob)


def check_vault_blob_v1(case):
    blob = case["blob"]
    match = re.fullmatch(r"vault-kms:1:([A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,255}):(vault:v([1-9][0-9]*):([A-Za-z0-9+/]+=*))", blob)
    expect(match is not None, "blob syntax")
    same(match.group(1), case["key_id"], "key id")
    same(match.group(2), case["transit_ciphertext"], "Transit ciphertext")
    same(int(match.group(3)), case["key_version"], "Transit version")
    unb64(match.group(4))
    same(b64(canonical_context(case["context"])), case["associated_data"], "associated_data")


def parse_memory_blob(blob):
    """`"KMM2"` | u16 BE id length | key id | u32 BE key version | envelope."""
    same(blob[:4], b"KMM2", "magic")
    (id_len,) = struct.unpack(">H", blob[4:6])
    key_id = blob[6:6 + id_len].decode("ascii")
    (version,) = struct.unpack(">I", blob[6 + id_len:10 + id_len])
    return key_id, version, blob[10 + id_len:]


def check_memory_blob_v2(case):
    kek, blob = hx(case["kek"]), hx(case["blob"])
    key_id, version, envelope = parse_memory_blob(blob)
    same((key_id, version), (case["key_id"], case["key_version"]), "key id and version")
    same(envelope[0], 2, "an envelope of version 2")
    opened = lambda b: envelope_open(kek, parse_memory_blob(b)[2], *parse_memory_blob(b)[:2], case["context"])
    same(opened(blob), hx(case["plaintext"]), "opened")
    refused(opened, blob)


VAULT_RECORD_MEMBERS = ["format", "key_id", "key_state", "key_usage", "key_spec", "origin", "description", "tags", "policy",
                        "creation_date", "deletion_date", "rotation_date", "current_version", "provisioned"]
# Written only when true, after the others (kms migrate vault-transit).
VAULT_RECORD_OPTIONAL = ["adopted", "material_fingerprints", "valid_to"]


def check_vault_key_record_v1(case):
    record = case["record"]
    optional = [m for m in VAULT_RECORD_OPTIONAL if m in record]
    same(list(record), VAULT_RECORD_MEMBERS + optional, "members, in order")
    expect(record.get("adopted", True) is True, "adopted is written only when true")
    fingerprints = record.get("material_fingerprints", ["0" * 64])
    expect(len(fingerprints) >= 1 and all(re.fullmatch("[0-9a-f]{64}", f) for f in fingerprints), "material_fingerprints: hex, written only when not empty")
    expect(re.fullmatch(RFC3339_UTC, record.get("valid_to", "2026-01-01T00:00:00Z")) is not None, "valid_to")
    same((record["format"], record["key_id"]), (1, case["key_id"]), "format and key id")
    expect(record["key_state"] in ("enabled", "disabled", "pending_deletion", "pending_import"), "key_state")
    same((record["key_usage"], record["key_spec"]), ("encrypt_decrypt", "aes256"), "usage and spec")
    expect(record["origin"] in ("kms", "external"), "origin")
    expect(record["description"] is None or isinstance(record["description"], str), "description")
    expect(isinstance(record["tags"], dict) and all(isinstance(v, str) for v in record["tags"].values()), "tags")
    expect(re.fullmatch(RFC3339_UTC, record["creation_date"]) is not None, "creation_date")
    for member in ("deletion_date", "rotation_date"):
        expect(record[member] is None or re.fullmatch(RFC3339_UTC, record[member]) is not None, member)
    same(record["deletion_date"] is not None, record["key_state"] == "pending_deletion", "deletion_date only when pending deletion")
    expect(isinstance(record["current_version"], int) and record["current_version"] >= 1, "current_version")
    expect(isinstance(record["provisioned"], bool), "provisioned")
    same(record["key_state"] if record["provisioned"] else "unavailable", case["effective_state"], "effective state")


def check_sse_metadata_v1(case):
    metadata = json.loads(case["metadata"])
    same(json.dumps(metadata, separators=(",", ":")), case["metadata"], "single-line JSON")
    mode = metadata["mode"]
    same((metadata["v"], metadata["algorithm"], metadata["stream_version"]), (1, "AES-256-GCM", 1), "header members")
    expect(mode in ("SSE-S3", "SSE-KMS", "SSE-C"), "mode")
    context = dict(metadata.get("context", {}), **{"kms:bucket": case["bucket"], "kms:object": case["object_key"], "kms:sse": mode})
    same(context, case["context"], "object encryption context")
    wrapped = unb64(metadata["wrapped_data_key"])
    same(wrapped, hx(case["wrapped_data_key"]), "wrapped data key")
    if mode == "SSE-C":
        expect("master_key_id" not in metadata and "context" not in metadata, "SSE-C has no master key or caller context")
        data_key = open_sse_c(case, metadata, context, wrapped)
    else:
        # The backend's blob; in this vector the local backend's, under the key record vector.
        key_id, version, envelope = parse_local_blob(wrapped)
        same((key_id, version), (metadata["master_key_id"], metadata["master_key_version"]), "blob names the metadata's key")
        _, sealed = envelope_seal(hx(case["material"]), 1, hx(case["envelope_nonce"]), key_id, version, context, hx(case["data_key"]))
        same(sealed, envelope, "envelope")
        data_key = envelope_open(hx(case["material"]), envelope, key_id, version, context)
    same(data_key, hx(case["data_key"]), "data key")
    obj = hx(case["object"])
    same((metadata["plaintext_size"], metadata["ciphertext_size"]), (len(hx(case["plaintext"])), len(obj)), "sizes")
    same(struct.unpack(">I", obj[6:10])[0], metadata["segment_size"], "segment size")
    same(stream_decrypt(data_key, context, 0, obj), hx(case["plaintext"]), "object")
    other = dict(context, **{"kms:object": "elsewhere.txt"})
    refused(lambda _: stream_decrypt(data_key, other, 0, obj), b"\x00")


def open_sse_c(case, metadata, context, wrapped):
    """SSE-C: KEK and verifier from HKDF over the customer key and the stored salt."""
    customer_key, salt = hx(case["customer_key"]), unb64(metadata["customer_key_salt"])
    same(b64(hashlib.md5(customer_key).digest()), case["customer_key_md5"], "customer key MD5")
    same(salt, hx(case["salt"]), "salt")
    same(len(salt), 32, "salt length")
    prk = hkdf_extract(salt, customer_key)
    kek = hkdf_expand(prk, b"kms-sse-c v1 key-encryption key")
    verifier_key = hkdf_expand(prk, b"kms-sse-c v1 verifier")
    same(kek, hx(case["customer_kek"]), "customer KEK")
    same(verifier_key, hx(case["verifier_key"]), "verifier key")
    verifier = hmac_sha256(verifier_key, salt)
    same(verifier, unb64(metadata["customer_key_verifier"]), "verifier")
    same(verifier, hx(case["verifier"]), "verifier")
    _, sealed = envelope_seal(kek, 1, hx(case["envelope_nonce"]), "sse-c", 1, context, hx(case["data_key"]))
    same(sealed, wrapped, "wrapped data key")
    return envelope_open(kek, wrapped, "sse-c", 1, context)


SEALED_PATHS = ["backend_config.master_key.key", "backend_config.master_key.passphrase",
                "backend_config.auth_method.token", "backend_config.auth_method.secret_id"]


CONFIG_MEMBERS = ["backend", "backend_config", "default_key_id", "timeout_seconds", "retry_attempts", "enable_cache", "cache_config"]


def lookup(document, dotted):
    for part in dotted.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def check_service_state_v1(case):
    seal_key = unb64(case["seal_key_file"].strip())
    same(len(case["seal_key_file"]), 44, "seal key file length")
    same(seal_key, hx(case["seal_key"]), "seal key")
    state = json.loads(case["file"])
    same(sorted(state), ["config", "format", "running", "version"], "members")
    same(case["file"], json.dumps(state, indent=2, sort_keys=True), "pretty JSON, members sorted by name at every level")
    same((state["format"], state["version"], state["running"]), ("kms-service-state", 1, case["running"]), "header")
    config = state["config"]
    same(sorted(config), sorted(CONFIG_MEMBERS), "config members")
    same(config["backend"], config["backend_config"]["type"], "backend matches backend_config")
    same(sorted(config["cache_config"]), ["max_keys", "ttl_seconds"], "cache_config members")
    by_path = {s["path"]: s for s in case["sealed"]}
    unsealed = json.loads(case["file"])["config"]
    for path in SEALED_PATHS:
        value = lookup(config, path)
        if value is None:
            expect(path not in by_path, f"{path} is in the vector but not in the file")
            continue
        expect(value.startswith("sealed:v1:"), f"{path} is sealed")
        raw = unb64(value[len("sealed:v1:"):])
        sealed = by_path[path]
        same(value, sealed["value"], path)
        same(raw[:12], hx(sealed["nonce"]), f"{path} nonce")
        secret = AESGCM(seal_key).decrypt(raw[:12], raw[12:], path.encode("ascii"))
        same(secret.decode("utf-8"), sealed["secret"], f"{path} secret")
        same("sealed:v1:" + b64(raw[:12] + AESGCM(seal_key).encrypt(raw[:12], secret, path.encode("ascii"))), value, f"{path} re-sealed")
        for other in SEALED_PATHS:
            if other != path:
                refused(lambda _: AESGCM(seal_key).decrypt(raw[:12], raw[12:], other.encode("ascii")), b"\x00")
        parent = lookup(unsealed, path.rsplit(".", 1)[0])
        parent[path.rsplit(".", 1)[1]] = secret.decode("utf-8")
    same(unsealed, case["config"], "unsealed config")


def check_aws_credentials_v1(case):
    """docs/formats.md, "AWS credential files": the clients' shared-credentials file, and the
    server's copy with the secret sealed under the seal key ("Sealed secrets")."""
    kid, secret = case["access_key_id"], case["secret_access_key"]
    expect(re.fullmatch(r"AKIA[A-Z2-7]{16}", kid) is not None, "access key id alphabet and length")
    same(len(unb64(secret)), 30, "secret is base64 of 30 bytes")
    same(len(secret), 40, "secret length")
    same(case["aws_credentials"], f"[default]\naws_access_key_id = {kid}\naws_secret_access_key = {secret}\n",
         "aws-credentials")
    seal_key = unb64(case["seal_key_file"].strip())
    same(seal_key, hx(case["seal_key"]), "seal key")
    saved = json.loads(case["admin_aws_key_json"])
    same(sorted(saved), ["access_key_id", "secret_access_key"], "admin.aws-key.json members")
    same(saved["access_key_id"], kid, "saved access key id")
    value = saved["secret_access_key"]
    expect(value.startswith("sealed:v1:"), "the secret is sealed")
    raw = unb64(value[len("sealed:v1:"):])
    same(raw[:12], hx(case["nonce"]), "nonce")
    aad = f"server.aws.access_keys.{kid}.secret_access_key"
    same(aad, case["aad"], "associated data")
    same(AESGCM(seal_key).decrypt(raw[:12], raw[12:], aad.encode("ascii")).decode("ascii"), secret, "unsealed secret")
    refused(lambda sealed: AESGCM(seal_key).decrypt(raw[:12], sealed, aad.encode("ascii")), raw[12:])
    try:
        AESGCM(seal_key).decrypt(raw[:12], raw[12:], b"server.aws.access_keys.AKIAOTHERKEY2345678.secret_access_key")
    except InvalidTag:
        pass
    else:
        raise Mismatch("a secret moved to another access key's path must not open")


def check_admin_token_v1(case):
    token = "kms_" + base64.urlsafe_b64encode(hx(case["random"])).decode("ascii").rstrip("=")
    same(token, case["token"], "token")
    expect(re.fullmatch(r"kms_[A-Za-z0-9_-]{43}", token) is not None, "token alphabet and length")
    same(token + "\n", case["token_file"], "admin.token")
    same(hashlib.sha256(token.encode("ascii")).hexdigest() + "\n", case["sha256_file"], "admin.token.sha256")


def check_kms_file_v1(case):
    data = hx(case["file"])
    expect(data[:5] == b"KMSF\x01", "magic and version")
    length = struct.unpack(">I", data[5:9])[0]
    expect(1 <= length <= 65536, "wrapped key length")
    wrapped, stream = data[9:9 + length], data[9 + length:]
    same(wrapped, hx(case["wrapped_data_key"]), "wrapped data key")
    same(stream, hx(case["stream"]), "stream")
    # The wrapped key here is a local ciphertext blob: follow the chain to the data key.
    key_id, version, envelope = parse_local_blob(wrapped)
    same((key_id, version), (case["master_key_id"], case["master_key_version"]), "blob header")
    data_key = envelope_open(hx(case["material"]), envelope, key_id, version, case["context"])
    same(data_key, hx(case["data_key"]), "data key")
    same(stream_decrypt(data_key, case["context"], 0, stream), hx(case["plaintext"]), "plaintext")
    refused(lambda s: stream_decrypt(data_key, case["context"], 0, s), stream, positions=range(0, len(stream), 7))


def check_serve_data_dir_v1(case):
    """A whole data directory of `kms serve`, followed from the master key file to a file's plaintext."""
    files, data_dir = case["files"], case["data_dir"]
    token = files["admin.token"]
    expect(re.fullmatch(r"kms_[A-Za-z0-9_-]{43}\n", token) is not None, "admin.token")
    same(hashlib.sha256(token[:-1].encode("ascii")).hexdigest() + "\n", files["admin.token.sha256"], "admin.token.sha256")
    for name in ("master.key", "config-seal.key"):
        same(len(files[name]), 44, f"{name}: 44 base64 characters, no newline")
        same(len(unb64(files[name])), 32, f"{name} holds 32 bytes")
    state = json.loads(files["service-state.json"])
    same(files["service-state.json"], json.dumps(state, indent=2, sort_keys=True), "service-state.json layout")
    same((state["format"], state["version"], state["running"]), ("kms-service-state", 1, True), "service state")
    local = state["config"]["backend_config"]
    same((state["config"]["backend"], local["type"]), ("local", "local"), "the default backend")
    same(local["key_dir"], data_dir + "/keys", "key_dir")
    same(local["master_key"], {"type": "file", "path": data_dir + "/master.key"}, "master key source")

    verifier = json.loads(files["keys/.verifier.json"])
    same(verifier["protection"], "master_key", "protection")
    salt = unb64(verifier["salt"])
    kek = record_kek(unb64(files["master.key"].strip()), salt)
    check = unb64(verifier["check"])
    same(AESGCM(kek).decrypt(check[:12], check[12:], VERIFIER_AAD), VERIFIER_PLAINTEXT, "verifier check")

    record = json.loads(files["keys/%s.key" % case["key_id"]])
    same((record["format"], record["key_id"], record["protection"]), ("kms-local-key", case["key_id"], "aes_256_gcm"), "record header")
    raw = unb64(record["body"])
    aad = record_aad(record["key_id"], record["format_version"], record["current_version"], True)
    _, versions = parse_record_body(AESGCM(kek).decrypt(raw[:12], raw[12:], aad))

    data = hx(case["encrypted_file"])
    expect(data[:5] == b"KMSF\x01", "kms file magic and version")
    length = struct.unpack(">I", data[5:9])[0]
    key_id, version, envelope = parse_local_blob(data[9:9 + length])
    same(key_id, case["key_id"], "the file's wrapped key names the key")
    material = hx(next(v["material"] for v in versions if v["version"] == version))
    data_key = envelope_open(material, envelope, key_id, version, case["context"])
    same(len(data_key), 32, "data key length")
    same(stream_decrypt(data_key, case["context"], 0, data[9 + length:]), hx(case["plaintext"]), "plaintext")


def check_local_alias_record_v1(case):
    """docs/formats.md, "Alias record, version 1": version byte, two signed big-endian Unix
    times, the target key id; the table key is the alias name."""
    name, target = case["alias_name"], case["target_key_id"]
    expect(re.fullmatch(r"alias/[A-Za-z0-9/_-]{1,244}", name) is not None and not name.startswith("alias/aws/"),
           "alias name rules")
    expect(re.fullmatch(r"[A-Za-z0-9._-]{1,256}", target) is not None and not target.startswith("."),
           "target is a key id")
    value = bytes([1]) + struct.pack(">q", case["creation_date"]) + struct.pack(">q", case["last_updated_date"]) \
        + target.encode("ascii")
    same(value.hex(), case["value"], "value")
    # A reader: version 1 only, at least one byte of target.
    parsed = hx(case["value"])
    expect(parsed[0] == 1 and len(parsed) > 17, "version 1 and a target")
    same(struct.unpack(">qq", parsed[1:17]), (case["creation_date"], case["last_updated_date"]), "dates")
    same(parsed[17:].decode("ascii"), target, "target")


VAULT_ALIAS_MEMBERS = ["format", "alias_name", "target_key_id", "creation_date", "last_updated_date"]


def check_vault_alias_record_v1(case):
    """docs/formats.md, "Vault alias record (format 1)": the KV entry name is the alias name
    with '/' as '.', and the record's members in order."""
    name, record = case["alias_name"], case["record"]
    expect(re.fullmatch(r"alias/[A-Za-z0-9/_-]{1,250}", name) is not None and not name.startswith("alias/aws/"),
           "alias name rules")
    same(case["entry"], name.replace("/", "."), "KV entry name")
    same(case["entry"].replace(".", "/"), name, "the entry name maps back")
    same(list(record), VAULT_ALIAS_MEMBERS, "members, in order")
    same((record["format"], record["alias_name"]), (1, name), "format and alias name")
    target = record["target_key_id"]
    expect(re.fullmatch(r"[A-Za-z0-9._-]{1,256}", target) is not None and not target.startswith("."),
           "target is a key id")
    for member in ("creation_date", "last_updated_date"):
        expect(re.fullmatch(RFC3339_UTC, record[member]) is not None, member)


def check_backup_bundle_v1(case):
    """docs/formats.md, "Backup bundle" (version 1): the layout, and the seal over the whole bundle."""
    check_backup_bundle(case, 1)


def check_backup_bundle_v2(case):
    """docs/formats.md, "Backup bundle" (version 2): version 1 plus the alias section, each
    alias an alias record (version 1) of the local store."""
    check_backup_bundle(case, 2)


def check_backup_bundle(case, version):
    bundle = hx(case["bundle_hex"])

    def parse(data):
        expect(data[:8] == b"KMSBKUP\0", "magic")
        same(struct.unpack(">H", data[8:10])[0], version, "version")
        (verifier_len,) = struct.unpack(">I", data[10:14])
        verifier = data[14:14 + verifier_len]
        at = 14 + verifier_len
        (count,) = struct.unpack(">Q", data[at:at + 8])
        at += 8
        keys = []
        for _ in range(count):
            flags = data[at]
            (id_len,) = struct.unpack(">H", data[at + 1:at + 3])
            key_id = data[at + 3:at + 3 + id_len].decode("utf-8")
            at += 3 + id_len
            (record_len,) = struct.unpack(">I", data[at:at + 4])
            expect(len(data) >= at + 4 + record_len, "record within the bundle")
            keys.append({"key_id": key_id, "flags": flags, "record_len": record_len})
            at += 4 + record_len
        aliases, alias_offset = [], at
        if version >= 2:
            (alias_count,) = struct.unpack(">Q", data[at:at + 8])
            at += 8
            for _ in range(alias_count):
                (name_len,) = struct.unpack(">H", data[at:at + 2])
                name = data[at + 2:at + 2 + name_len].decode("utf-8")
                at += 2 + name_len
                (record_len,) = struct.unpack(">I", data[at:at + 4])
                record = data[at + 4:at + 4 + record_len]
                expect(len(record) == record_len, "alias record within the bundle")
                aliases.append((name, record))
                at += 4 + record_len
        (seal_len,) = struct.unpack(">I", data[at:at + 4])
        same(at + 4 + seal_len, len(data), "the seal ends the bundle")
        return verifier, keys, aliases, alias_offset, at, data[at + 4:]

    def open_seal(data):
        verifier, _, _, _, body_len, seal = parse(data)
        salt = unb64(json.loads(verifier)["salt"])
        kek = record_kek(unb64(case["master_key_base64"]), salt)
        digest = AESGCM(kek).decrypt(seal[:12], seal[12:], b"kms-local/v1/backup")
        same(digest, hashlib.sha256(data[:body_len]).digest(), "sealed digest of everything before the seal")
        return digest

    verifier, keys, aliases, alias_offset, body_len, seal = parse(bundle)
    same(len(verifier), case["verifier_len"], "verifier length")
    same(json.loads(verifier)["format"], "kms-local-verifier", "the verifier record")
    same(len(keys), case["key_count"], "key count")
    same(keys, case["keys"], "keys")
    same(sorted(k["key_id"] for k in keys), [k["key_id"] for k in keys], "keys in id order")
    if version >= 2:
        same(alias_offset, case["alias_offset"], "alias section offset")
        same(len(aliases), case["alias_count"], "alias count")
        same([name for name, _ in aliases], sorted(name for name, _ in aliases), "aliases in name order")
        for (name, record), expected in zip(aliases, case["aliases"]):
            same(name, expected["alias_name"], "alias name")
            same(record.hex(), expected["record_hex"], "alias record")
            # An alias record, version 1 (docs/formats.md, "Alias record").
            check_local_alias_record_v1({
                "alias_name": name, "target_key_id": expected["target_key_id"],
                "creation_date": expected["creation_date"], "last_updated_date": expected["last_updated_date"],
                "value": record.hex(),
            })
    same((body_len, len(seal)), (case["seal_offset"], case["seal_len"]), "seal offset and length")
    open_seal(bundle)
    positions = [14 + len(verifier) + 20, body_len - 1, body_len + 10, len(bundle) - 1]
    if version >= 2:
        positions.append(alias_offset + 12)
    refused(open_seal, bundle, positions=positions)


CHECKS = {
    ("canonical-context", 1): check_canonical_context_v1,
    ("envelope", 1): check_envelope_v1,
    ("envelope", 2): check_envelope_v2,
    ("stream", 1): check_stream_v1,
    ("local-verifier", 1): check_local_verifier_v1,
    ("local-key-record", 1): check_local_key_record_v1,
    ("local-key-record", 2): check_local_key_record_v2,
    ("local-blob", 1): check_local_blob_v1,
    ("vault-blob", 1): check_vault_blob_v1,
    ("memory-blob", 2): check_memory_blob_v2,
    ("vault-key-record", 1): check_vault_key_record_v1,
    ("sse-metadata", 1): check_sse_metadata_v1,
    ("service-state", 1): check_service_state_v1,
    ("admin-token", 1): check_admin_token_v1,
    ("aws-credentials", 1): check_aws_credentials_v1,
    ("kms-file", 1): check_kms_file_v1,
    ("serve-data-dir", 1): check_serve_data_dir_v1,
    ("kms-backup-bundle", 1): check_backup_bundle_v1,
    ("kms-backup-bundle", 2): check_backup_bundle_v2,
    ("local-alias-record", 1): check_local_alias_record_v1,
    ("vault-alias-record", 1): check_vault_alias_record_v1,
}


def main(argv):
    directory = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    files = sorted(directory.glob("*.json"))
    failures, seen = [], set()
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            key = (document["format"], document["version"])
            same(path.name, f"{key[0]}-v{key[1]}.json", "file name")
        except (ValueError, KeyError, Mismatch) as error:
            failures.append(f"{path.name}: not a vector file: {error}")
            continue
        seen.add(key)
        check = CHECKS.get(key)
        if check is None:
            failures.append(f"{path.name}: no check function for format {key[0]!r} version {key[1]}")
            continue
        cases = document.get("cases") or []
        if not cases:
            failures.append(f"{path.name}: no cases")
        for case in cases:
            try:
                check(case)
            except (Mismatch, InvalidTag, ValueError, KeyError, TypeError, binascii.Error) as error:
                failures.append(f"{path.name}: case {case.get('name')!r}: {type(error).__name__}: {error}")
        print(f"{path.name}: {len(cases)} case(s) checked by {check.__name__}")
    for key in sorted(set(CHECKS) - seen):
        failures.append(f"no vector file for {CHECKS[key].__name__} ({key[0]}-v{key[1]}.json)")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    print(f"{len(files)} vector file(s), {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
