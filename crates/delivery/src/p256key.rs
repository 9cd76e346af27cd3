//! The P-256 signing keys Belfry keeps (the VAPID key of web push, the
//! access tokens' key): taken from configuration as the base64url private
//! scalar, or derived from a random secret stored in the database (the
//! same on every node that shares it); and what jsonwebtoken signs with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::EncodingKey;
use secrecy::{ExposeSecret as _, SecretString};
use web_push_native::p256;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint as _;

/// A private key ready to sign, and its public point.
pub(crate) struct Keypair {
    pub encoding: EncodingKey,
    /// The uncompressed public point (65 bytes: 0x04, x, y).
    pub public: Vec<u8>,
}

/// From the 32-byte private scalar, base64url (with or without padding);
/// `not_base64` is the message when it is not base64url at all.
pub(crate) fn from_base64url(private: &SecretString, not_base64: &str) -> Result<Keypair, String> {
    let text = private.expose_secret().trim().trim_end_matches('=');
    let bytes = B64.decode(text).map_err(|_| not_base64.to_string())?;
    let scalar: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "is {} bytes long; a P-256 private key is 32 bytes (43 base64url characters)",
            bytes.len()
        )
    })?;
    from_scalar(&scalar)
}

/// The first key `make` accepts among SHA-256(label, seed, counter) for
/// counter 0, 1, …: the same seed gives the same key everywhere.
pub(crate) fn derive<K>(
    label: &[u8],
    seed: &[u8],
    make: impl Fn(Keypair) -> Result<K, String>,
) -> K {
    for counter in 0u32.. {
        let mut input = label.to_vec();
        input.extend_from_slice(seed);
        input.extend_from_slice(&counter.to_be_bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let scalar: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Ok(key) = from_scalar(&scalar).and_then(&make) {
            return key;
        }
    }
    unreachable!("almost every 32-byte value is a valid P-256 scalar")
}

fn from_scalar(scalar: &[u8; 32]) -> Result<Keypair, String> {
    let secret = p256::SecretKey::from_slice(scalar)
        .map_err(|_| "is not a valid P-256 private key".to_string())?;
    let public = secret.public_key().to_encoded_point(false);
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        scalar,
        public.as_bytes(),
    )
    .map_err(|_| "is not a valid P-256 private key".to_string())?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| "could not be encoded".to_string())?;
    Ok(Keypair {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        public: public.as_bytes().to_vec(),
    })
}
