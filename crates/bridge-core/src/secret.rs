//! Secret values, their classification by name, and keyed fingerprints.
//!
//! Every value Bridge moves is held as a [`SecretValue`]: it redacts itself in `Debug` and
//! `Display` and zeroizes its buffer on drop, so a value can only reach output through an
//! explicit [`SecretValue::expose`]. Whether a value may be *shown* is decided separately, by
//! [`SecretClassifier`] from the key's name. Values that must be compared later without being
//! stored are reduced to a [`Fingerprint`]: HMAC-SHA256 under a local [`FingerprintKey`], never
//! a plain hash, so a leaked fingerprint cannot be brute-forced without the key.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// A variable's value. Redacted in `Debug`/`Display`; zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The clear value. Call sites are the places a value leaves Bridge's custody.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The 32-byte local key under which fingerprints are computed.
#[derive(Clone)]
pub struct FingerprintKey(Zeroizing<[u8; 32]>);

impl FingerprintKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses a key from its stored form; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HMAC-SHA256 of `value` under this key.
    pub fn fingerprint(&self, value: &SecretValue) -> Fingerprint {
        // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes always works.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts a 32-byte key"));
        mac.update(value.expose().as_bytes());
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

/// A keyed fingerprint of a value: equal values under one key have equal fingerprints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// How many hex digits the short form shows: enough to tell values apart at a glance,
    /// too few to serve as a full comparison.
    pub const SHORT_HEX: usize = 12;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = crate::hex::decode(text)?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn short(&self) -> String {
        let mut hex = self.to_hex();
        hex.truncate(Self::SHORT_HEX);
        hex
    }

    /// The placeholder shown instead of a secret value: `<redacted:SHORT>`.
    pub fn redacted(&self) -> String {
        format!("<redacted:{}>", self.short())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Decides from a key's name whether its value is a secret.
///
/// A key is secret when one of its `_`-separated words (or the whole name) matches a
/// sensitive word such as `TOKEN` or `PASSWORD`, or when it starts with a configured prefix.
/// Matching by word keeps `MONKEY_COUNT` public while `API_KEY`, `STRIPE_SECRET_KEY` and
/// `DB_PASSWORD` are secret. Configured public keys override both.
#[derive(Debug, Clone)]
pub struct SecretClassifier {
    words: Vec<String>,
    prefixes: Vec<String>,
    public_keys: Vec<String>,
}

impl SecretClassifier {
    /// The words that mark a key as secret unless configured otherwise.
    pub const DEFAULT_WORDS: &'static [&'static str] = &[
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "KEY",
        "PRIVATE",
        "CREDENTIAL",
        "CREDENTIALS",
        "DSN",
        "AUTH",
        "SIGNATURE",
        "SALT",
        "CERT",
        "PAT",
        "APIKEY",
        "PASSPHRASE",
        "WEBHOOK",
    ];

    pub fn new(
        extra_words: impl IntoIterator<Item = String>,
        prefixes: impl IntoIterator<Item = String>,
        public_keys: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut words: Vec<String> = Self::DEFAULT_WORDS.iter().map(|w| w.to_string()).collect();
        words.extend(extra_words.into_iter().map(|w| w.to_ascii_uppercase()));
        Self {
            words,
            prefixes: prefixes.into_iter().collect(),
            public_keys: public_keys.into_iter().collect(),
        }
    }

    /// Whether a value must be hidden: its key is secret, or the value itself carries a
    /// credential (a URL with a password, as in `postgres://user:pass@host/db`), whatever
    /// the key is called.
    pub fn is_secret_entry(&self, key: &str, value: &SecretValue) -> bool {
        self.is_secret(key)
            || (!self.public_keys.iter().any(|k| k == key) && url_has_password(value.expose()))
    }

    pub fn is_secret(&self, key: &str) -> bool {
        if self.public_keys.iter().any(|k| k == key) {
            return false;
        }
        if self.prefixes.iter().any(|p| key.starts_with(p.as_str())) {
            return true;
        }
        let upper = key.to_ascii_uppercase();
        upper
            .split(['_', '-', '.'])
            .filter(|word| !word.is_empty())
            .any(|word| self.words.iter().any(|w| w == word))
    }
}

/// `scheme://user:password@host…` with a non-empty password.
fn url_has_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty()),
        None => false,
    }
}

impl Default for SecretClassifier {
    fn default() -> Self {
        Self::new([], [], [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v:?}"), "SecretValue(<redacted>)");
        assert_eq!(format!("{v}"), "<redacted>");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn fingerprints_depend_on_key_and_value() {
        let k1 = FingerprintKey::from_bytes([1; 32]);
        let k2 = FingerprintKey::from_bytes([2; 32]);
        let a = SecretValue::new("a");
        assert_eq!(k1.fingerprint(&a), k1.fingerprint(&SecretValue::new("a")));
        assert_ne!(k1.fingerprint(&a), k1.fingerprint(&SecretValue::new("b")));
        assert_ne!(k1.fingerprint(&a), k2.fingerprint(&a));
        let fp = k1.fingerprint(&a);
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()), Some(fp));
        assert_eq!(
            fp.redacted().len(),
            "<redacted:>".len() + Fingerprint::SHORT_HEX
        );
    }

    #[test]
    fn fingerprint_matches_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". Our key is
        // 32 bytes, so pad "Jefe" with zeros: HMAC pads short keys with zeros anyway.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let fp = FingerprintKey::from_bytes(key)
            .fingerprint(&SecretValue::new("what do ya want for nothing?"));
        assert_eq!(
            fp.to_hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn classifies_by_word_not_substring() {
        let c = SecretClassifier::default();
        for secret in [
            "API_KEY",
            "STRIPE_SECRET_KEY",
            "DB_PASSWORD",
            "GITHUB_TOKEN",
            "SENTRY_DSN",
            "PRIVATE_KEY_PEM",
            "aws_secret_access_key",
            "TOKEN",
        ] {
            assert!(c.is_secret(secret), "{secret} should be secret");
        }
        for public in [
            "MONKEY_COUNT",
            "LOG_LEVEL",
            "PORT",
            "KEYBOARD_LAYOUT",
            "NODE_ENV",
        ] {
            assert!(!c.is_secret(public), "{public} should be public");
        }
    }

    #[test]
    fn urls_with_passwords_are_secret_whatever_the_name() {
        let c = SecretClassifier::default();
        let secret = |k: &str, v: &str| c.is_secret_entry(k, &SecretValue::new(v));
        assert!(secret("DATABASE_URL", "postgres://shop:pw@db:5432/x"));
        assert!(secret("AMQP", "amqp://u:p@mq"));
        assert!(!secret("DATABASE_URL", "postgres://db:5432/x"));
        assert!(!secret("SENTRY_URL", "https://abc@o1.ingest.sentry.io/2"));
        assert!(!secret("LINK", "https://example.com/a:b@c"));
        assert!(secret("API_TOKEN", "plain"));
    }

    #[test]
    fn prefixes_and_public_overrides() {
        let c = SecretClassifier::new([], ["VAULT_".to_string()], ["PUBLIC_KEY".to_string()]);
        assert!(c.is_secret("VAULT_ADDR"));
        assert!(!c.is_secret("PUBLIC_KEY"));
        assert!(c.is_secret("SIGNING_KEY"));
    }
}
