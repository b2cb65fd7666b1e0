//! `dsmilctl keygen` and `dsmilctl sign`: ed25519 keys for signed models and
//! the detached signatures `deploy --signature` sends. Local work only: no
//! daemon is asked.
//!
//! Files, all readable by OpenSSL (`openssl pkey`, `pkeyutl -rawin`):
//! - `PREFIX.key`: the private key, PKCS#8 PEM ("PRIVATE KEY"), mode 0600;
//! - `PREFIX.pub`: the public key, SubjectPublicKeyInfo PEM ("PUBLIC KEY"),
//!   whose base64 line is what dsmild's `[signing].trusted_keys` takes;
//! - `MODEL.sig`: the signature, its 64 raw bytes.
//!
//! What is signed is the message dsmild's `deploy::signature` verifies:
//! `dsmil-model-v1\n` + the model's sha256 in lowercase hex (and for an IR,
//! `\n` + its .bin's sha256), never the bytes themselves, so a signature made
//! here means "this model file" and nothing else.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::output;

/// The first line of every signed message (dsmild checks the same).
const CONTEXT: &str = "dsmil-model-v1";

/// Makes a key pair `PREFIX.key` and `PREFIX.pub`; refuses to overwrite either.
pub fn keygen(prefix: &Path, json: bool) -> anyhow::Result<()> {
    let private = with_suffix(prefix, "key");
    let public = with_suffix(prefix, "pub");
    for path in [&private, &public] {
        if path.exists() {
            bail!(
                "{} exists: not overwriting it (remove it or choose another --out)",
                path.display()
            );
        }
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("reading the system's random numbers")?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    // PKCS#8 v1 (the seed alone, as `openssl genpkey -algorithm ed25519`
    // writes), which every OpenSSL reads; the public key is derived from it.
    let private_pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .context("encoding the private key")?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    write_new(&private, private_pem.as_bytes(), 0o600)?;
    write_new(&public, public_pem.as_bytes(), 0o644)?;
    let verifying = key.verifying_key();
    let name = prefix
        .file_name()
        .map_or("key".into(), |n| n.to_string_lossy().into_owned());
    let report = serde_json::json!({
        "private_key": private,
        "public_key": public,
        "fingerprint": fingerprint(&verifying),
        "public_key_base64": base64_line(&public_pem),
    });
    output::print(&report, json, || {
        println!(
            "wrote {} (private key: mode 0600, keep it secret) and {} (public key)",
            private.display(),
            public.display()
        );
        println!("fingerprint {}", fingerprint(&verifying));
        println!("to trust it, add to dsmild's [signing] trusted_keys:");
        println!("  {{ name = {name:?}, public_key = {:?} }}", base64_line(&public_pem));
    })
}

/// Writes `MODEL.sig` (or `out`): the signature over the model's sha256 (and
/// its .bin's, for an IR: the one given, else the .xml's name with .bin, as
/// `deploy` picks it).
pub fn sign(model: &Path, key: &Path, weights: Option<&Path>, out: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let signing = SigningKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("{}: not an ed25519 private key (PKCS#8 PEM)", key.display()))?;
    let model_sha256 = sha256_of(model)?;
    let weights = match (dsmil_kinds::Format::from_path(model), weights) {
        (_, Some(path)) => Some(path.to_owned()),
        (dsmil_kinds::Format::Ir, None) => Some(model.with_extension("bin")).filter(|p| p.is_file()),
        _ => None,
    };
    let weights_sha256 = weights.as_deref().map(sha256_of).transpose()?;
    let message = message(&model_sha256, weights_sha256.as_deref());
    let signature = signing.sign(&message);
    let out = out.map_or_else(|| with_suffix(model, "sig"), Path::to_owned);
    std::fs::write(&out, signature.to_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let verifying = signing.verifying_key();
    let report = serde_json::json!({
        "signature": out,
        "model_sha256": model_sha256,
        "weights_sha256": weights_sha256,
        "fingerprint": fingerprint(&verifying),
    });
    output::print(&report, json, || {
        println!(
            "wrote {}: {} sha256 {model_sha256} signed by {}",
            out.display(),
            model.display(),
            fingerprint(&verifying)
        );
    })
}

/// A signature file for `deploy --signature`: its 64 raw bytes.
pub fn read_signature(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() != 64 {
        bail!(
            "{} is {} bytes, not an ed25519 signature (64 raw bytes, as `dsmilctl sign` writes)",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

/// The message a model's signature covers.
fn message(model_sha256: &str, weights_sha256: Option<&str>) -> Vec<u8> {
    match weights_sha256 {
        Some(weights) => format!("{CONTEXT}\n{model_sha256}\n{weights}"),
        None => format!("{CONTEXT}\n{model_sha256}"),
    }
    .into_bytes()
}

/// "sha256:" and the hex sha256 of the key's 32 bytes, as dsmild records it.
fn fingerprint(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// `path` with `.suffix` appended (model.onnx → model.onnx.sig).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The base64 line(s) of a PEM, joined: the inline form of a public key.
fn base64_line(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Creates `path` with `mode` (never replacing a file that appeared meanwhile).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_matches_what_dsmild_verifies() {
        let sha = "ab".repeat(32);
        assert_eq!(message(&sha, None), format!("dsmil-model-v1\n{sha}").into_bytes());
        assert_eq!(
            message(&sha, Some("cd")),
            format!("dsmil-model-v1\n{sha}\ncd").into_bytes()
        );
    }

    #[test]
    fn suffixes_are_appended() {
        assert_eq!(with_suffix(Path::new("m.onnx"), "sig"), PathBuf::from("m.onnx.sig"));
        assert_eq!(
            with_suffix(Path::new("keys/release"), "pub"),
            PathBuf::from("keys/release.pub")
        );
    }
}
