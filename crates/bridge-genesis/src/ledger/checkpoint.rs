//! Signed checkpoints in the C2SP `tlog-checkpoint` signed-note format.
//!
//! ```text
//! bridge.local/ledger
//! 1234
//! <base64 root hash>
//!
//! — bridge.local/ledger <base64(key id || Ed25519 signature)>
//! ```
//!
//! The signature covers the three body lines including their final newline. The key id is
//! `SHA-256(name || 0x0A || 0x01 || public key)[:4]` (0x01 = Ed25519 in the note spec); the key
//! name is the log's origin. Parsing is strict (no extension lines, canonical base64, no
//! leading zeros) because the verifier is the security boundary; unknown signature lines
//! (witness co-signatures, a rotated key) are ignored, as the spec requires.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The note signature line prefix: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Longest accepted note; ours are about 200 bytes. Bounds the work a hostile note can cause.
const MAX_NOTE_LEN: usize = 64 * 1024;

/// Why a checkpoint was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The text is not a well-formed checkpoint note.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No signature line verifies with the given public key.
    #[error("no signature on the checkpoint verifies with the ledger's public key")]
    BadSignature,
}

/// A checkpoint: the log's origin, a tree size and the root of that tree, with the signed
/// note they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (first line of the note).
    pub origin: String,
    /// Number of entries the root covers.
    pub size: u64,
    /// Merkle tree root of the first `size` entries.
    pub root: Hash,
    /// The full signed note, as published.
    pub note: String,
}

/// The 4-byte key id of an Ed25519 note key called `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// True when `origin` can be both the note's first line and its key name: non-empty,
/// printable ASCII without spaces or `+` (the note spec forbids both in key names).
pub(crate) fn valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= 255
        && origin.bytes().all(|b| b.is_ascii_graphic() && b != b'+')
}

fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Signs a checkpoint with the key named after the origin.
pub(crate) fn sign(origin: &str, size: u64, root: &Hash, key: &SigningKey) -> Checkpoint {
    let text = body(origin, size, root);
    let sig = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(4 + 64);
    blob.extend_from_slice(&key_id(origin, &key.verifying_key()));
    blob.extend_from_slice(&sig.to_bytes());
    let note = format!("{text}\n{SIG_PREFIX}{origin} {}\n", B64.encode(blob));
    Checkpoint {
        origin: origin.to_owned(),
        size,
        root: *root,
        note,
    }
}

/// Parses and verifies a checkpoint note against `key`, offline.
///
/// Succeeds only when the note is well formed and at least one signature line, under any key
/// name whose key id matches `key`, carries a valid (strict) Ed25519 signature of the body.
/// Compare the returned origin with the log you expect.
pub fn verify_checkpoint(text: &str, key: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
    let (cp, body, sigs) = parse(text)?;
    let mut any = false;
    for line in sigs.lines() {
        let (name, blob) = parse_sig_line(line)?;
        if blob.len() != 4 + 64 || blob[..4] != key_id(name, key) {
            continue; // someone else's signature (a witness, an old key): ignored
        }
        let Ok(sig) = Signature::from_slice(&blob[4..]) else {
            continue;
        };
        // verify_strict rejects malleable signatures and small-order keys.
        if key.verify_strict(body.as_bytes(), &sig).is_ok() {
            any = true;
        }
    }
    if any {
        Ok(cp)
    } else {
        Err(CheckpointError::BadSignature)
    }
}

/// Splits and parses a note without checking signatures: `(checkpoint, body, signature lines)`.
pub(crate) fn parse(text: &str) -> Result<(Checkpoint, &str, &str), CheckpointError> {
    use CheckpointError::Malformed;
    if text.len() > MAX_NOTE_LEN {
        return Err(Malformed("note is too long"));
    }
    if !text.ends_with('\n') {
        return Err(Malformed("note does not end with a newline"));
    }
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\n') {
        return Err(Malformed("note contains control characters"));
    }
    let split = text
        .find("\n\n")
        .ok_or(Malformed("no blank line before the signatures"))?;
    let (body, sigs) = (&text[..=split], &text[split + 2..]);
    let mut lines = body.lines();
    let (Some(origin), Some(size), Some(root_b64), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(Malformed("the body must be exactly origin, size and root"));
    };
    if !valid_origin(origin) {
        return Err(Malformed("invalid origin line"));
    }
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return Err(Malformed("tree size is not a canonical decimal"));
    }
    let size: u64 = size
        .parse()
        .map_err(|_| Malformed("tree size is out of range"))?;
    let raw = B64
        .decode(root_b64)
        .map_err(|_| Malformed("root is not base64"))?;
    let root: Hash = raw
        .try_into()
        .map_err(|_| Malformed("root is not 32 bytes"))?;
    // One root, one spelling: a note whose bytes differ must not verify as "the same".
    if B64.encode(root) != root_b64 {
        return Err(Malformed("root is not canonical base64"));
    }
    if sigs.is_empty() {
        return Err(Malformed("no signature lines"));
    }
    for line in sigs.lines() {
        parse_sig_line(line)?;
    }
    let cp = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        note: text.to_owned(),
    };
    Ok((cp, body, sigs))
}

fn parse_sig_line(line: &str) -> Result<(&str, Vec<u8>), CheckpointError> {
    use CheckpointError::Malformed;
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(Malformed("signature line does not start with an em dash"))?;
    let (name, sig) = rest
        .split_once(' ')
        .ok_or(Malformed("signature line has no signature"))?;
    if name.is_empty() || name.contains('+') || sig.contains(' ') {
        return Err(Malformed("bad signature line"));
    }
    let blob = B64
        .decode(sig)
        .map_err(|_| Malformed("signature is not base64"))?;
    if blob.len() < 5 {
        return Err(Malformed("signature is too short"));
    }
    Ok((name, blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn root() -> Hash {
        let mut r = [0u8; 32];
        for (i, b) in r.iter_mut().enumerate() {
            *b = i as u8;
        }
        r
    }

    #[test]
    fn signs_the_c2sp_layout() {
        let k = key(1);
        let cp = sign("bridge.local/ledger", 42, &root(), &k);
        let mut lines = cp.note.lines();
        assert_eq!(lines.next(), Some("bridge.local/ledger"));
        assert_eq!(lines.next(), Some("42"));
        assert_eq!(
            lines.next(),
            Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        );
        assert_eq!(lines.next(), Some(""));
        let sig = lines.next().unwrap();
        assert!(sig.starts_with("\u{2014} bridge.local/ledger "));
        assert_eq!(lines.next(), None);
        let blob = B64.decode(sig.rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(blob.len(), 68);
        assert_eq!(blob[..4], key_id("bridge.local/ledger", &k.verifying_key()));
        assert_eq!(verify_checkpoint(&cp.note, &k.verifying_key()), Ok(cp));
    }

    #[test]
    fn key_id_follows_the_note_spec() {
        let k = key(7).verifying_key();
        let mut pre = b"example.com/log\n\x01".to_vec();
        pre.extend_from_slice(k.as_bytes());
        let d = Sha256::digest(&pre);
        assert_eq!(key_id("example.com/log", &k), [d[0], d[1], d[2], d[3]]);
    }

    #[test]
    fn rejects_wrong_key_and_altered_bodies() {
        let k = key(1);
        let cp = sign("o.example/log", 5, &root(), &k);
        assert_eq!(
            verify_checkpoint(&cp.note, &key(2).verifying_key()),
            Err(CheckpointError::BadSignature)
        );
        let changed = cp.note.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(
            verify_checkpoint(&changed, &k.verifying_key()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn ignores_unknown_signature_lines_but_needs_ours() {
        let k = key(1);
        let cp = sign("o.example/log", 5, &root(), &k);
        let witness = sign("o.example/log", 5, &root(), &key(9));
        let witness_line = witness
            .note
            .lines()
            .last()
            .unwrap()
            .replace("o.example/log", "w.example");
        let both = format!("{}{witness_line}\n", cp.note);
        assert!(verify_checkpoint(&both, &k.verifying_key()).is_ok());
        let only_witness = format!(
            "{}\n\n{witness_line}\n",
            cp.note.split("\n\n").next().unwrap()
        );
        assert_eq!(
            verify_checkpoint(&only_witness, &k.verifying_key()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn rejects_malformed_notes() {
        let k = key(1);
        let vk = k.verifying_key();
        let good = sign("o.example/log", 5, &root(), &k).note;
        let bad = [
            good.trim_end().to_owned(),                             // no final newline
            good.replacen("\n5\n", "\n05\n", 1),                    // leading zero
            good.replacen("\n5\n", "\n+5\n", 1),                    // sign
            good.replacen("\n5\n", "\n99999999999999999999\n", 1),  // > u64
            good.replacen("\n5\n", "\n5\nextension\n", 1),          // extension line
            good.replacen("o.example/log\n", "o example\n", 1),     // space in origin
            good.replacen("=\n", "\n", 1),                          // unpadded root
            good.replacen("\n\n", "\n", 1),                         // no blank line
            good.replacen("\u{2014} ", "- ", 1),                    // ascii dash
            good.replacen('\n', "\r\n", 1),                         // CR
            format!("{good}\n"),                                    // empty signature line
            good.split("\n\n").next().unwrap().to_owned() + "\n\n", // no signatures
        ];
        for (i, note) in bad.iter().enumerate() {
            if *note == good {
                continue;
            }
            assert!(verify_checkpoint(note, &vk).is_err(), "case {i}: {note:?}");
        }
    }

    #[test]
    fn rejects_non_canonical_base64_root() {
        let k = key(1);
        // Root ending in ...1f encodes as "...Hh8="; "Hh9=" decodes the same bytes only if
        // trailing bits were ignored, which the strict engine refuses.
        let good = sign("o.example/log", 5, &root(), &k).note;
        let bad = good.replacen("Hh8=", "Hh9=", 1);
        assert_ne!(good, bad);
        assert!(verify_checkpoint(&bad, &k.verifying_key()).is_err());
    }
}
