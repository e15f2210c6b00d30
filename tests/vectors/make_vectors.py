"""Regenerate tests/vectors/securechat_v3.json (only when the wire format changes on purpose, with
ENVELOPE_VERSION bumped).

Fixed inputs: test-only worker private keys (the hybrid one as its 32-byte seed), DEK, nonce, header fields and
bodies. Expected outputs: the
canonical header bytes, the body ciphertext, response frames (protocol v2: padded to FRAME_BYTES; all
deterministic given DEK, nonce and run salt) and whole
envelopes whose wrapped keys came from the libraries' own randomness (checked by opening them).

    python tests/vectors/make_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from securechat.envelope import ENVELOPE_VERSION, seal_request
from securechat.keys import Suite, WorkerKeys
from securechat.stream import ResponseSealer, Usage
from securechat.suites import classical_key_pair, hybrid_private_key

OUT = Path(__file__).with_name(f"securechat_v{ENVELOPE_VERSION}.json")
DEK = bytes(range(32))
NONCE = bytes(range(100, 112))
RUN_SALT = bytes(range(200, 232))  # the worker's per-run response salt, injected
SEALED_AT = 1_800_000_000  # the sealer's clock, injected: the header's expires_at is this plus the default TTL
X25519_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")  # RFC 7748 §6.1
HYBRID_SEED = bytes(range(64, 96))  # test-only MLKEM768-X25519 seed
BODY = '{"messages":[{"role":"user","content":"known answer ✓"}],"max_new_tokens":8}'.encode()
FRAME_BYTES = 512
HEADER = {"request_id": "kat-request-0001", "tenant_id": "tenant1", "mode": "plain", "region": "us-west-1"}


def known_answer_frames() -> list[bytes]:
    """Start, two text frames (one multi-byte character), a trailer longer than one frame, then the final frame
    (its clear token counts rounded up to the default bucket of 64; the exact 9 and 2 are in the trailer)."""
    sealer = ResponseSealer(DEK, HEADER["request_id"], FRAME_BYTES, _salt=RUN_SALT)
    long_metrics = {"output_tokens": 2, "note": "x" * 600}
    return [
        sealer.start_frame,
        *sealer.seal_text("Hello"),
        *sealer.seal_text(" ✓"),
        *sealer.seal_final(long_metrics, usage=Usage(input_tokens=9, output_tokens=2)),
    ]


def main() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keys = WorkerKeys(
        {
            Suite.HPKE_MLKEM768_X25519: hybrid_private_key(HYBRID_SEED),
            Suite.HPKE_X25519: classical_key_pair(x25519.X25519PrivateKey.from_private_bytes(X25519_PRIVATE)),
            Suite.RSA_OAEP: classical_key_pair(rsa_key),
        }
    )
    cases = []
    for suite in Suite:
        recipient = keys.public_key(suite)
        sealed = seal_request(BODY, **HEADER, recipients=[recipient], _dek=DEK, _nonce=NONCE, _now=SEALED_AT)
        env = sealed.envelope
        frames = known_answer_frames()
        cases.append(
            {
                "suite": suite.value,
                "key_id": recipient.key_id,
                "public_key_hex": recipient.public_key_bytes.hex(),
                "header_bytes": env.header_bytes.decode(),
                "ciphertext_hex": env.ciphertext.hex(),
                "envelope": env.to_dict(),
                "response_frames_hex": [frame.hex() for frame in frames],
            }
        )
    vectors = {
        "version": ENVELOPE_VERSION,
        "hybrid_seed_hex": HYBRID_SEED.hex(),
        "x25519_private_hex": X25519_PRIVATE.hex(),
        "rsa_private_pem": rsa_pem,
        "dek_hex": DEK.hex(),
        "nonce_hex": NONCE.hex(),
        "run_salt_hex": RUN_SALT.hex(),
        "sealed_at": SEALED_AT,
        "frame_bytes": FRAME_BYTES,
        "body": BODY.decode(),
        "header": HEADER,
        "cases": cases,
    }
    OUT.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
