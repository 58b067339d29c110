#!/usr/bin/env python3
"""Write an ECDSA P-256 key pair in cosign's formats, for signing tests.

Used by berth's end-to-end tests (berth-testkit's `tools::sigstore`): skopeo
1.9 signs with `--sign-by-sigstore-private-key` but cannot generate the key.

    cosign_key.py --private OUT.key --public OUT.pub --passphrase-file PASS \
        [--pem-type "ENCRYPTED COSIGN PRIVATE KEY"]

The private key is cosign's encrypted format (as `cosign generate-key-pair`
writes it, from go-securesystemslib's `encrypted` package): a PEM block whose
body is JSON

    {"kdf": {"name": "scrypt", "params": {"N": .., "r": .., "p": ..}, "salt": b64},
     "cipher": {"name": "nacl/secretbox", "nonce": b64},
     "ciphertext": b64}

where the secretbox key is scrypt(passphrase, salt, N, r, p, 32 bytes) and the
plaintext is the PKCS#8 DER private key. The public key is a PEM
"PUBLIC KEY" (SubjectPublicKeyInfo). Prints {"private": .., "public": ..}.
"""

import argparse
import base64
import hashlib
import json
import os

import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def b64(data):
    return base64.b64encode(data).decode()


def encrypt(der, passphrase):
    salt = os.urandom(32)
    key = hashlib.scrypt(
        passphrase, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=128 * 1024 * 1024, dklen=32,
    )
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce)
    return {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed.ciphertext),
    }


def pem(kind, body):
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--private", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--passphrase-file", required=True)
    p.add_argument("--pem-type", default="ENCRYPTED COSIGN PRIVATE KEY")
    args = p.parse_args()

    with open(args.passphrase_file, "rb") as f:
        passphrase = f.read().rstrip(b"\n")
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sealed = json.dumps(encrypt(der, passphrase)).encode()
    with open(args.private, "w") as f:
        f.write(pem(args.pem_type, b64(sealed)))
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode()
    with open(args.public, "w") as f:
        f.write(public)
    print(json.dumps({"private": args.private, "public": args.public}))


if __name__ == "__main__":
    main()
