#!/usr/bin/env python3
"""Sign an image digest as cosign and the containers tools do, independently of berth.

Used by berth's end-to-end tests (berth-testkit's `tools::sigstore`). Debian's
skopeo and podman are built with sigstore signing disabled ("Debian-local
change: sigstore disabled"), so this is the signer: Python's `cryptography`
(OpenSSL) with PyNaCl, reading the key in cosign's encrypted format.

    cosign_sign.py --key K.key --passphrase-file PASS --digest sha256:... \
        --reference host/repo:tag --payload-out payload.json

Decrypts the key (scrypt KDF + NaCl secretbox over the PKCS#8 DER, as
`cosign_key.py` writes it and cosign documents it), writes the simple-signing
payload containers/image writes (`critical.identity.docker-reference`,
`critical.image.docker-manifest-digest`, `critical.type`, `optional.creator`),
and prints {"payload": path, "signature": base64 ASN.1 DER ECDSA-SHA256}.
"""

import argparse
import base64
import hashlib
import json
import re

import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PEM = re.compile(
    r"-----BEGIN (ENCRYPTED (?:COSIGN|SIGSTORE) PRIVATE KEY)-----\s*(.*?)\s*-----END \1-----",
    re.S,
)


def load_key(path, passphrase):
    with open(path) as f:
        m = PEM.search(f.read())
    if not m:
        raise SystemExit(f"{path}: not an encrypted cosign/sigstore private key")
    sealed = json.loads(base64.b64decode("".join(m.group(2).split())))
    kdf, cipher = sealed["kdf"], sealed["cipher"]
    if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
        raise SystemExit(f"{path}: unsupported kdf/cipher {kdf['name']}/{cipher['name']}")
    params = kdf["params"]
    key = hashlib.scrypt(
        passphrase, salt=base64.b64decode(kdf["salt"]),
        n=params["N"], r=params["r"], p=params["p"],
        maxmem=128 * 1024 * 1024, dklen=32,
    )
    der = nacl.secret.SecretBox(key).decrypt(
        base64.b64decode(sealed["ciphertext"]), base64.b64decode(cipher["nonce"])
    )
    return serialization.load_der_private_key(der, password=None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--passphrase-file", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--payload-out", required=True)
    args = p.parse_args()

    with open(args.passphrase_file, "rb") as f:
        passphrase = f.read().rstrip(b"\n")
    key = load_key(args.key, passphrase)
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": args.reference},
                "image": {"docker-manifest-digest": args.digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "berth-testkit cosign_sign.py"},
        },
        separators=(",", ":"),
    ).encode()
    with open(args.payload_out, "wb") as f:
        f.write(payload)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    print(json.dumps({"payload": args.payload_out, "signature": base64.b64encode(signature).decode()}))


if __name__ == "__main__":
    main()
