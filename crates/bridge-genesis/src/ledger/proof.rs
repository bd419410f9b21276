//! Portable proofs: JSON documents a CLI can print and anyone can check later with only the
//! ledger's public key.
//!
//! Inclusion, one entry in a signed tree:
//!
//! ```json
//! {"index":3,"tree_size":8,"leaf_hash":"<hex>","audit_path":["<hex>",...],"root":"<hex>",
//!  "checkpoint":"<signed note>"}
//! ```
//!
//! Consistency, one signed tree extending another (RFC 9162 §2.1.4): what an auditor holding
//! an older checkpoint checks before trusting a newer one.
//!
//! ```json
//! {"from_size":3,"to_size":8,"from_root":"<hex>","to_root":"<hex>","proof":["<hex>",...],
//!  "from_checkpoint":"<signed note>","to_checkpoint":"<signed note>"}
//! ```
//!
//! The size and root a verifier trusts come from the signed checkpoint, never from the
//! unsigned fields next to it (they must merely agree), as Sigstore's clients are told too.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::LedgerError;
use super::checkpoint::{Checkpoint, verify_checkpoint};
use super::merkle::{Hash, verify_consistency, verify_inclusion};

/// Proof that one leaf is in the tree of `tree_size` entries, with the checkpoint signing that
/// tree's root (if the ledger had one at that size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf's index.
    pub index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// `SHA-256(0x00 || canonical entry)`; compare with [`LedgerEntry::leaf_hash`](super::LedgerEntry::leaf_hash).
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    /// Sibling hashes from the leaf up.
    #[serde(with = "hex_hashes")]
    pub audit_path: Vec<Hash>,
    /// Root of the tree of `tree_size` entries.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// The signed note for `tree_size`, if one was stored.
    pub checkpoint: Option<String>,
}

impl InclusionProof {
    /// The proof as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain integers, strings and string lists cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the checkpoint signature, that it signs this size and root, and the audit path.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Checkpoint, LedgerError> {
        let note = self
            .checkpoint
            .as_deref()
            .ok_or_else(|| LedgerError::Proof("no signed checkpoint for this tree size".into()))?;
        let cp = verify_checkpoint(note, key)?;
        if cp.size != self.tree_size || cp.root != self.root {
            return Err(LedgerError::Proof(
                "the checkpoint signs a different tree size or root".into(),
            ));
        }
        if !verify_inclusion(
            &self.leaf_hash,
            self.index,
            cp.size,
            &self.audit_path,
            &cp.root,
        ) {
            return Err(LedgerError::Proof(
                "the audit path does not lead to the signed root".into(),
            ));
        }
        Ok(cp)
    }
}

/// Parses a proof printed by [`InclusionProof::to_json`] and verifies it offline; returns the
/// proof so the caller can compare `leaf_hash` with the entry it cares about. If one key signs
/// several logs, also check the origin ([`InclusionProof::verify`] returns the checkpoint).
pub fn verify_proof_json(json: &str, key: &VerifyingKey) -> Result<InclusionProof, LedgerError> {
    let proof: InclusionProof = serde_json::from_str(json)
        .map_err(|e| LedgerError::Proof(format!("not a proof document: {e}")))?;
    proof.verify(key)?;
    Ok(proof)
}

/// Proof that the signed tree of `to_size` entries extends the signed tree of `from_size`:
/// nothing in the first `from_size` entries was changed, removed or reordered since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub from_size: u64,
    pub to_size: u64,
    #[serde(with = "hex_hash")]
    pub from_root: Hash,
    #[serde(with = "hex_hash")]
    pub to_root: Hash,
    /// RFC 9162 consistency path from the older tree to the newer.
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
    /// The signed notes for the two trees.
    pub from_checkpoint: String,
    pub to_checkpoint: String,
}

impl ConsistencyProof {
    /// The proof as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain integers, strings and string lists cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks both signatures, that they sign these sizes and roots for one log, and the
    /// consistency path between them; returns the older and the newer checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(Checkpoint, Checkpoint), LedgerError> {
        let older = verify_checkpoint(&self.from_checkpoint, key)?;
        let newer = verify_checkpoint(&self.to_checkpoint, key)?;
        if older.size != self.from_size || older.root != self.from_root {
            return Err(LedgerError::Proof(
                "the older checkpoint signs a different tree size or root".into(),
            ));
        }
        if newer.size != self.to_size || newer.root != self.to_root {
            return Err(LedgerError::Proof(
                "the newer checkpoint signs a different tree size or root".into(),
            ));
        }
        if older.origin != newer.origin {
            return Err(LedgerError::Proof(format!(
                "the checkpoints are of two logs ({:?} and {:?})",
                older.origin, newer.origin
            )));
        }
        if older.size > newer.size {
            return Err(LedgerError::Proof(format!(
                "the older checkpoint covers more entries ({}) than the newer ({})",
                older.size, newer.size
            )));
        }
        if !verify_consistency(
            older.size,
            newer.size,
            &older.root,
            &newer.root,
            &self.proof,
        ) {
            return Err(LedgerError::Proof(format!(
                "the tree of {} entries does not extend the tree of {}: history was rewritten",
                newer.size, older.size
            )));
        }
        Ok((older, newer))
    }
}

/// Either proof document, as `ledger verify-proof` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProofDocument {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

/// Parses an inclusion or a consistency proof and verifies it offline.
pub fn verify_proof_document(json: &str, key: &VerifyingKey) -> Result<ProofDocument, LedgerError> {
    let document: ProofDocument = serde_json::from_str(json).map_err(|_| {
        LedgerError::Proof(
            "not a proof document (neither an inclusion nor a consistency proof)".into(),
        )
    })?;
    match &document {
        ProofDocument::Inclusion(proof) => {
            proof.verify(key)?;
        }
        ProofDocument::Consistency(proof) => {
            proof.verify(key)?;
        }
    }
    Ok(document)
}

/// Lowercase hex ([`bridge_core::hex::encode`]).
pub fn to_hex(bytes: &[u8]) -> String {
    bridge_core::hex::encode(bytes)
}

/// Parses a 64-digit hex hash (either case).
pub fn from_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    bridge_core::hex::decode(s)?.try_into().ok()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use super::{Hash, from_hex, to_hex};

    pub(super) fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        from_hex(&s).ok_or_else(|| D::Error::custom("expected a 64-digit hex hash"))
    }
}

mod hex_hashes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq as _};

    use super::{Hash, from_hex, to_hex};

    pub(super) fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&to_hex(h))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| from_hex(s).ok_or_else(|| D::Error::custom("expected a 64-digit hex hash")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let h: Hash = core::array::from_fn(|i| (i * 8) as u8);
        let s = to_hex(&h);
        assert_eq!(s.len(), 64);
        assert_eq!(from_hex(&s), Some(h));
        assert_eq!(from_hex(&s.to_uppercase()), Some(h));
        assert_eq!(from_hex(&s[..62]), None);
        assert_eq!(from_hex(&format!("{}g", &s[..63])), None);
        assert_eq!(from_hex(&format!("{s}00")), None);
    }

    #[test]
    fn json_shape_is_stable() {
        let p = InclusionProof {
            index: 1,
            tree_size: 2,
            leaf_hash: [1; 32],
            audit_path: vec![[2; 32]],
            root: [3; 32],
            checkpoint: None,
        };
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["index"], 1);
        assert_eq!(v["tree_size"], 2);
        assert_eq!(v["leaf_hash"], to_hex(&[1; 32]));
        assert_eq!(v["audit_path"][0], to_hex(&[2; 32]));
        assert_eq!(v["root"], to_hex(&[3; 32]));
        assert!(v["checkpoint"].is_null());
        let back: InclusionProof = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(back, p);
        assert!(
            serde_json::from_str::<InclusionProof>(&p.to_json().replace("}", ",\"x\":1}")).is_err()
        );
    }
}
