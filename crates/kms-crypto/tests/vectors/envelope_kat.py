# Independent cross-check of the envelope known-answer vectors (src/envelope.rs), with the
# Python `cryptography` package: `python3 envelope_kat.py` prints the two expected envelopes.
import struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
def ctx(d):
    out = b'\x01' + struct.pack('>Q', len(d))
    for k in sorted(d, key=lambda s: s.encode()):
        out += struct.pack('>Q', len(k.encode())) + k.encode() + struct.pack('>Q', len(d[k].encode())) + d[k].encode()
    return out
kek = bytes(range(32)); nonce = bytes(range(0xa0, 0xac)); pt = bytes(range(0x10, 0x30))
c = ctx({'object':'cat.jpg','bucket':'photos'})
for alg, cls in ((1, AESGCM), (2, ChaCha20Poly1305)):
    header = bytes([1, alg]) + nonce
    aad = header + b'kms-envelope-v1' + struct.pack('>Q', 8) + b'master-1' + struct.pack('>I', 7) + c
    print(alg, (header + cls(kek).encrypt(nonce, pt, aad)).hex())
