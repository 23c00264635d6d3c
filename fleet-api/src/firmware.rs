//! Firmware releases: immutable once created.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A firmware release as fleetd stores and returns it.
///
/// Releases are immutable, so there is no optimistic-concurrency version
/// here: `version` is the release's semantic version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Firmware {
    pub id: String,
    /// Product line, e.g. `meter-fw`. Same character rules as group names.
    #[schema(example = "meter-fw")]
    pub product: String,
    /// Semantic version; unique per product.
    #[schema(example = "1.4.2")]
    pub version: String,
    /// Compatible hardware models, in the order given (no duplicates).
    #[schema(example = json!(["m1", "m2"]))]
    pub hardware: Vec<String>,
    /// Where devices download the image (`https://`, or `http://` for tests).
    pub url: String,
    /// SHA-256 of the image, lowercase hex.
    pub sha256: String,
    pub size_bytes: i64,
    /// Base64 Ed25519 signature over the image's SHA-256, if given.
    pub signature: Option<String>,
    /// Computed: true when `signature` was verified against a
    /// `signing_public_key` at creation.
    pub signature_verified: bool,
    pub created_at: String,
    /// Equal to `created_at`: releases never change.
    pub updated_at: String,
}

/// Body of `POST /v1/firmware`. There is no update: publish a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirmwareCreate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub product: String,
    #[schema(
        pattern = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    pub version: String,
    /// 1–100 hardware models.
    #[schema(min_items = 1, max_items = 100)]
    pub hardware: Vec<String>,
    #[schema(
        pattern = "^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[!-~]*)?$",
        max_length = 2048
    )]
    pub url: String,
    /// 64 hex digits.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: String,
    /// Greater than 0.
    #[schema(minimum = 1)]
    pub size_bytes: i64,
    #[serde(default)]
    pub signature: Option<String>,
    /// PEM Ed25519 public key to verify `signature` against; not stored.
    /// A signature that does not verify is refused (400, `signature`).
    #[serde(default)]
    pub signing_public_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requires_core_fields() {
        let err = serde_json::from_str::<FirmwareCreate>(r#"{"product":"p"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
