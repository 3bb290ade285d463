# Independent cross-check of the version-2 envelope known-answer vectors (src/envelope.rs),
# with the Python `cryptography` package: `python3 envelope_v2_kat.py` prints them.
# Per-envelope key = HKDF-SHA256(salt, IKM = KEK, info = "kms-envelope-v2" || algorithm id),
# AES-256-GCM under that key with the all-zero nonce.
import struct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
def ctx(d):
    out = b'\x01' + struct.pack('>Q', len(d))
    for k in sorted(d, key=lambda s: s.encode()):
        out += struct.pack('>Q', len(k.encode())) + k.encode() + struct.pack('>Q', len(d[k].encode())) + d[k].encode()
    return out
def envelope(kek, salt, key_id, version, context, pt):
    header = bytes([2, 1]) + salt
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b'kms-envelope-v2\x01').derive(kek)
    aad = header + b'kms-envelope-v2' + struct.pack('>Q', len(key_id)) + key_id + struct.pack('>I', version) + ctx(context)
    return key, header + AESGCM(key).encrypt(bytes(12), pt, aad)
kek = bytes(range(32)); salt = bytes(range(0x40, 0x60))
key, env = envelope(kek, salt, b'master-1', 7, {'object': 'cat.jpg', 'bucket': 'photos'}, bytes(range(0x10, 0x30)))
print('derived key', key.hex())
print('envelope   ', env.hex())
key, env = envelope(kek, bytes([0xff] * 32), b'k', 1, {}, b'')
print('empty      ', env.hex())
