//! Values at rest: journals and write records keep what Bridge wrote (so that a resumed sync
//! can finish and a rollback can restore even write-only values) sealed to a local X25519
//! key with libsodium's sealed-box construction. Only the holder of `state.key` can open
//! them; the database alone reveals nothing.

use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use bridge_core::SecretValue;

#[derive(Clone)]
pub struct Sealer {
    secret: SecretKey,
    public: PublicKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a sealed value does not open with this state key (was state.key replaced?)")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("a sealed value is not UTF-8")]
    Utf8,
}

impl Sealer {
    pub const KEY_LEN: usize = 32;

    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = SecretKey::from(bytes);
        let public = secret.public_key();
        Self { secret, public }
    }

    pub fn generate() -> ([u8; 32], Self) {
        let secret = SecretKey::generate(&mut OsRng);
        let bytes = secret.to_bytes();
        (bytes, Self::from_secret_bytes(bytes))
    }

    /// The public half of the key, as 16 hex digits: an id two runners compare to know they
    /// seal alike (a public key reveals nothing that opens a box).
    pub fn key_id(&self) -> String {
        bridge_core::hex::encode(&self.public.as_bytes()[..8])
    }

    pub fn seal(&self, value: &SecretValue) -> Result<Vec<u8>, SealError> {
        self.public
            .seal(&mut OsRng, value.expose().as_bytes())
            .map_err(|_| SealError::Seal)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<SecretValue, SealError> {
        let bytes = Zeroizing::new(self.secret.unseal(sealed).map_err(|_| SealError::Open)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| SealError::Utf8)?;
        Ok(SecretValue::new(text))
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_right_key() {
        let (_, a) = Sealer::generate();
        let (_, b) = Sealer::generate();
        let sealed = a.seal(&SecretValue::new("hunter2")).unwrap();
        assert_eq!(sealed.len(), "hunter2".len() + 48);
        assert_eq!(a.open(&sealed).unwrap().expose(), "hunter2");
        assert!(b.open(&sealed).is_err());
    }
}
