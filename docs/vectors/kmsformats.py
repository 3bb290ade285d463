"""The kms formats as docs/formats.md describes them, read and written again from that
document alone: the conventions (hex, base64), the primitives (HKDF, the AEADs, the
canonical encryption context), the envelope (v1 read, v2), the stream, and the local store's
readers (verifier KEK, key records, ciphertext blobs). `check.py` checks each vector file
with them.
"""

import base64
import hashlib
import hmac
import re
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


class Mismatch(Exception):
    """A vector disagrees with docs/formats.md."""


def expect(condition, what):
    if not condition:
        raise Mismatch(what)


def same(actual, expected, what):
    if actual != expected:
        shown = lambda v: v.hex() if isinstance(v, (bytes, bytearray)) else repr(v)
        raise Mismatch(f"{what}: computed {shown(actual)}, vector says {shown(expected)}")


def hx(text):
    return bytes.fromhex(text)


def b64(data):
    """Standard base64 with padding (formats.md, Conventions)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    """Strict standard base64: alphabet, padding and canonical form."""
    expect(re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", text) is not None and len(text) % 4 == 0, f"not padded base64: {text!r}")
    data = base64.b64decode(text, validate=True)
    same(b64(data), text, "base64 is canonical")
    return data


def refused(operation, data, positions=None):
    """`operation(data)` must raise once any one byte of `data` is changed."""
    for i in positions if positions is not None else range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        try:
            operation(bytes(tampered))
        except (InvalidTag, Mismatch, ValueError):
            continue
        raise Mismatch(f"a change of byte {i} was not refused")


# ---------------------------------------------------------------- primitives

def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


def hmac_sha256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf_extract(salt, ikm):
    return hmac_sha256(salt, ikm)


def hkdf_expand(prk, info, length=32):
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def aead(algorithm, key):
    """Algorithm ids of the envelope and stream headers: 1 AES-256-GCM, 2 ChaCha20-Poly1305."""
    if algorithm == 1:
        return AESGCM(key)
    if algorithm == 2:
        return ChaCha20Poly1305(key)
    raise Mismatch(f"unknown algorithm {algorithm}")


def canonical_context(context):
    """Canonical encryption context v1: 0x01, u64 n, entries sorted by the key's UTF-8 bytes."""
    entries = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    out = b"\x01" + u64(len(entries))
    for key, value in entries:
        out += u64(len(key)) + key + u64(len(value)) + value
    return out


# ---------------------------------------------------------------- envelope v1

def envelope_aad(header, key_id, version, context):
    key_id = key_id.encode("utf-8")
    return header + b"kms-envelope-v1" + u64(len(key_id)) + key_id + u32(version) + canonical_context(context)


def envelope_seal(kek, algorithm, nonce, key_id, version, context, plaintext):
    header = bytes([1, algorithm]) + nonce
    aad = envelope_aad(header, key_id, version, context)
    return aad, header + aead(algorithm, kek).encrypt(nonce, plaintext, aad)


def envelope_open(kek, envelope, key_id, version, context):
    """Opens an envelope of either version (its first byte says which)."""
    expect(len(envelope) >= 1 and envelope[0] in (1, 2), "envelope version")
    if envelope[0] == 2:
        return envelope_v2_open(kek, envelope, key_id, version, context)
    expect(30 <= len(envelope) <= 4126, "envelope length")
    header = envelope[:14]
    return aead(envelope[1], kek).decrypt(envelope[2:14], envelope[14:], envelope_aad(header, key_id, version, context))


# ---------------------------------------------------------------- envelope v2

ENVELOPE_V2 = b"kms-envelope-v2"


def envelope_v2_key(kek, salt):
    """Per-envelope key: HKDF-SHA256(salt, IKM = KEK, info = "kms-envelope-v2" || 0x01, L = 32)."""
    return hkdf_expand(hkdf_extract(salt, kek), ENVELOPE_V2 + b"\x01")


def envelope_v2_aad(header, key_id, version, context):
    key_id = key_id.encode("utf-8")
    return header + ENVELOPE_V2 + u64(len(key_id)) + key_id + u32(version) + canonical_context(context)


def envelope_v2_seal(kek, salt, key_id, version, context, plaintext):
    """Returns (derived key, AAD, envelope); AES-256-GCM under the derived key, all-zero nonce."""
    header = b"\x02\x01" + salt
    key, aad = envelope_v2_key(kek, salt), envelope_v2_aad(header, key_id, version, context)
    return key, aad, header + AESGCM(key).encrypt(bytes(12), plaintext, aad)


def envelope_v2_open(kek, envelope, key_id, version, context):
    expect(50 <= len(envelope) <= 4146, "envelope length")
    expect(envelope[0] == 2 and envelope[1] == 1, "envelope version and algorithm")
    header = envelope[:34]
    aad = envelope_v2_aad(header, key_id, version, context)
    return AESGCM(envelope_v2_key(kek, envelope[2:34])).decrypt(bytes(12), envelope[34:], aad)


# ---------------------------------------------------------------- stream v1

STREAM_HEADER_LEN = 81


def stream_keys(data_key, header, part, context):
    """PRK, segment key, commitment key of a stream whose header starts with `header`."""
    prk = hkdf_extract(header[10:42], data_key)
    tail = header[0:10] + u32(part) + canonical_context(context)
    return prk, hkdf_expand(prk, b"kms-stream-v1 segment key" + tail), hkdf_expand(prk, b"kms-stream-v1 commitment key" + tail)


def segment_nonce(prefix, index, last):
    return prefix + u32(index) + (b"\x01" if last else b"\x00")


def stream_decrypt(data_key, context, part, stream):
    """Opens a whole stream as formats.md describes; raises on anything wrong."""
    header = stream[:STREAM_HEADER_LEN]
    expect(len(header) == STREAM_HEADER_LEN and header[0:4] == b"KMSS" and header[4] == 1, "stream header")
    segment_size = struct.unpack(">I", header[6:10])[0]
    expect(16 <= segment_size <= 4194304, "segment size")
    _, segment_key, commitment_key = stream_keys(data_key, header, part, context)
    if not hmac.compare_digest(hmac_sha256(commitment_key, header[:49]), header[49:81]):
        raise Mismatch("key commitment")
    cipher = aead(header[5], segment_key)
    body, out, index = stream[STREAM_HEADER_LEN:], b"", 0
    while True:
        last = len(body) <= segment_size + 16
        chunk, body = body[: segment_size + 16], body[segment_size + 16:]
        expect(len(chunk) >= 16, "truncated segment")
        out += cipher.decrypt(segment_nonce(header[42:49], index, last), chunk, b"")
        index += 1
        if last:
            return out


# ---------------------------------------------------------------- local store: verifier, key records, ciphertext blobs

VERIFIER_AAD = b"kms-local/v1/verifier"


VERIFIER_PLAINTEXT = b"kms-local verifier: the master key is right"


def record_kek(root, salt):
    return hkdf_expand(hkdf_extract(salt, root), b"kms-local/v1/record-kek")


def record_aad(key_id, format_version, current_version, sealed):
    key_id = key_id.encode("ascii")
    return b"kms-local/v1/key-record" + u16(format_version) + u32(len(key_id)) + key_id + u32(current_version) + (b"\x01" if sealed else b"\x00")


META_MEMBERS = ["state", "usage", "spec", "origin", "description", "tags", "policy", "creation_date", "deletion_date", "rotation_date"]


RFC3339_UTC = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z"


def parse_record_body(body):
    """The binary body of formats.md: u32 meta_len, meta, u32 n, n x (u32, i64, 32 bytes)."""
    expect(len(body) >= 4, "body length")
    meta_len = struct.unpack(">I", body[:4])[0]
    meta_bytes, rest = body[4:4 + meta_len], body[4 + meta_len:]
    expect(len(meta_bytes) == meta_len and len(rest) >= 4, "body is truncated")
    count, rest = struct.unpack(">I", rest[:4])[0], rest[4:]
    expect(count >= 1 and len(rest) == 44 * count, "version entries")
    versions = []
    for i in range(count):
        version, created_at = struct.unpack(">Iq", rest[44 * i:44 * i + 12])
        versions.append({"version": version, "created_at": created_at, "material": rest[44 * i + 12:44 * i + 44].hex()})
    numbers = [v["version"] for v in versions]
    expect(numbers[0] >= 1 and all(a < b for a, b in zip(numbers, numbers[1:])), "versions strictly ascending")
    return meta_bytes, versions


def record_v2_aad(key_id, current_version, protection):
    key_id = key_id.encode("ascii")
    return b"kms-local/v2/key-record" + u16(2) + u32(len(key_id)) + key_id + u32(current_version) + bytes([protection])


def open_record_v2(key_id, value, kek):
    """A value of the `keys` table: u8 2, u8 protection, u32 current_version, body (sealed
    under `kek`, or in the clear when `kek` is None). Returns (current_version, body)."""
    expect(len(value) >= 6 and value[0] == 2, "record format 2")
    protection, current = value[1], struct.unpack(">I", value[2:6])[0]
    same(protection, 0 if kek is None else 1, "protection matches the store's")
    if kek is None:
        return current, value[6:]
    return current, AESGCM(kek).decrypt(value[6:18], value[18:], record_v2_aad(key_id, current, protection))


def parse_local_blob(blob):
    expect(blob[:4] == b"KLC\x01", "magic and version")
    length = struct.unpack(">H", blob[4:6])[0]
    expect(1 <= length <= 256 and len(blob) >= 10 + length, "key id length")
    key_id = blob[6:6 + length].decode("ascii")
    version = struct.unpack(">I", blob[6 + length:10 + length])[0]
    return key_id, version, blob[10 + length:]
