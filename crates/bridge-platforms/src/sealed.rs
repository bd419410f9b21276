//! libsodium sealed boxes, the encryption GitHub requires for Actions secrets.
//!
//! GitHub publishes an X25519 public key per repository (and per environment); a secret is
//! sent as `base64(crypto_box_seal(value, key))`. `crypto_box`'s `seal` implements the
//! libsodium construction (ephemeral key pair, BLAKE2b nonce, XSalsa20-Poly1305), so only
//! GitHub, holding the private key, can open it. Output is randomized: the same value seals
//! differently every time, which is why tests check by opening rather than by comparing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bridge_core::SecretValue;
use crypto_box::PublicKey;
use crypto_box::aead::OsRng;

/// A repository's (or environment's) public key, as GitHub hands it out.
#[derive(Clone)]
pub(crate) struct SealingKey {
    /// GitHub's id for the key; sent back with every secret sealed under it.
    pub(crate) key_id: String,
    key: PublicKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Why a key or a seal failed; the caller words it for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealError {
    /// The key is not base64 of 32 bytes.
    BadKey,
    /// Encryption itself failed (it cannot for these sizes, but the API returns a Result).
    Encrypt,
}

impl SealingKey {
    /// Parses GitHub's `{key_id, key}` (key = base64 of the 32-byte X25519 public key).
    pub(crate) fn new(key_id: String, key_base64: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(key_base64.trim())
            .map_err(|_| SealError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self {
            key_id,
            key: PublicKey::from(bytes),
        })
    }

    /// `base64(crypto_box_seal(value))`, ready for `encrypted_value`.
    pub(crate) fn seal(&self, value: &SecretValue) -> Result<String, SealError> {
        let sealed = self
            .key
            .seal(&mut OsRng, value.expose().as_bytes())
            .map_err(|_| SealError::Encrypt)?;
        Ok(STANDARD.encode(sealed))
    }
}

#[cfg(test)]
mod tests {
    use crypto_box::SecretKey;

    use super::*;

    #[test]
    fn sealed_values_open_with_the_private_key_only() {
        let secret = SecretKey::generate(&mut OsRng);
        let public = STANDARD.encode(secret.public_key().as_bytes());
        let key = SealingKey::new("568250167242549743".into(), &public).expect("key");
        let value = SecretValue::new("s3cr3t \u{1F511} value");
        let sealed = key.seal(&value).expect("seal");
        let bytes = STANDARD.decode(&sealed).expect("base64");
        // libsodium's overhead: a 32-byte ephemeral key and a 16-byte tag.
        assert_eq!(bytes.len(), value.len() + 48);
        assert_eq!(
            secret.unseal(&bytes).expect("opens"),
            value.expose().as_bytes()
        );
        // Randomized: sealing again gives another ciphertext.
        assert_ne!(key.seal(&value).expect("seal"), sealed);
        let other = SecretKey::generate(&mut OsRng);
        assert!(other.unseal(&bytes).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            SealingKey::new("1".into(), "not base64!").err(),
            Some(SealError::BadKey)
        );
        assert_eq!(
            SealingKey::new("1".into(), &STANDARD.encode([0u8; 16])).err(),
            Some(SealError::BadKey)
        );
        // The spec's example key parses.
        assert!(
            SealingKey::new(
                "1234567".into(),
                "hBT5WZEj8ZoOv6TYJsfWq7MxTEQopZO5/IT3ZCVQPzs="
            )
            .is_ok()
        );
    }
}
