//! Firmware release validation.
//!
//! A release is immutable once created, so everything that could make it
//! undeployable is checked up front: a semantic `version` (rollouts and
//! `firmware < "2.0.0"` queries compare versions), the compatible
//! `hardware` models, a downloadable `url`, the image's `sha256` and
//! `size_bytes` (devices verify both after download), and an optional
//! Ed25519 `signature`.
//!
//! Signature convention: the signature is over the **32 raw bytes of the
//! SHA-256 digest** of the image (the bytes that `sha256` spells in hex),
//! not over the image itself and not over the hex text. Signing the digest
//! lets a build pipeline sign without streaming the image again, and lets a
//! device verify before or after download with the digest it computes
//! anyway. The signature is standard base64 (padding optional) of the
//! 64-byte Ed25519 signature. When fleetd is configured with a firmware
//! signing public key, the signature is verified against it; without one,
//! only its encoding is checked.

use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use semver::Version;

use super::{check_name, indexed, FieldError};

pub const MAX_PRODUCT_LEN: usize = 64;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_HARDWARE_MODELS: usize = 100;

/// A release as submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareRelease {
    pub product: String,
    pub version: String,
    pub hardware: Vec<String>,
    pub url: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub signature: Option<String>,
}

/// A release that passed validation, with normalised values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRelease {
    pub product: String,
    pub version: Version,
    pub hardware: Vec<String>,
    pub url: String,
    /// Lower-case hex.
    pub sha256: String,
    pub digest: [u8; 32],
    pub size_bytes: u64,
    /// The decoded signature, if one was given.
    pub signature: Option<[u8; 64]>,
    /// Whether the signature was checked against a public key.
    pub signature_verified: bool,
}

impl ValidRelease {
    /// Whether this release may be installed on `hardware`.
    pub fn supports(&self, hardware: &str) -> bool {
        self.hardware.iter().any(|h| h == hardware)
    }
}

/// Parses the firmware signing public key (SPKI PEM,
/// `-----BEGIN PUBLIC KEY-----`); `field` names the setting in errors.
pub fn parse_public_key(field: &str, pem: &str) -> Result<VerifyingKey, FieldError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
        FieldError::new(
            field,
            format!("not an Ed25519 public key in PEM (\"-----BEGIN PUBLIC KEY-----\"): {e}"),
        )
    })
}

/// Validates a release; verifies its signature when `signing_key` is set.
pub fn validate_release(
    release: &FirmwareRelease,
    signing_key: Option<&VerifyingKey>,
) -> Result<ValidRelease, FieldError> {
    check_name("product", &release.product, MAX_PRODUCT_LEN)?;
    let version = Version::parse(&release.version).map_err(|e| {
        FieldError::new(
            "version",
            format!(
                "invalid semantic version {:?}: {e} (expected e.g. \"1.4.2\" or \"2.0.0-rc.1\")",
                release.version
            ),
        )
    })?;
    let hardware = validate_hardware(&release.hardware)?;
    validate_url(&release.url)?;
    let (sha256, digest) = validate_sha256(&release.sha256)?;
    if release.size_bytes <= 0 {
        return Err(FieldError::new(
            "size_bytes",
            format!("must be greater than 0, got {}", release.size_bytes),
        ));
    }
    let signature = match &release.signature {
        None => None,
        Some(sig) => Some(decode_signature(sig)?),
    };
    let signature_verified = match (signature, signing_key) {
        (Some(sig), Some(key)) => {
            key.verify(&digest, &Signature::from_bytes(&sig)).map_err(|_| {
                FieldError::new(
                    "signature",
                    "does not verify: expected an Ed25519 signature over the 32-byte SHA-256 digest, made with the fleet's firmware signing key",
                )
            })?;
            true
        }
        _ => false,
    };
    Ok(ValidRelease {
        product: release.product.clone(),
        version,
        hardware,
        url: release.url.clone(),
        sha256,
        digest,
        size_bytes: release.size_bytes as u64,
        signature,
        signature_verified,
    })
}

fn validate_hardware(models: &[String]) -> Result<Vec<String>, FieldError> {
    if models.is_empty() {
        return Err(FieldError::new(
            "hardware",
            "must list at least one compatible hardware model",
        ));
    }
    if models.len() > MAX_HARDWARE_MODELS {
        return Err(FieldError::new(
            "hardware",
            format!(
                "at most {MAX_HARDWARE_MODELS} models are allowed, got {}",
                models.len()
            ),
        ));
    }
    for (i, model) in models.iter().enumerate() {
        let field = indexed("hardware", i);
        check_name(&field, model, super::MAX_NAME_LEN)?;
        if models[..i].contains(model) {
            return Err(FieldError::new(
                field,
                format!("duplicate hardware model {model:?}"),
            ));
        }
    }
    Ok(models.to_vec())
}

/// An absolute http(s) URL with a host, no whitespace or control
/// characters. Devices download from it, so anything else is a mistake.
fn validate_url(url: &str) -> Result<(), FieldError> {
    let err = |m: String| FieldError::new("url", m);
    if url.is_empty() {
        return Err(err("must not be empty".into()));
    }
    if url.len() > MAX_URL_LEN {
        return Err(err(format!(
            "must be at most {MAX_URL_LEN} characters long"
        )));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(format!(
            "invalid character {c:?} in URL (percent-encode it)"
        )));
    }
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(err(format!(
            "must be an http:// or https:// URL, got {url:?}"
        )));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() || host == "[]" {
        return Err(err(format!("URL {url:?} has no host")));
    }
    Ok(())
}

fn validate_sha256(value: &str) -> Result<(String, [u8; 32]), FieldError> {
    let err = |m: String| FieldError::new("sha256", m);
    if value.len() != 64 {
        return Err(err(format!(
            "must be 64 hexadecimal characters (a SHA-256 digest), got {} characters",
            value.chars().count()
        )));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(err(format!("invalid character {c:?}: must be hexadecimal")));
    }
    let lower = value.to_ascii_lowercase();
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&lower, &mut digest).map_err(|e| err(e.to_string()))?;
    Ok((lower, digest))
}

fn decode_signature(sig: &str) -> Result<[u8; 64], FieldError> {
    let err = |m: String| FieldError::new("signature", m);
    let trimmed = sig.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| err(format!("not valid base64: {e}")))?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
        err(format!(
            "an Ed25519 signature is 64 bytes, this one decodes to {} bytes",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha256};

    const IMAGE: &[u8] = b"pretend this is a firmware image";

    fn digest() -> [u8; 32] {
        Sha256::digest(IMAGE).into()
    }

    fn release() -> FirmwareRelease {
        FirmwareRelease {
            product: "meter-fw".into(),
            version: "1.4.2".into(),
            hardware: vec!["meter-v2".into(), "meter-v3".into()],
            url: "https://downloads.example.com/meter-fw/1.4.2.bin".into(),
            sha256: hex::encode(digest()),
            size_bytes: IMAGE.len() as i64,
            signature: None,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn err(r: FirmwareRelease) -> String {
        validate_release(&r, None).unwrap_err().to_string()
    }

    #[test]
    fn valid_release() {
        let v = validate_release(&release(), None).unwrap();
        assert_eq!(v.version, Version::new(1, 4, 2));
        assert_eq!(v.digest, digest());
        assert_eq!(v.size_bytes, IMAGE.len() as u64);
        assert!(v.supports("meter-v3"));
        assert!(!v.supports("meter-v1"));
        assert!(!v.signature_verified);
    }

    #[test]
    fn product_and_version() {
        assert_eq!(
            err(FirmwareRelease {
                product: "".into(),
                ..release()
            }),
            "product: must not be empty"
        );
        assert!(err(FirmwareRelease {
            product: "meter fw".into(),
            ..release()
        })
        .starts_with("product: invalid character ' '"));
        assert_eq!(
            err(FirmwareRelease { version: "1.4".into(), ..release() }),
            "version: invalid semantic version \"1.4\": unexpected end of input while parsing minor version number (expected e.g. \"1.4.2\" or \"2.0.0-rc.1\")"
        );
        assert!(err(FirmwareRelease {
            version: "v1.4.2".into(),
            ..release()
        })
        .starts_with("version: invalid semantic version \"v1.4.2\""));
        assert!(validate_release(
            &FirmwareRelease {
                version: "2.0.0-rc.1+build.5".into(),
                ..release()
            },
            None
        )
        .is_ok());
    }

    #[test]
    fn hardware_list() {
        assert_eq!(
            err(FirmwareRelease {
                hardware: vec![],
                ..release()
            }),
            "hardware: must list at least one compatible hardware model"
        );
        assert_eq!(
            err(FirmwareRelease {
                hardware: vec!["a".into(), "".into()],
                ..release()
            }),
            "hardware[1]: must not be empty"
        );
        assert_eq!(
            err(FirmwareRelease {
                hardware: vec!["a".into(), "b".into(), "a".into()],
                ..release()
            }),
            "hardware[2]: duplicate hardware model \"a\""
        );
        let many = (0..101).map(|i| format!("m{i}")).collect();
        assert!(err(FirmwareRelease {
            hardware: many,
            ..release()
        })
        .starts_with("hardware: at most 100"));
    }

    #[test]
    fn urls() {
        for ok in [
            "http://10.0.0.1:8080/fw.bin",
            "HTTPS://cdn.example.com/a?b=c#d",
            "https://user:pw@host/x",
            "https://[::1]:443/fw",
            "https://host",
        ] {
            assert!(
                validate_release(
                    &FirmwareRelease {
                        url: ok.into(),
                        ..release()
                    },
                    None
                )
                .is_ok(),
                "{ok}"
            );
        }
        let e = |u: &str| {
            err(FirmwareRelease {
                url: u.into(),
                ..release()
            })
        };
        assert_eq!(e(""), "url: must not be empty");
        assert_eq!(
            e("ftp://host/fw"),
            "url: must be an http:// or https:// URL, got \"ftp://host/fw\""
        );
        assert_eq!(
            e("/fw.bin"),
            "url: must be an http:// or https:// URL, got \"/fw.bin\""
        );
        assert_eq!(
            e("https:///fw.bin"),
            "url: URL \"https:///fw.bin\" has no host"
        );
        assert_eq!(e("https://:80/x"), "url: URL \"https://:80/x\" has no host");
        assert_eq!(
            e("https://host/a b"),
            "url: invalid character ' ' in URL (percent-encode it)"
        );
        assert!(e(&format!("https://h/{}", "a".repeat(MAX_URL_LEN)))
            .starts_with("url: must be at most"));
    }

    #[test]
    fn sha256_and_size() {
        let e = |s: &str| {
            err(FirmwareRelease {
                sha256: s.into(),
                ..release()
            })
        };
        assert_eq!(
            e("abc"),
            "sha256: must be 64 hexadecimal characters (a SHA-256 digest), got 3 characters"
        );
        assert_eq!(
            e(&"g".repeat(64)),
            "sha256: invalid character 'g': must be hexadecimal"
        );
        let upper = hex::encode(digest()).to_uppercase();
        let v = validate_release(
            &FirmwareRelease {
                sha256: upper,
                ..release()
            },
            None,
        )
        .unwrap();
        assert_eq!(v.sha256, hex::encode(digest()), "normalised to lower case");
        assert_eq!(
            err(FirmwareRelease {
                size_bytes: 0,
                ..release()
            }),
            "size_bytes: must be greater than 0, got 0"
        );
        assert_eq!(
            err(FirmwareRelease {
                size_bytes: -1,
                ..release()
            }),
            "size_bytes: must be greater than 0, got -1"
        );
    }

    #[test]
    fn signature_over_the_digest_verifies() {
        let sk = key();
        let sig = sk.sign(&digest());
        let r = FirmwareRelease {
            signature: Some(b64(&sig.to_bytes())),
            ..release()
        };
        let v = validate_release(&r, Some(&sk.verifying_key())).unwrap();
        assert!(v.signature_verified);
        assert_eq!(v.signature, Some(sig.to_bytes()));
        // unpadded base64 is accepted too
        let unpadded = b64(&sig.to_bytes()).trim_end_matches('=').to_string();
        assert!(validate_release(
            &FirmwareRelease {
                signature: Some(unpadded),
                ..release()
            },
            Some(&sk.verifying_key())
        )
        .is_ok());
        // without a key only the encoding is checked
        let v = validate_release(&r, None).unwrap();
        assert!(!v.signature_verified);
    }

    #[test]
    fn wrong_signatures_are_refused() {
        let sk = key();
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let msg = "signature: does not verify: expected an Ed25519 signature over the 32-byte SHA-256 digest, made with the fleet's firmware signing key";
        // signed by another key
        let r = FirmwareRelease {
            signature: Some(b64(&other.sign(&digest()).to_bytes())),
            ..release()
        };
        assert_eq!(
            validate_release(&r, Some(&sk.verifying_key()))
                .unwrap_err()
                .to_string(),
            msg
        );
        // signed over the hex text instead of the digest bytes
        let r = FirmwareRelease {
            signature: Some(b64(&sk.sign(hex::encode(digest()).as_bytes()).to_bytes())),
            ..release()
        };
        assert_eq!(
            validate_release(&r, Some(&sk.verifying_key()))
                .unwrap_err()
                .to_string(),
            msg
        );
        // signed over the image itself
        let r = FirmwareRelease {
            signature: Some(b64(&sk.sign(IMAGE).to_bytes())),
            ..release()
        };
        assert!(validate_release(&r, Some(&sk.verifying_key())).is_err());
    }

    #[test]
    fn malformed_signatures() {
        let e = |s: &str| {
            err(FirmwareRelease {
                signature: Some(s.into()),
                ..release()
            })
        };
        assert!(e("***").starts_with("signature: not valid base64"));
        assert_eq!(
            e(&b64(&[0u8; 10])),
            "signature: an Ed25519 signature is 64 bytes, this one decodes to 10 bytes"
        );
    }

    #[test]
    fn public_key_pem() {
        let sk = key();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        assert_eq!(
            parse_public_key("firmware_signing_key", &pem).unwrap(),
            sk.verifying_key()
        );
        let e = parse_public_key("firmware_signing_key", "nope").unwrap_err();
        assert_eq!(e.field, "firmware_signing_key");
        assert!(e.message.starts_with("not an Ed25519 public key in PEM"));
    }
}
