"""Known-answer vectors for Tether's key schedule and secure channel, computed with an
implementation independent of ours (pyca/cryptography: OpenSSL's HKDF and AES-SIV).

Run: python3 protocol/vectors/gen_vectors.py > protocol/vectors/vectors.json
"""
import json, struct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

srp_key = bytes(range(32))
client_nonce = bytes([0x11]) * 32
host_nonce = bytes([0x22]) * 32
host_id = "TETHERTESTHOSTID7QXK3M5VZA"

def expand(direction):
    info = f"tether/v1 host={host_id} {direction}".encode()
    return HKDF(hashes.SHA256(), 64, client_nonce + host_nonce, info).derive(srp_key)

c2h, h2c = expand("client->host"), expand("host->client")

def frame(header_json: str, payload: bytes) -> bytes:
    h = header_json.encode()
    return struct.pack(">I", len(h)) + h + struct.pack(">I", len(payload)) + payload

inner = frame('{"type":"data","stream":1,"seq":0}', b"hello, tether")
sealed = []
for ctr in (0, 1):
    ad = b"tether/v1 ctr" + struct.pack(">Q", ctr)
    sealed.append(AESSIV(c2h).encrypt(inner, [ad]).hex())

print(json.dumps({
    "srp_key": srp_key.hex(), "client_nonce": client_nonce.hex(), "host_nonce": host_nonce.hex(),
    "host_id": host_id, "client_to_host": c2h.hex(), "host_to_client": h2c.hex(),
    "inner_frame": inner.hex(), "sealed_ctr0": sealed[0], "sealed_ctr1": sealed[1],
}, indent=2))
