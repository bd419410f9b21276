//! RFC 6962 / RFC 9162 Merkle tree hashing, proof construction and proof verification.
//!
//! Everything here works on hashes only, so the verifiers can run offline with nothing but a
//! proof, the hashes it is about and (elsewhere) a signed checkpoint. Proof *construction* is
//! written against [`NodeSource`], so the same code serves an in-memory slice of leaf hashes and
//! the SQLite store (which answers from a cache of large subtrees plus a few leaf reads).

use sha2::{Digest, Sha256};

use super::LedgerError;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The longest audit path or consistency proof a tree of at most 2^64 leaves can need.
///
/// Verifiers reject anything longer before doing any work, so a hostile proof cannot make them
/// hash for long.
const MAX_PROOF_LEN: usize = 2 * 64 + 1;

/// `SHA-256(0x00 || data)`: the hash of one leaf.
///
/// The 0x00 prefix (0x01 for interior nodes) is the domain separation that stops an interior
/// node from being passed off as a leaf (a second preimage).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly less than `n` (the RFC 6962 split point); `n >= 2`.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a tree: one perfect subtree per set bit of the size, largest first.
///
/// Appending a leaf merges equal-sized subtrees like a binary counter, so it costs O(log n)
/// hashes amortised O(1), and the root needs at most log n more; old leaves are never read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frontier {
    size: u64,
    /// `(level, hash)` of each perfect subtree of 2^level leaves, left to right.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; `completed(level, hash)` sees every perfect subtree (level >= 1) that
    /// the append completes, in left-to-right order, so a caller can cache them.
    pub(crate) fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, &Hash)) {
        let mut level = 0;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            completed(level, &hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// The root: the subtrees folded from the right, which is exactly the RFC 6962 shape
    /// (split at the largest power of two, recurse on the remainder).
    pub(crate) fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The Merkle tree hash of a list of leaf hashes (O(n), O(log n) memory).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::default();
    for leaf in leaves {
        f.push(*leaf, |_, _| {});
    }
    f.root()
}

/// Something that can produce the hash of any node of the tree: `MTH(D[start:end])`.
///
/// Callers only ask for ranges that are nodes of an RFC 6962 tree, so `start` is always a
/// multiple of the smallest power of two >= `end - start`; implementations may rely on that.
pub(crate) trait NodeSource {
    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, LedgerError>;
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1),
/// from the leaf's sibling up to the root's child.
pub(crate) fn inclusion_path_in(
    src: &mut impl NodeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange {
            what: "leaf index",
            value: index,
            size,
        });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(
    src: &mut impl NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, lo, lo + k, out)?;
        out.push(src.subtree(lo + k, hi)?);
    } else {
        path(src, m - k, lo + k, hi, out)?;
        out.push(src.subtree(lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `m` leaves to the tree of `n` leaves
/// (RFC 9162 §2.1.4.1). Empty when `m == 0` or `m == n`, which need no proof.
pub(crate) fn consistency_path_in(
    src: &mut impl NodeSource,
    m: u64,
    n: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if m > n {
        return Err(LedgerError::OutOfRange {
            what: "old tree size",
            value: m,
            size: n,
        });
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof(src, m, 0, n, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    src: &mut impl NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    let n = hi - lo;
    if m == n {
        // The old tree is this very node: the verifier knows its hash already (it is the old
        // root) unless we are inside a right branch.
        if !whole {
            out.push(src.subtree(lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(src.subtree(lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(src.subtree(lo, lo + k)?);
    }
    Ok(())
}

/// Leaf hashes held in memory.
struct Slice<'a>(&'a [Hash]);

impl NodeSource for Slice<'_> {
    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, LedgerError> {
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        match range.and_then(|(s, e)| self.0.get(s..e)) {
            Some(leaves) => Ok(root(leaves)),
            None => Err(LedgerError::OutOfRange {
                what: "subtree end",
                value: end,
                size: self.0.len() as u64,
            }),
        }
    }
}

/// The audit path of leaf `index` in the tree of the first `size` of `leaves`.
pub fn inclusion_path(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
    check_size(leaves, size)?;
    inclusion_path_in(&mut Slice(leaves), index, size)
}

/// The consistency proof between the trees of the first `m` and first `n` of `leaves`.
pub fn consistency_path(leaves: &[Hash], m: u64, n: u64) -> Result<Vec<Hash>, LedgerError> {
    check_size(leaves, n)?;
    consistency_path_in(&mut Slice(leaves), m, n)
}

fn check_size(leaves: &[Hash], size: u64) -> Result<(), LedgerError> {
    if size > leaves.len() as u64 {
        return Err(LedgerError::OutOfRange {
            what: "tree size",
            value: size,
            size: leaves.len() as u64,
        });
    }
    Ok(())
}

/// Verifies an audit path exactly as RFC 9162 §2.1.3.2 prescribes.
///
/// True when `path` proves that `leaf` is leaf number `index` of a tree of `size` leaves whose
/// root is `root`. The root alone does not commit to the size: bind both with a signed
/// checkpoint (see [`verify_proof_json`](super::verify_proof_json)).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size || path.len() > MAX_PROOF_LEN {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                // A right-edge node with no right sibling: climb until we are a right child.
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Verifies a consistency proof exactly as RFC 9162 §2.1.4.2 prescribes.
///
/// True when `proof` shows that the tree of `m` leaves with root `root_m` is a prefix of the
/// tree of `n` leaves with root `root_n`. The RFC leaves `m == 0` and `m == n` undefined; here
/// the empty tree (root `SHA-256("")`) is a prefix of every tree and equal sizes need equal
/// roots, both with an empty proof.
pub fn verify_consistency(m: u64, n: u64, root_m: &Hash, root_n: &Hash, proof: &[Hash]) -> bool {
    if m > n || proof.len() > MAX_PROOF_LEN {
        return false;
    }
    if m == n {
        return proof.is_empty() && root_m == root_n;
    }
    if m == 0 {
        return proof.is_empty() && *root_m == EMPTY_ROOT;
    }
    if proof.is_empty() {
        return false;
    }
    // When m is a power of two the old root is itself a node of the new tree, so the proof
    // omits it and the RFC prepends it: start from it and walk the whole proof.
    let (seed, rest) = if m.is_power_of_two() {
        (root_m, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    let mut fnode = m - 1;
    let mut snode = n - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *root_m && sr == *root_n && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(root(&[]), EMPTY_ROOT);
    }

    #[test]
    fn split_is_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn frontier_reports_completed_subtrees_in_order() {
        let mut f = Frontier::default();
        let mut seen = Vec::new();
        for leaf in leaves(8) {
            f.push(leaf, |level, _| seen.push(level));
        }
        // Sizes 2, 4 (two merges), 6, 8 (three merges).
        assert_eq!(seen, vec![1, 1, 2, 1, 1, 2, 3]);
        assert_eq!(f.size(), 8);
    }

    #[test]
    fn every_proof_of_a_small_tree_verifies() {
        let l = leaves(70);
        for n in 0..=70u64 {
            let r = root(&l[..n as usize]);
            for i in 0..n {
                let p = inclusion_path(&l, i, n).unwrap();
                assert!(
                    verify_inclusion(&l[i as usize], i, n, &p, &r),
                    "i={i} n={n}"
                );
            }
            for m in 0..=n {
                let p = consistency_path(&l, m, n).unwrap();
                let rm = root(&l[..m as usize]);
                assert!(verify_consistency(m, n, &rm, &r, &p), "m={m} n={n}");
            }
        }
    }

    #[test]
    fn out_of_range_requests_are_errors_not_panics() {
        let l = leaves(4);
        assert!(inclusion_path(&l, 4, 4).is_err());
        assert!(inclusion_path(&l, 0, 5).is_err());
        assert!(consistency_path(&l, 3, 2).is_err());
        assert!(consistency_path(&l, 1, 5).is_err());
        assert!(!verify_inclusion(&l[0], 0, 0, &[], &EMPTY_ROOT));
        assert!(!verify_consistency(3, 2, &EMPTY_ROOT, &EMPTY_ROOT, &[]));
    }

    #[test]
    fn overlong_proofs_are_rejected_before_hashing() {
        let long = vec![[0u8; 32]; MAX_PROOF_LEN + 1];
        assert!(!verify_inclusion(&[0; 32], 0, u64::MAX, &long, &[0; 32]));
        assert!(!verify_consistency(1, u64::MAX, &[0; 32], &[0; 32], &long));
    }
}
