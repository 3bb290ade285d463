# Independent cross-check of the streaming-format known-answer vectors (src/stream/kat.rs),
# with the Python `cryptography` package: `python3 stream_kat.py` prints the expected streams.
import hashlib, hmac, struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hashes

def ctx(d):
    out = b'\x01' + struct.pack('>Q', len(d))
    for k in sorted(d, key=lambda s: s.encode()):
        out += struct.pack('>Q', len(k.encode())) + k.encode() + struct.pack('>Q', len(d[k].encode())) + d[k].encode()
    return out

def expand(prk, info):
    return HKDFExpand(hashes.SHA256(), 32, info).derive(prk)

def stream(alg, data_key, context, part, segment_size, salt, prefix, plaintext):
    fields = b'KMSS' + bytes([1, alg]) + struct.pack('>I', segment_size)
    prk = hmac.new(salt, data_key, hashlib.sha256).digest()
    tail = fields + struct.pack('>I', part) + ctx(context)
    seg_key = expand(prk, b'kms-stream-v1 segment key' + tail)
    commit_key = expand(prk, b'kms-stream-v1 commitment key' + tail)
    head = fields + salt + prefix
    header = head + hmac.new(commit_key, head, hashlib.sha256).digest()
    aead = (AESGCM if alg == 1 else ChaCha20Poly1305)(seg_key)
    segments = [plaintext[i:i + segment_size] for i in range(0, len(plaintext), segment_size)] or [b'']
    out = header
    for i, seg in enumerate(segments):
        nonce = prefix + struct.pack('>I', i) + bytes([1 if i == len(segments) - 1 else 0])
        out += aead.encrypt(nonce, seg, b'')
    return out

data_key = bytes(range(32))
salt = bytes(range(0x40, 0x60))
prefix = bytes(range(0x70, 0x77))
context = {'bucket': 'photos', 'object': 'cat.jpg'}
plaintext = bytes(range(40))
print('aes_whole', stream(1, data_key, context, 0, 16, salt, prefix, plaintext).hex())
print('chacha_part3', stream(2, data_key, context, 3, 16, salt, prefix, plaintext).hex())
print('aes_empty', stream(1, data_key, {}, 0, 65536, salt, prefix, b'').hex())
print('aes128_key', stream(1, data_key[:16], context, 0, 16, salt, prefix, plaintext[:16]).hex())
