//! An independent cosign-format signer: `py/cosign_key.py` writes an ECDSA
//! P-256 key pair in cosign's encrypted private-key format, `py/cosign_sign.py`
//! decrypts it and signs a simple-signing payload (Python `cryptography` and
//! PyNaCl; berth's Rust code is not involved). Debian's skopeo and podman are
//! built with sigstore signing disabled, so they cannot be the signer.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;

pub const COSIGN_KEY_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/cosign_key.py");
pub const COSIGN_SIGN_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/cosign_sign.py");

/// A key pair on disk: the encrypted private key, its passphrase file, the public PEM.
#[derive(Clone, Debug)]
pub struct CosignKey {
    pub private: PathBuf,
    pub passphrase_file: PathBuf,
    pub public_pem: String,
}

/// A signature over a payload written to `payload`.
#[derive(Clone, Debug)]
pub struct SimpleSignature {
    pub payload: PathBuf,
    /// Base64 ASN.1 DER ECDSA-SHA256, as the `dev.cosignproject.cosign/signature` annotation holds it.
    pub signature: String,
}

fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

impl CosignKey {
    /// Generates `dir/<name>.key` (passphrase in `dir/<name>.pass`) and `dir/<name>.pub`.
    pub fn generate(dir: &Path, name: &str) -> CosignKey {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let passphrase_file = dir.join(format!("{name}.pass"));
        std::fs::write(&passphrase_file, format!("{name}-passphrase\n")).expect("passphrase");
        run(python(COSIGN_KEY_SCRIPT)
            .arg("--private")
            .arg(&private)
            .arg("--public")
            .arg(&public)
            .arg("--passphrase-file")
            .arg(&passphrase_file));
        CosignKey {
            private,
            passphrase_file,
            public_pem: std::fs::read_to_string(&public).expect("public key"),
        }
    }

    /// Signs `digest` (as `reference`), writing the payload to `payload_out`.
    pub fn sign(&self, digest: &str, reference: &str, payload_out: &Path) -> SimpleSignature {
        let out = run(python(COSIGN_SIGN_SCRIPT)
            .arg("--key")
            .arg(&self.private)
            .arg("--passphrase-file")
            .arg(&self.passphrase_file)
            .args(["--digest", digest, "--reference", reference])
            .arg("--payload-out")
            .arg(payload_out));
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("signer output");
        SimpleSignature {
            payload: payload_out.to_owned(),
            signature: v["signature"].as_str().expect("signature").to_owned(),
        }
    }
}

/// Whether python3 can import what the signer needs (`pip install pynacl cryptography`).
pub fn signer_available() -> bool {
    Command::new("python3")
        .args(["-c", "import nacl.secret, cryptography, oras.provider"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
