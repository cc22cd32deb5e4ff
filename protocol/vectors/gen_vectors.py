"""Known-answer vectors for Tether's key schedule, secure channel and password verifier,
computed with an implementation independent of ours (pyca/cryptography: OpenSSL's HKDF,
AES-SIV and Argon2id; Python integers for the SRP verifier).

Run: python3 protocol/vectors/gen_vectors.py > protocol/vectors/vectors.json
"""
import json, struct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
import hashlib

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

# A host password's verifier: SRP-6a (RFC 5054 3072-bit group, SHA-256) over the password
# stretched with Argon2id (19 MiB, 2 passes, 1 lane, 32 bytes) under the credential's salt:
#   x = H(salt | H("<host_id>/password" ":" stretched)),  v = g^x mod N
N = int(
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404dd"
    "ef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed"
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf0598da48361c55d39a69163fa8fd24cf5f"
    "83655d23dca3ad961c62f356208552bb9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b"
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf6955817183995497cea956ae515d2261898fa0510"
    "15728e5a8aaac42dad33170d04507a33a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7"
    "abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864d87602733ec86a64521f2b18177b200c"
    "bbe117577a615d6c770988c0bad946e208e24fa074e5ab3143db5bfce0fd108e4b82d120a93ad2caffffffffffffffff", 16)
password = "correct horse battery staple".encode()
salt = bytes(range(16))
stretched = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19 * 1024).derive(password)
inner_hash = hashlib.sha256(f"{host_id}/password:".encode() + stretched).digest()
x = int.from_bytes(hashlib.sha256(salt + inner_hash).digest(), "big")
v = pow(5, x, N)
verifier = v.to_bytes((v.bit_length() + 7) // 8, "big")

print(json.dumps({
    "srp_key": srp_key.hex(), "client_nonce": client_nonce.hex(), "host_nonce": host_nonce.hex(),
    "host_id": host_id, "client_to_host": c2h.hex(), "host_to_client": h2c.hex(),
    "inner_frame": inner.hex(), "sealed_ctr0": sealed[0], "sealed_ctr1": sealed[1],
    "password": password.decode(), "password_salt": salt.hex(), "password_stretched": stretched.hex(),
    "password_verifier": verifier.hex(),
}, indent=2))
