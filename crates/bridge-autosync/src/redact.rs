//! Keeps tokens out of everything Auto-Sync emits: reports, events, errors, the state file,
//! pull-request bodies and the output of git and validation commands we show.
//!
//! Two layers, after Renovate's sanitizer: every token we learn is registered with its
//! common encodings (URL-encoded, base64 of `user:token` as HTTP Basic carries it) and
//! replaced wherever it appears; and the user-info part of any URL (`https://user:pw@host`)
//! is replaced whatever it holds, so a token we were never told about but that sits in a
//! remote URL is still hidden.

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Tokens shorter than this are not registered: replacing every `a` in a report would make
/// it unreadable and a one-letter "token" protects nothing.
const MIN_SECRET_LEN: usize = 4;

/// A registry of secret values and the replacement of them (and of URL credentials) in
/// text. Cheap to clone; clones share the registry.
#[derive(Clone, Debug)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
    userinfo: Regex,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            secrets: Arc::default(),
            // scheme://[user[:password]@]host — whatever sits before the `@` goes.
            userinfo: Regex::new(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
                .unwrap_or_else(|_| unreachable!("the pattern is a constant")),
        }
    }

    /// Registers `secret` (and its URL-encoded and Basic-auth forms) for replacement.
    pub fn register(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut forms = vec![secret.to_owned(), percent_encode(secret)];
        for user in ["x-access-token", "oauth2", "git", "token"] {
            forms.push(STANDARD.encode(format!("{user}:{secret}")));
        }
        let mut list = self
            .secrets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for form in forms {
            if !list.contains(&form) {
                list.push(form);
            }
        }
        // Longest first, so a form that contains another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every registered secret and every URL's credentials replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = self
            .userinfo
            .replace_all(text, format!("${{scheme}}{REDACTED}@"))
            .into_owned();
        let list = self
            .secrets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string (keys included) inside a JSON value.
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, as a token pasted into a
/// URL would be.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits the credentials off a URL: `https://user:tok@host/x` gives
/// `("https://host/x", Some("user"), Some("tok"))`. Paths and scp-like addresses
/// (`git@host:org/repo`, where the user is no secret) come back unchanged.
pub(crate) fn split_credentials(url: &str) -> (String, Option<String>, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None, None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_owned(), None, None);
    };
    let userinfo = &authority[..at];
    let clean = format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, password)) => (
            clean,
            Some(user.to_owned()).filter(|u| !u.is_empty()),
            Some(password.to_owned()).filter(|p| !p.is_empty()),
        ),
        // `https://TOKEN@host` is how some tools pass a bare token.
        None => (
            clean,
            None,
            Some(userinfo.to_owned()).filter(|p| !p.is_empty()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_their_encodings_are_replaced() {
        let r = Redactor::new();
        r.register("ghp_s3cr3t/+x");
        let basic = STANDARD.encode("x-access-token:ghp_s3cr3t/+x");
        let text = format!("a ghp_s3cr3t/+x b ghp_s3cr3t%2F%2Bx c {basic}");
        let out = r.redact(&text);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(&basic), "{out}");
        r.register("ab");
        assert_eq!(r.redact("ab"), "ab");
    }

    #[test]
    fn url_credentials_are_replaced_even_unregistered() {
        let r = Redactor::new();
        let out = r.redact("fatal: https://x-access-token:tok123@github.com/o/r.git not found");
        assert_eq!(out, "fatal: https://***@github.com/o/r.git not found");
        assert_eq!(r.redact("ssh://git@host/x"), "ssh://***@host/x");
        assert_eq!(r.redact("git@github.com:o/r"), "git@github.com:o/r");
    }

    #[test]
    fn json_is_redacted_deeply() {
        let r = Redactor::new();
        r.register("tok-9999");
        let v = serde_json::json!({"a": ["x tok-9999"], "tok-9999": {"b": "tok-9999"}});
        let s = r.redact_json(v).to_string();
        assert!(!s.contains("tok-9999"), "{s}");
    }

    #[test]
    fn credentials_split_off_urls() {
        assert_eq!(
            split_credentials("https://x-access-token:abc@github.com/o/r.git"),
            (
                "https://github.com/o/r.git".into(),
                Some("x-access-token".into()),
                Some("abc".into())
            )
        );
        assert_eq!(
            split_credentials("https://abc@h/x"),
            ("https://h/x".into(), None, Some("abc".into()))
        );
        assert_eq!(split_credentials("../web"), ("../web".into(), None, None));
        assert_eq!(
            split_credentials("git@github.com:o/r"),
            ("git@github.com:o/r".into(), None, None)
        );
    }
}
