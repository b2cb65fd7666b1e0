//! Signed models: the one rule for a deploy's detached signature.
//!
//! What is signed is not the model's bytes but a short, domain-separated
//! statement about them: `dsmil-model-v1\n` followed by the model file's
//! sha256 in lowercase hex, and for an upload with a weights file (an
//! OpenVINO IR's .bin) `\n` and the .bin's sha256. The prefix keeps a
//! signature made for this purpose from being accepted for any other (and
//! the reverse); the hashes are the ones the upload path has already checked.
//! The signature is ed25519 (RFC 8032, verified strictly), 64 raw bytes.
//!
//! The rule, for a deploy placed in a layer: a signature that is given must
//! verify with one of the trusted keys, whatever the layer (a bad signature
//! is never ignored); a layer that requires signatures refuses a deploy
//! without one. The key that verified is what the version records. A
//! rollback into a layer that requires signatures takes only a version
//! whose recorded key is still trusted (same fingerprint), so neither an
//! unsigned old version nor one signed by a key since removed comes back.
//!
//! Pure: no I/O and no configuration types; the caller hands in the trusted
//! keys and whether the layer requires a signature, and audits a refusal.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::store::SignedBy;

/// The first line of every signed message.
pub const CONTEXT: &str = "dsmil-model-v1";

/// The bytes a model's signature covers (see the module doc).
pub fn message(model_sha256: &str, weights_sha256: Option<&str>) -> Vec<u8> {
    let mut text = format!("{CONTEXT}\n{}", model_sha256.to_ascii_lowercase());
    if let Some(weights) = weights_sha256 {
        text.push('\n');
        text.push_str(&weights.to_ascii_lowercase());
    }
    text.into_bytes()
}

/// A public key's fingerprint: "sha256:" and the hex sha256 of its 32 bytes.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// Where a deploy was placed, as the rule needs it.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    pub layer: u8,
    pub layer_name: &'a str,
    /// The layer is in `[signing].required_layers`.
    pub required: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "layer {layer} ({name}) requires a signed model ([signing].required_layers): sign it with a trusted \
         key ({trusted}) using `dsmilctl sign MODEL --key KEY` and deploy with --signature MODEL.sig"
    )]
    Required { layer: u8, name: String, trusted: String },
    #[error(
        "version {version} of {model:?} {why}, and layer {layer} ({name}) requires a signed model \
         ([signing].required_layers; {trusted}): deploy a signed version instead"
    )]
    UntrustedVersion {
        model: String,
        version: u32,
        why: String,
        layer: u8,
        name: String,
        trusted: String,
    },
    #[error(
        "the signature is {len} bytes, not an ed25519 signature (64 raw bytes, as `dsmilctl sign` writes); \
         refused in layer {layer} ({name})"
    )]
    Malformed { len: usize, layer: u8, name: String },
    #[error(
        "the signature does not verify with any trusted key ({trusted}) for model sha256 {sha256}; refused in \
         layer {layer} ({name}){}",
        if *required { ", which requires a signed model" } else { "" }
    )]
    Invalid {
        sha256: String,
        trusted: String,
        layer: u8,
        name: String,
        required: bool,
    },
}

/// Applies the rule: `Ok(Some(signer))` for a verified signature,
/// `Ok(None)` for an unsigned deploy where none is required.
pub fn check<'k>(
    signature: Option<&[u8]>,
    model_sha256: &str,
    weights_sha256: Option<&str>,
    trusted: impl IntoIterator<Item = (&'k str, &'k VerifyingKey)> + Clone,
    placed: Placed<'_>,
) -> Result<Option<SignedBy>, SignatureError> {
    let name = placed.layer_name.to_owned();
    let Some(bytes) = signature.filter(|s| !s.is_empty()) else {
        return match placed.required {
            true => Err(SignatureError::Required {
                layer: placed.layer,
                name,
                trusted: describe(trusted),
            }),
            false => Ok(None),
        };
    };
    let Ok(bytes) = <&[u8; 64]>::try_from(bytes) else {
        return Err(SignatureError::Malformed {
            len: bytes.len(),
            layer: placed.layer,
            name,
        });
    };
    let signature = Signature::from_bytes(bytes);
    let message = message(model_sha256, weights_sha256);
    for (key_name, key) in trusted.clone() {
        if key.verify_strict(&message, &signature).is_ok() {
            return Ok(Some(SignedBy {
                key: key_name.to_owned(),
                fingerprint: fingerprint(key),
            }));
        }
    }
    Err(SignatureError::Invalid {
        sha256: model_sha256.to_ascii_lowercase(),
        trusted: describe(trusted),
        layer: placed.layer,
        name,
        required: placed.required,
    })
}

/// For a rollback to an existing version: in a layer that requires
/// signatures, the version's recorded key must still be trusted.
pub fn check_existing<'k>(
    model: &str,
    version: u32,
    signed_by: Option<&SignedBy>,
    trusted: impl IntoIterator<Item = (&'k str, &'k VerifyingKey)> + Clone,
    placed: Placed<'_>,
) -> Result<(), SignatureError> {
    if !placed.required {
        return Ok(());
    }
    let why = match signed_by {
        None => "was deployed unsigned".to_owned(),
        Some(s)
            if trusted
                .clone()
                .into_iter()
                .any(|(_, k)| fingerprint(k) == s.fingerprint) =>
        {
            return Ok(());
        }
        Some(s) => format!("was signed by {} {}, no longer a trusted key", s.key, s.fingerprint),
    };
    Err(SignatureError::UntrustedVersion {
        model: model.to_owned(),
        version,
        why,
        layer: placed.layer,
        name: placed.layer_name.to_owned(),
        trusted: describe(trusted),
    })
}

/// The trusted keys, as a refusal names them.
fn describe<'k>(trusted: impl IntoIterator<Item = (&'k str, &'k VerifyingKey)>) -> String {
    let keys: Vec<String> = trusted
        .into_iter()
        .map(|(name, key)| format!("{name} {}", fingerprint(key)))
        .collect();
    match keys.is_empty() {
        true => "none: [signing].trusted_keys is empty".to_owned(),
        false => format!("trusted: {}", keys.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sign(key: &SigningKey, sha256: &str) -> Vec<u8> {
        key.sign(&message(sha256, None)).to_bytes().to_vec()
    }

    fn placed(required: bool) -> Placed<'static> {
        Placed {
            layer: 3,
            layer_name: "SECRET",
            required,
        }
    }

    #[test]
    fn the_message_is_domain_separated_and_names_both_files_of_an_ir() {
        assert_eq!(message(SHA, None), format!("dsmil-model-v1\n{SHA}").into_bytes());
        assert_eq!(
            message(&SHA.to_uppercase(), Some("AB")),
            format!("dsmil-model-v1\n{SHA}\nab").into_bytes()
        );
    }

    #[test]
    fn a_good_signature_names_the_key_that_verified_it() {
        let (release, ci) = (key(1), key(2));
        let keys = [("release", release.verifying_key()), ("ci", ci.verifying_key())];
        let trusted = keys.iter().map(|(n, k)| (*n, k));
        for required in [true, false] {
            let signer = check(Some(&sign(&ci, SHA)), SHA, None, trusted.clone(), placed(required))
                .unwrap()
                .unwrap();
            assert_eq!(signer.key, "ci");
            assert_eq!(signer.fingerprint, fingerprint(&ci.verifying_key()));
            assert!(signer.fingerprint.starts_with("sha256:") && signer.fingerprint.len() == 7 + 64);
        }
    }

    #[test]
    fn unsigned_is_refused_only_where_required_and_the_refusal_names_layer_and_keys() {
        let release = key(1);
        let keys = [("release", release.verifying_key())];
        let trusted = keys.iter().map(|(n, k)| (*n, k));
        assert_eq!(check(None, SHA, None, trusted.clone(), placed(false)).unwrap(), None);
        assert_eq!(
            check(Some(&[]), SHA, None, trusted.clone(), placed(false)).unwrap(),
            None
        );
        let err = check(None, SHA, None, trusted, placed(true)).unwrap_err().to_string();
        assert!(err.contains("layer 3 (SECRET) requires a signed model"), "{err}");
        assert!(
            err.contains(&format!("release {}", fingerprint(&release.verifying_key()))),
            "{err}"
        );
        let none = std::iter::empty::<(&str, &VerifyingKey)>();
        let err = check(None, SHA, None, none, placed(true)).unwrap_err().to_string();
        assert!(err.contains("trusted_keys is empty"), "{err}");
    }

    #[test]
    fn a_bad_signature_is_refused_even_where_none_is_required() {
        let (release, stranger) = (key(1), key(9));
        let keys = [("release", release.verifying_key())];
        let trusted = keys.iter().map(|(n, k)| (*n, k));
        let other_sha = SHA.replace('9', "8");
        for (signature, why) in [
            (sign(&stranger, SHA), "an untrusted key"),
            (sign(&release, &other_sha), "another model"),
            (
                release
                    .sign(format!("dsmil-other-v1\n{SHA}").as_bytes())
                    .to_bytes()
                    .to_vec(),
                "another purpose",
            ),
        ] {
            for required in [false, true] {
                let err = check(Some(&signature), SHA, None, trusted.clone(), placed(required)).unwrap_err();
                assert!(matches!(err, SignatureError::Invalid { .. }), "{why}: {err}");
                let text = err.to_string();
                assert!(text.contains("does not verify") && text.contains(SHA), "{why}: {text}");
                assert_eq!(text.contains("which requires a signed model"), required, "{text}");
            }
        }
        // The .bin of an IR is part of what is signed.
        let ir = release.sign(&message(SHA, Some("aa"))).to_bytes();
        assert!(check(Some(&ir), SHA, Some("aa"), trusted.clone(), placed(false)).is_ok());
        assert!(check(Some(&ir), SHA, Some("bb"), trusted.clone(), placed(false)).is_err());
        let err = check(Some(&[0; 10]), SHA, None, trusted, placed(false)).unwrap_err();
        assert!(err.to_string().contains("10 bytes"), "{err}");
    }

    #[test]
    fn a_rollback_into_a_layer_that_requires_signatures_needs_a_version_signed_by_a_trusted_key() {
        let (release, retired) = (key(1), key(2));
        let keys = [("release", release.verifying_key())];
        let trusted = keys.iter().map(|(n, k)| (*n, k));
        let by = |k: &SigningKey| SignedBy {
            key: "old-name".into(),
            fingerprint: fingerprint(&k.verifying_key()),
        };
        // Matched by fingerprint, not by name.
        assert!(check_existing("m", 2, Some(&by(&release)), trusted.clone(), placed(true)).is_ok());
        for unsigned_ok in [None, Some(&by(&retired))] {
            assert!(check_existing("m", 2, unsigned_ok, trusted.clone(), placed(false)).is_ok());
        }
        let err = check_existing("m", 2, None, trusted.clone(), placed(true))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 2 of \"m\" was deployed unsigned") && err.contains("layer 3 (SECRET)"),
            "{err}"
        );
        let err = check_existing("m", 2, Some(&by(&retired)), trusted, placed(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no longer a trusted key"), "{err}");
    }
}
