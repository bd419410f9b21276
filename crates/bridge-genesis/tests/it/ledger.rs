//! Ledger tests: RFC 6962 vectors, a naive reference tree, adversarial proof checks, and
//! tampering with a real SQLite file.

use std::path::PathBuf;

use bridge_genesis::ledger::{
    self, EMPTY_ROOT, Hash, Ledger, LedgerEntry, LedgerError, NewEntry, Problem, consistency_path,
    inclusion_path, leaf_hash, verify_checkpoint, verify_consistency, verify_file,
    verify_inclusion, verify_proof_json,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use proptest::prelude::*;
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;

const ORIGIN: &str = "bridge.local/ledger";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn vk() -> VerifyingKey {
    key().verifying_key()
}

fn now() -> OffsetDateTime {
    datetime!(2026-03-01 12:00:00 UTC)
}

fn new_entry(i: u64) -> NewEntry {
    NewEntry {
        timestamp: datetime!(2026-03-01 00:00:00 UTC) + time::Duration::seconds(i as i64),
        topic: if i.is_multiple_of(3) {
            "envsync.commit"
        } else {
            "deploy.render"
        }
        .to_owned(),
        seq: (!i.is_multiple_of(5)).then_some(1000 + i),
        payload: json!({"n": i, "key": format!("VAR_{i}"), "fingerprint": format!("{:064x}", i), "ok": i.is_multiple_of(2)}),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        Fixture { _dir: dir, path }
    }

    fn open(&self) -> Ledger {
        Ledger::open(&self.path, ORIGIN, Some(key())).unwrap()
    }

    fn raw(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }

    /// 40 entries with checkpoints #1..#4 at sizes 10, 20, 30, 40.
    fn standard() -> Self {
        let f = Fixture::new();
        let mut l = f.open();
        for chunk in 0..4u64 {
            let batch: Vec<_> = (chunk * 10..chunk * 10 + 10).map(new_entry).collect();
            l.append_batch(&batch).unwrap();
            l.checkpoint(now()).unwrap();
        }
        f
    }

    fn report(&self) -> ledger::VerifyReport {
        verify_file(&self.path, ORIGIN, &vk()).unwrap()
    }
}

fn h(hex: &str) -> Hash {
    ledger::from_hex(hex).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A deliberately naive reference, straight from the RFC 6962 §2.1 definitions.

fn naive_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(naive_mth(&leaves[..k]));
            h.update(naive_mth(&leaves[k..]));
            h.finalize().into()
        }
    }
}

fn naive_split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[lo:hi]) as ranges of the tree.
fn naive_path_ranges(m: u64, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let n = hi - lo;
    if n <= 1 {
        return vec![];
    }
    let k = naive_split(n);
    if m < k {
        let mut p = naive_path_ranges(m, lo, lo + k);
        p.push((lo + k, hi));
        p
    } else {
        let mut p = naive_path_ranges(m - k, lo + k, hi);
        p.push((lo, lo + k));
        p
    }
}

/// SUBPROOF(m, D[lo:hi], b) as ranges of the tree.
fn naive_subproof_ranges(m: u64, lo: u64, hi: u64, b: bool) -> Vec<(u64, u64)> {
    let n = hi - lo;
    if m == n {
        return if b { vec![] } else { vec![(lo, hi)] };
    }
    let k = naive_split(n);
    if m <= k {
        let mut p = naive_subproof_ranges(m, lo, lo + k, b);
        p.push((lo + k, hi));
        p
    } else {
        let mut p = naive_subproof_ranges(m - k, lo + k, hi, false);
        p.push((lo, lo + k));
        p
    }
}

fn naive_consistency_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    if m == 0 || m == n {
        vec![]
    } else {
        naive_subproof_ranges(m, 0, n, true)
    }
}

fn hashes_of(leaves: &[Hash], ranges: &[(u64, u64)]) -> Vec<Hash> {
    ranges
        .iter()
        .map(|&(a, b)| naive_mth(&leaves[a as usize..b as usize]))
        .collect()
}

/// A hash as a formula over leaf numbers: two values are equal (barring SHA-256 collisions)
/// exactly when their formulas are. Used to predict, from the definitions alone, when a
/// mutated size or index must still verify (a root does not commit to its tree size).
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Leaf(u64),
    Node(Box<Expr>, Box<Expr>),
}

fn tree_expr(lo: u64, hi: u64) -> Expr {
    if hi - lo == 1 {
        return Expr::Leaf(lo);
    }
    let k = naive_split(hi - lo);
    Expr::Node(
        Box::new(tree_expr(lo, lo + k)),
        Box::new(tree_expr(lo + k, hi)),
    )
}

/// How a verifier that believes the atoms sit at `atoms[j].0` rebuilds `[lo, hi)`, given
/// that their real values are `atoms[j].1`.
fn rebuild(lo: u64, hi: u64, atoms: &[((u64, u64), Expr)]) -> Option<Expr> {
    if let Some((_, e)) = atoms.iter().find(|(r, _)| *r == (lo, hi)) {
        return Some(e.clone());
    }
    if hi - lo <= 1 {
        return None;
    }
    let k = naive_split(hi - lo);
    Some(Expr::Node(
        Box::new(rebuild(lo, lo + k, atoms)?),
        Box::new(rebuild(lo + k, hi, atoms)?),
    ))
}

/// Must `verify_inclusion(leaf i, i2, n2, PATH(i, n), MTH(n))` succeed?
fn inclusion_should_pass(i: u64, n: u64, i2: u64, n2: u64) -> bool {
    if i2 >= n2 {
        return false;
    }
    let real = naive_path_ranges(i, 0, n);
    let believed = naive_path_ranges(i2, 0, n2);
    if real.len() != believed.len() {
        return false;
    }
    let mut atoms: Vec<_> = believed
        .iter()
        .zip(&real)
        .map(|(b, r)| (*b, tree_expr(r.0, r.1)))
        .collect();
    atoms.push(((i2, i2 + 1), Expr::Leaf(i)));
    rebuild(0, n2, &atoms) == Some(tree_expr(0, n))
}

/// Must `verify_consistency(m2, n2, MTH(m), MTH(n), PROOF(m, n))` succeed (0 < m < n)?
fn consistency_should_pass(m: u64, n: u64, m2: u64, n2: u64) -> bool {
    if m2 == 0 || m2 >= n2 {
        return false; // the proof is not empty, so the degenerate cases must fail
    }
    let real = naive_consistency_ranges(m, n);
    let believed = naive_consistency_ranges(m2, n2);
    if real.len() != believed.len() {
        return false;
    }
    let mut atoms: Vec<_> = believed
        .iter()
        .zip(&real)
        .map(|(b, r)| (*b, tree_expr(r.0, r.1)))
        .collect();
    if m2.is_power_of_two() {
        atoms.push(((0, m2), tree_expr(0, m)));
    }
    rebuild(0, m2, &atoms) == Some(tree_expr(0, m))
        && rebuild(0, n2, &atoms) == Some(tree_expr(0, n))
}

fn random_leaves(n: u64, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

// ---------------------------------------------------------------------------------------------
// Known answers.

/// The Certificate Transparency test data (merkle_tree_test): leaf inputs and the roots of
/// the trees of their first 1..=8 (cross-checked with an independent Python computation).
fn ct_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|hex| leaf_hash(&bridge_core::hex::decode(hex).unwrap()))
    .collect()
}

#[test]
fn rfc6962_test_vectors_roots() {
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves = ct_leaves();
    assert_eq!(
        ledger::root(&[]),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(ledger::root(&[]), EMPTY_ROOT);
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(ledger::root(&leaves[..=n]), h(want), "size {}", n + 1);
        assert_eq!(naive_mth(&leaves[..=n]), h(want), "naive, size {}", n + 1);
    }
}

#[test]
fn rfc6962_test_vectors_proofs() {
    let leaves = ct_leaves();
    let incl: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (i, n, want) in incl {
        let path = inclusion_path(&leaves, i, n).unwrap();
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(path, want, "inclusion {i} in {n}");
        let r = ledger::root(&leaves[..n as usize]);
        assert!(verify_inclusion(&leaves[i as usize], i, n, &path, &r));
    }
    let cons: [(u64, u64, &[&str]); 3] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (m, n, want) in cons {
        let proof = consistency_path(&leaves, m, n).unwrap();
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(proof, want, "consistency {m} -> {n}");
        let rm = ledger::root(&leaves[..m as usize]);
        let rn = ledger::root(&leaves[..n as usize]);
        assert!(verify_consistency(m, n, &rm, &rn, &proof));
    }
}

#[test]
fn the_shape_predictor_knows_a_root_does_not_commit_to_its_size() {
    // Leaf 0's path in a tree of 3 also "proves" it in a tree of 4 with the same root value:
    // only a signed checkpoint binds a size to a root. The predictor must agree with that,
    // or the mutation properties below would be testing the wrong thing.
    let leaves = random_leaves(3, 1);
    let path = inclusion_path(&leaves, 0, 3).unwrap();
    let r = ledger::root(&leaves);
    assert!(verify_inclusion(&leaves[0], 0, 4, &path, &r));
    assert!(inclusion_should_pass(0, 3, 0, 4));
    assert!(!inclusion_should_pass(0, 3, 1, 3));
    assert!(consistency_should_pass(2, 3, 2, 4));
}

#[test]
fn degenerate_consistency_cases() {
    let leaves = random_leaves(5, 2);
    let r5 = ledger::root(&leaves);
    assert!(verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[]));
    assert!(!verify_consistency(0, 5, &r5, &r5, &[]));
    assert!(!verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[r5]));
    assert!(verify_consistency(5, 5, &r5, &r5, &[]));
    assert!(!verify_consistency(5, 5, &r5, &EMPTY_ROOT, &[]));
    assert!(!verify_consistency(5, 5, &r5, &r5, &[r5]));
    assert!(!verify_consistency(2, 5, &leaves[0], &r5, &[]));
    assert!(!verify_consistency(6, 5, &r5, &r5, &[]));
}

// ---------------------------------------------------------------------------------------------
// Properties against the naive reference.

fn tree_and_index() -> impl Strategy<Value = (u64, u64, u64)> {
    (1u64..300).prop_flat_map(|n| (Just(n), 0..n, any::<u64>()))
}

fn tree_and_prefix() -> impl Strategy<Value = (u64, u64, u64)> {
    (0u64..300).prop_flat_map(|n| (Just(n), 0..=n, any::<u64>()))
}

/// Which bits to flip in each hash: both ends plus a random sample (every bit of every element
/// would be 256x the work for little more assurance; over the cases each position is hit).
fn some_bits() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..256, 14).prop_map(|mut v| {
        v.extend([0, 255]);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn roots_match_the_reference(n in 0u64..300, seed: u64) {
        let leaves = random_leaves(n, seed);
        prop_assert_eq!(ledger::root(&leaves), naive_mth(&leaves));
    }

    #[test]
    fn inclusion_proofs_match_the_reference_and_verify((n, i, seed) in tree_and_index()) {
        let leaves = random_leaves(n, seed);
        let path = inclusion_path(&leaves, i, n).unwrap();
        prop_assert_eq!(&path, &hashes_of(&leaves, &naive_path_ranges(i, 0, n)));
        let root = naive_mth(&leaves);
        prop_assert!(verify_inclusion(&leaves[i as usize], i, n, &path, &root));
    }

    #[test]
    fn consistency_proofs_match_the_reference_and_verify((n, m, seed) in tree_and_prefix()) {
        let leaves = random_leaves(n, seed);
        let proof = consistency_path(&leaves, m, n).unwrap();
        prop_assert_eq!(&proof, &hashes_of(&leaves, &naive_consistency_ranges(m, n)));
        let rm = naive_mth(&leaves[..m as usize]);
        let rn = naive_mth(&leaves);
        prop_assert!(verify_consistency(m, n, &rm, &rn, &proof));
    }

    #[test]
    fn any_bit_flip_breaks_an_inclusion_proof((n, i, seed) in tree_and_index(), bits in some_bits()) {
        let leaves = random_leaves(n, seed);
        let path = inclusion_path(&leaves, i, n).unwrap();
        let leaf = leaves[i as usize];
        let root = ledger::root(&leaves);
        for &bit in &bits {
            prop_assert!(!verify_inclusion(&flip(&leaf, bit), i, n, &path, &root));
            prop_assert!(!verify_inclusion(&leaf, i, n, &path, &flip(&root, bit)));
            for k in 0..path.len() {
                let mut bad = path.clone();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(!verify_inclusion(&leaf, i, n, &bad, &root), "element {} bit {}", k, bit);
            }
        }
        // Shorter, longer, or reordered paths.
        if let Some((_, shorter)) = path.split_last() {
            prop_assert!(!verify_inclusion(&leaf, i, n, shorter, &root));
        }
        let mut longer = path.clone();
        longer.push(leaf);
        prop_assert!(!verify_inclusion(&leaf, i, n, &longer, &root));
        if path.len() >= 2 && path[0] != path[1] {
            let mut swapped = path.clone();
            swapped.swap(0, 1);
            prop_assert!(!verify_inclusion(&leaf, i, n, &swapped, &root));
        }
    }

    #[test]
    fn changed_index_or_size_fails_unless_the_definition_says_otherwise(
        (n, i, seed) in tree_and_index(), di in -3i64..=3, dn in -3i64..=3,
    ) {
        let leaves = random_leaves(n, seed);
        let path = inclusion_path(&leaves, i, n).unwrap();
        let root = ledger::root(&leaves);
        let i2 = i.saturating_add_signed(di);
        let n2 = n.saturating_add_signed(dn);
        let got = verify_inclusion(&leaves[i as usize], i2, n2, &path, &root);
        prop_assert_eq!(got, inclusion_should_pass(i, n, i2, n2), "i {}->{} n {}->{}", i, i2, n, n2);
        if n2 == n && i2 != i {
            prop_assert!(!got, "another index in the same tree must never verify");
        }
    }

    #[test]
    fn any_bit_flip_breaks_a_consistency_proof((n, m, seed) in tree_and_prefix(), bits in some_bits()) {
        prop_assume!(m > 0 && m < n);
        let leaves = random_leaves(n, seed);
        let proof = consistency_path(&leaves, m, n).unwrap();
        let rm = ledger::root(&leaves[..m as usize]);
        let rn = ledger::root(&leaves);
        for &bit in &bits {
            prop_assert!(!verify_consistency(m, n, &flip(&rm, bit), &rn, &proof));
            prop_assert!(!verify_consistency(m, n, &rm, &flip(&rn, bit), &proof));
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(!verify_consistency(m, n, &rm, &rn, &bad), "element {} bit {}", k, bit);
            }
        }
        prop_assert!(!verify_consistency(m, n, &rm, &rn, &proof[..proof.len() - 1]));
        let mut longer = proof.clone();
        longer.push(rm);
        prop_assert!(!verify_consistency(m, n, &rm, &rn, &longer));
        prop_assert!(!verify_consistency(m, n, &rm, &rn, &[]));
        // Swapped roots: a shrinking log must not look like a growing one.
        prop_assert!(!verify_consistency(m, n, &rn, &rm, &proof));
    }

    #[test]
    fn changed_sizes_break_a_consistency_proof_unless_the_definition_says_otherwise(
        (n, m, seed) in tree_and_prefix(), dm in -3i64..=3, dn in -3i64..=3,
    ) {
        prop_assume!(m > 0 && m < n);
        let leaves = random_leaves(n, seed);
        let proof = consistency_path(&leaves, m, n).unwrap();
        let rm = ledger::root(&leaves[..m as usize]);
        let rn = ledger::root(&leaves);
        let m2 = m.saturating_add_signed(dm);
        let n2 = n.saturating_add_signed(dn);
        let got = verify_consistency(m2, n2, &rm, &rn, &proof);
        prop_assert_eq!(got, consistency_should_pass(m, n, m2, n2), "m {}->{} n {}->{}", m, m2, n, n2);
    }
}

// ---------------------------------------------------------------------------------------------
// The SQLite-backed ledger.

#[test]
fn ledger_proofs_match_the_reference_across_cache_levels() {
    let f = Fixture::new();
    let mut l = f.open();
    let total = 1100u64; // past 256, 512 and 1024: every cache level and the block reads
    for start in (0..total).step_by(137) {
        let batch: Vec<_> = (start..(start + 137).min(total)).map(new_entry).collect();
        l.append_batch(&batch).unwrap();
    }
    assert_eq!(l.len(), total);
    let entries = l.entries(0..total).unwrap();
    let leaves: Vec<Hash> = entries.iter().map(LedgerEntry::leaf_hash).collect();
    assert_eq!(l.root(), naive_mth(&leaves));
    let sizes = [
        1u64, 2, 255, 256, 257, 511, 512, 513, 700, 1023, 1024, 1025, 1099, 1100,
    ];
    for &n in &sizes {
        assert_eq!(
            l.root_at(n).unwrap(),
            naive_mth(&leaves[..n as usize]),
            "root at {n}"
        );
        for i in [0, n / 3, n / 2, n - 1, n.saturating_sub(257)] {
            let p = l.inclusion_proof(i, n).unwrap();
            assert_eq!(
                p.audit_path,
                hashes_of(&leaves, &naive_path_ranges(i, 0, n)),
                "incl {i} {n}"
            );
            assert_eq!(p.leaf_hash, leaves[i as usize]);
            assert!(verify_inclusion(&p.leaf_hash, i, n, &p.audit_path, &p.root));
        }
        for &m in &sizes {
            if m <= n {
                let proof = l.consistency_proof(m, n).unwrap();
                assert_eq!(
                    proof,
                    hashes_of(&leaves, &naive_consistency_ranges(m, n)),
                    "cons {m} {n}"
                );
            }
        }
    }
    // Reopening rebuilds the same tree (and cache) from the stored leaf hashes.
    let root = l.root();
    drop(l);
    let l = f.open();
    assert_eq!(l.root(), root);
    let p = l.inclusion_proof(300, 1100).unwrap();
    assert_eq!(
        p.audit_path,
        hashes_of(&leaves, &naive_path_ranges(300, 0, 1100))
    );
}

#[test]
fn appends_read_back_and_single_append_matches_batch() {
    let f = Fixture::new();
    let mut l = f.open();
    assert!(l.is_empty());
    assert_eq!(l.root(), EMPTY_ROOT);
    assert_eq!(l.append(new_entry(0)).unwrap(), 0);
    assert_eq!(
        l.append_batch(&[new_entry(1), new_entry(2)]).unwrap(),
        vec![1, 2]
    );
    assert_eq!(l.append_batch(&[]).unwrap(), Vec::<u64>::new());
    let e = l.entry(1).unwrap().unwrap();
    assert_eq!(e.index, 1);
    assert_eq!(e.timestamp, "2026-03-01T00:00:01Z");
    assert_eq!(e.topic, "deploy.render");
    assert_eq!(e.seq, Some(1001));
    assert_eq!(e.payload, new_entry(1).payload);
    assert!(l.entry(3).unwrap().is_none());
    assert_eq!(l.entries(1..10).unwrap().len(), 2);
    let leaves: Vec<Hash> = l
        .entries(0..3)
        .unwrap()
        .iter()
        .map(LedgerEntry::leaf_hash)
        .collect();
    assert_eq!(l.root(), naive_mth(&leaves));
    assert!(l.verify(&vk()).unwrap().is_ok());
}

#[test]
fn export_writes_the_hashed_bytes() {
    let f = Fixture::new();
    let mut l = f.open();
    l.append_batch(&(0..20).map(new_entry).collect::<Vec<_>>())
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(l.export_jsonl(&mut out).unwrap(), 20);
    let text = String::from_utf8(out).unwrap();
    let leaves: Vec<Hash> = text
        .lines()
        .map(|line| leaf_hash(line.as_bytes()))
        .collect();
    assert_eq!(ledger::root(&leaves), l.root());
    let first: LedgerEntry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first, l.entry(0).unwrap().unwrap());
}

#[test]
fn checkpoints_are_c2sp_notes_and_proofs_verify_offline() {
    let f = Fixture::new();
    let mut l = f.open();
    l.append_batch(&(0..13).map(new_entry).collect::<Vec<_>>())
        .unwrap();
    let cp = l.checkpoint(now()).unwrap();
    assert_eq!(cp.id, 1);
    assert_eq!(cp.created_at, "2026-03-01T12:00:00Z");
    assert_eq!(cp.checkpoint.size, 13);
    assert_eq!(cp.checkpoint.root, l.root());
    assert!(cp.checkpoint.note.starts_with("bridge.local/ledger\n13\n"));
    let verified = verify_checkpoint(&cp.checkpoint.note, &vk()).unwrap();
    assert_eq!(verified, cp.checkpoint);
    assert_eq!(l.latest_checkpoint().unwrap(), Some(cp.clone()));

    let proof = l.inclusion_proof(5, 13).unwrap();
    let json = proof.to_json();
    let back = verify_proof_json(&json, &vk()).unwrap();
    assert_eq!(back, proof);
    assert_eq!(back.leaf_hash, l.entry(5).unwrap().unwrap().leaf_hash());

    // Wrong key; every field altered; checkpoint missing.
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(verify_proof_json(&json, &other).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let alter = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut w = v.clone();
        f(&mut w);
        verify_proof_json(&w.to_string(), &vk()).is_err()
    };
    assert!(alter(&|w| w["index"] = json!(6)));
    assert!(alter(&|w| w["tree_size"] = json!(14)));
    assert!(alter(&|w| w["tree_size"] = json!(12)));
    assert!(alter(&|w| w["leaf_hash"] = json!(ledger::to_hex(&[0; 32]))));
    assert!(alter(&|w| w["root"] = json!(ledger::to_hex(&[0; 32]))));
    assert!(alter(
        &|w| w["audit_path"][0] = json!(ledger::to_hex(&[0; 32]))
    ));
    assert!(alter(&|w| w["audit_path"] = json!([])));
    assert!(alter(&|w| w["checkpoint"] = serde_json::Value::Null));
    assert!(alter(&|w| w["extra"] = json!(1)));
    let note = v["checkpoint"]
        .as_str()
        .unwrap()
        .replacen("\n13\n", "\n14\n", 1);
    v["checkpoint"] = json!(note);
    assert!(verify_proof_json(&v.to_string(), &vk()).is_err());

    // No checkpoint at that size: the proof says so and does not verify.
    l.append(new_entry(13)).unwrap();
    let unsigned = l.inclusion_proof(5, 14).unwrap();
    assert_eq!(unsigned.checkpoint, None);
    assert!(matches!(unsigned.verify(&vk()), Err(LedgerError::Proof(_))));

    // The next checkpoint is consistent with the first.
    let cp2 = l.checkpoint(now()).unwrap();
    let proof = l.consistency_proof(13, 14).unwrap();
    assert!(verify_consistency(
        13,
        14,
        &cp.checkpoint.root,
        &cp2.checkpoint.root,
        &proof
    ));
    assert_eq!(l.checkpoints().unwrap().len(), 2);
}

/// Signed consistency proofs between every pair of checkpoints verify offline, carry the
/// path a naive reference computes, and fail when anything in them is changed.
#[test]
fn signed_consistency_proofs_verify_offline_and_match_the_reference() {
    let f = Fixture::new();
    let mut l = f.open();
    let sizes = [1u64, 2, 5, 8, 13];
    let mut leaves = Vec::new();
    let mut appended = 0;
    for &size in &sizes {
        let batch: Vec<_> = (appended..size).map(new_entry).collect();
        l.append_batch(&batch).unwrap();
        appended = size;
        l.checkpoint(now()).unwrap();
    }
    for i in 0..appended {
        leaves.push(l.entry(i).unwrap().unwrap().leaf_hash());
    }
    for (a, &m) in sizes.iter().enumerate() {
        for &n in &sizes[a..] {
            let proof = l.signed_consistency_proof(m, n).unwrap();
            assert_eq!(
                proof.from_root,
                naive_mth(&leaves[..m as usize]),
                "{m}->{n}"
            );
            assert_eq!(proof.to_root, naive_mth(&leaves[..n as usize]), "{m}->{n}");
            assert_eq!(
                proof.proof,
                hashes_of(&leaves, &naive_consistency_ranges(m, n)),
                "{m}->{n}"
            );
            let json = proof.to_json();
            match ledger::verify_proof_document(&json, &vk()) {
                Ok(ledger::ProofDocument::Consistency(back)) => assert_eq!(back, proof),
                other => panic!("{m}->{n}: {other:?}"),
            }
        }
    }

    let proof = l.signed_consistency_proof(5, 13).unwrap();
    let v: serde_json::Value = serde_json::from_str(&proof.to_json()).unwrap();
    let fails = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut w = v.clone();
        f(&mut w);
        ledger::verify_proof_document(&w.to_string(), &vk()).is_err()
    };
    assert!(fails(&|w| w["proof"][0] = json!(ledger::to_hex(&[0; 32]))));
    assert!(fails(&|w| w["proof"] = json!([])));
    assert!(fails(&|w| w["from_root"] = json!(ledger::to_hex(&[0; 32]))));
    assert!(fails(&|w| w["to_size"] = json!(12)));
    assert!(fails(&|w| {
        let (from, to) = (w["from_checkpoint"].clone(), w["to_checkpoint"].clone());
        w["from_checkpoint"] = to;
        w["to_checkpoint"] = from;
    }));
    assert!(fails(&|w| w["extra"] = json!(1)));
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(ledger::verify_proof_document(&proof.to_json(), &other).is_err());

    // No checkpoint at a size: said, with the sizes that have one.
    match l.signed_consistency_proof(3, 13) {
        Err(LedgerError::Proof(message)) => {
            assert!(message.contains("1, 2, 5, 8, 13"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// The case an auditor cares about: the operator rewrites history and signs a new checkpoint
/// with the same key. A consistency proof from the checkpoint the auditor kept cannot verify,
/// whatever path the operator offers.
#[test]
fn a_rewrite_signed_with_the_same_key_fails_consistency_with_an_older_checkpoint() {
    let honest = Fixture::new();
    let mut l = honest.open();
    l.append_batch(&(0..5).map(new_entry).collect::<Vec<_>>())
        .unwrap();
    let kept = l.checkpoint(now()).unwrap().checkpoint;

    let rewritten = Fixture::new();
    let mut r = rewritten.open();
    let mut entries: Vec<_> = (0..8).map(new_entry).collect();
    entries[2].payload = json!({"n": 2, "key": "VAR_2", "ok": false});
    r.append_batch(&entries).unwrap();
    r.checkpoint(now()).unwrap();
    let forged_root_5 = r.root_at(5).unwrap();
    assert_ne!(forged_root_5, kept.root);

    // The rewritten log has no checkpoint at 5; the operator pairs the auditor's old one with
    // its own path from 5 to 8.
    let newer = r.latest_checkpoint().unwrap().unwrap().checkpoint;
    let forged = ledger::ConsistencyProof {
        from_size: 5,
        to_size: 8,
        from_root: kept.root,
        to_root: newer.root,
        proof: r.consistency_proof(5, 8).unwrap(),
        from_checkpoint: kept.note.clone(),
        to_checkpoint: newer.note.clone(),
    };
    match forged.verify(&vk()) {
        Err(LedgerError::Proof(message)) => assert!(message.contains("rewritten"), "{message}"),
        other => panic!("a rewrite passed: {other:?}"),
    }
}

#[test]
fn proofs_out_of_range_are_errors() {
    let f = Fixture::new();
    let mut l = f.open();
    l.append_batch(&(0..5).map(new_entry).collect::<Vec<_>>())
        .unwrap();
    assert!(matches!(
        l.inclusion_proof(5, 5),
        Err(LedgerError::OutOfRange { .. })
    ));
    assert!(matches!(
        l.inclusion_proof(0, 6),
        Err(LedgerError::OutOfRange { .. })
    ));
    assert!(matches!(
        l.consistency_proof(3, 6),
        Err(LedgerError::OutOfRange { .. })
    ));
    assert!(matches!(
        l.consistency_proof(4, 3),
        Err(LedgerError::OutOfRange { .. })
    ));
    assert!(matches!(l.root_at(6), Err(LedgerError::OutOfRange { .. })));
}

#[test]
fn open_checks_origin_and_key() {
    let f = Fixture::new();
    drop(f.open());
    assert!(matches!(
        Ledger::open(&f.path, "other.example/log", None),
        Err(LedgerError::OriginMismatch { .. })
    ));
    assert!(matches!(
        Ledger::open(&f.path, "has space", None),
        Err(LedgerError::InvalidOrigin(_))
    ));
    let mut ro = Ledger::open(&f.path, ORIGIN, None).unwrap();
    ro.append(new_entry(0)).unwrap();
    assert!(matches!(
        ro.checkpoint(now()),
        Err(LedgerError::NoSigningKey)
    ));
    assert!(!format!("{ro:?}").contains("secret"));
}

#[test]
fn two_handles_on_one_file_stay_consistent() {
    let f = Fixture::new();
    let mut a = f.open();
    let mut b = f.open();
    for i in 0..30u64 {
        let l = if i.is_multiple_of(3) { &mut b } else { &mut a };
        assert_eq!(l.append(new_entry(i)).unwrap(), i);
    }
    a.checkpoint(now()).unwrap();
    b.append(new_entry(30)).unwrap();
    b.checkpoint(now()).unwrap();
    assert!(b.verify(&vk()).unwrap().is_ok());
    let leaves: Vec<Hash> = b
        .entries(0..31)
        .unwrap()
        .iter()
        .map(LedgerEntry::leaf_hash)
        .collect();
    assert_eq!(b.root(), naive_mth(&leaves));
}

// ---------------------------------------------------------------------------------------------
// Tampering with the file.

fn first(f: &Fixture) -> Problem {
    let r = f.report();
    assert!(!r.is_ok(), "tampering went unnoticed");
    r.first().unwrap().clone()
}

#[test]
fn an_untouched_ledger_verifies() {
    let f = Fixture::standard();
    let r = f.report();
    assert!(r.is_ok(), "{r}");
    assert_eq!((r.entries, r.checkpoints, r.attested_size), (40, 4, 40));
    assert_eq!(r.root, f.open().root());
    assert_eq!(f.open().verify(&vk()).unwrap(), r);
    assert_eq!(
        r.to_string(),
        "ok: 40 entries, 4 checkpoints, 40 entries attested"
    );
}

#[test]
fn an_edited_payload_is_named() {
    let f = Fixture::standard();
    f.raw()
        .execute(
            "UPDATE ledger_entries SET payload = '{\"n\":17,\"key\":\"EVIL\"}' WHERE idx = 17",
            [],
        )
        .unwrap();
    let r = f.report();
    assert_eq!(r.first_bad_entry(), Some(17));
    assert!(
        matches!(r.first(), Some(Problem::Changed { index: 17, .. })),
        "{r}"
    );
    assert_eq!(
        r.problems.len(),
        1,
        "consequent root mismatches are not listed: {r:?}"
    );
    assert!(r.to_string().contains("entry 17 was changed"));
    assert!(!r.to_string().contains("EVIL"));
}

#[test]
fn every_column_is_covered() {
    for (column, value) in [
        ("timestamp", json!("2026-03-01T00:00:00Z")),
        ("topic", json!("genesis.heal")),
        ("seq", json!(5)),
        ("seq", serde_json::Value::Null),
        ("leaf_hash", json!("x")),
    ] {
        let f = Fixture::standard();
        let conn = f.raw();
        let sql = format!("UPDATE ledger_entries SET {column} = ?1 WHERE idx = 23");
        match &value {
            serde_json::Value::String(s) if column == "leaf_hash" => {
                conn.execute(&sql, [vec![s.as_bytes()[0]; 32]]).unwrap()
            }
            serde_json::Value::String(s) => conn.execute(&sql, [s]).unwrap(),
            serde_json::Value::Number(n) => conn.execute(&sql, [n.as_i64()]).unwrap(),
            _ => conn.execute(&sql, [Option::<i64>::None]).unwrap(),
        };
        assert!(
            matches!(first(&f), Problem::Changed { index: 23, .. }),
            "{column} = {value}"
        );
    }
}

#[test]
fn a_deleted_row_is_named() {
    let f = Fixture::standard();
    f.raw()
        .execute("DELETE FROM ledger_entries WHERE idx = 17", [])
        .unwrap();
    assert_eq!(
        first(&f),
        Problem::Removed {
            index: 17,
            missing: 1
        }
    );
    let l = f.open();
    assert!(l.damage().is_some());
}

#[test]
fn a_cut_tail_is_named() {
    let f = Fixture::standard();
    f.raw()
        .execute("DELETE FROM ledger_entries WHERE idx >= 35", [])
        .unwrap();
    assert_eq!(
        first(&f),
        Problem::Removed {
            index: 35,
            missing: 5
        }
    );
}

#[test]
fn swapped_payloads_are_reported_as_reordered() {
    let f = Fixture::standard();
    let conn = f.raw();
    let get = |i: i64| -> String {
        conn.query_row(
            "SELECT payload FROM ledger_entries WHERE idx = ?1",
            [i],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (p12, p25) = (get(12), get(25));
    conn.execute(
        "UPDATE ledger_entries SET payload = ?1 WHERE idx = 12",
        [&p25],
    )
    .unwrap();
    conn.execute(
        "UPDATE ledger_entries SET payload = ?1 WHERE idx = 25",
        [&p12],
    )
    .unwrap();
    let r = f.report();
    assert_eq!(
        r.first(),
        Some(&Problem::Reordered {
            index: 12,
            found_at: 25
        }),
        "{r}"
    );
    assert_eq!(r.first_bad_entry(), Some(12));
}

#[test]
fn swapped_whole_rows_are_reported_as_reordered() {
    let f = Fixture::standard();
    let conn = f.raw();
    conn.execute_batch(
        "UPDATE ledger_entries SET idx = -1 WHERE idx = 3;
         UPDATE ledger_entries SET idx = 3 WHERE idx = 31;
         UPDATE ledger_entries SET idx = 31 WHERE idx = -1;",
    )
    .unwrap();
    assert_eq!(
        first(&f),
        Problem::Reordered {
            index: 3,
            found_at: 31
        }
    );
}

/// Rewrites entry `i` and its leaf hash so that the row checks out on its own.
fn forge(f: &Fixture, i: u64) {
    let l = Ledger::open(&f.path, ORIGIN, None).unwrap();
    let mut e = l.entry(i).unwrap().unwrap();
    drop(l);
    e.payload = json!({"key": "FORGED"});
    let payload = String::from_utf8(ledger::canonical_json(&e.payload)).unwrap();
    f.raw()
        .execute(
            "UPDATE ledger_entries SET payload = ?1, leaf_hash = ?2 WHERE idx = ?3",
            params![payload, &e.leaf_hash()[..], i as i64],
        )
        .unwrap();
}

#[test]
fn a_consistent_rewrite_is_caught_by_the_checkpoints() {
    let f = Fixture::standard();
    forge(&f, 25);
    let r = f.report();
    assert_eq!(
        r.first(),
        Some(&Problem::RootMismatch {
            checkpoint: 3,
            size: 30,
            first_suspect: 20
        }),
        "{r}"
    );
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert_eq!(r.attested_size, 20);
    assert_eq!(r.first_bad_entry(), Some(20));
    assert!(r.to_string().contains("20..30"));
}

#[test]
fn a_swapped_checkpoint_signature_is_named() {
    let f = Fixture::standard();
    let conn = f.raw();
    let note = |id: i64| -> String {
        conn.query_row(
            "SELECT note FROM ledger_checkpoints WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (n1, n2) = (note(1), note(2));
    let sig1 = n1.split("\n\n").nth(1).unwrap();
    let body2 = n2.split("\n\n").next().unwrap();
    let forged = format!("{body2}\n\n{sig1}");
    conn.execute(
        "UPDATE ledger_checkpoints SET note = ?1 WHERE id = 2",
        [&forged],
    )
    .unwrap();
    let r = f.report();
    assert_eq!(
        r.first(),
        Some(&Problem::BadSignature { checkpoint: 2 }),
        "{r}"
    );
    assert_eq!(r.problems.len(), 1);
    assert!(r.to_string().contains("checkpoint #2"));
}

#[test]
fn a_flipped_byte_in_a_checkpoint_is_named() {
    // Flip one byte at several places of note #3: size line, root line, signature.
    let f0 = Fixture::standard();
    let note: String = f0
        .raw()
        .query_row(
            "SELECT note FROM ledger_checkpoints WHERE id = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let sig_at = note.rfind(' ').unwrap() + 5;
    let root_at = note.find("\n30\n").unwrap() + 6;
    for pos in [root_at, sig_at, note.len() - 3] {
        let f = Fixture::standard();
        let mut bytes = note.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bytes).unwrap();
        f.raw()
            .execute(
                "UPDATE ledger_checkpoints SET note = ?1 WHERE id = 3",
                [&bad],
            )
            .unwrap();
        let p = first(&f);
        assert!(
            matches!(
                p,
                Problem::BadSignature { checkpoint: 3 }
                    | Problem::BadCheckpoint { checkpoint: 3, .. }
            ),
            "byte {pos}: {p}"
        );
    }
}

#[test]
fn a_truncated_file_is_reported_as_corrupt() {
    let f = Fixture::new();
    {
        let mut l = f.open();
        for chunk in 0..10u64 {
            let batch: Vec<_> = (chunk * 200..chunk * 200 + 200).map(new_entry).collect();
            l.append_batch(&batch).unwrap();
        }
        l.checkpoint(now()).unwrap();
    }
    let len = std::fs::metadata(&f.path).unwrap().len();
    assert!(
        len > 100_000,
        "the test needs a multi-page file, got {len} bytes"
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let r = f.report();
    assert!(matches!(r.first(), Some(Problem::Corrupt { .. })), "{r}");
    assert!(r.to_string().contains("corrupt"));
    match Ledger::open(&f.path, ORIGIN, None) {
        Err(LedgerError::Corrupt(_)) => {}
        Ok(l) => assert!(matches!(
            l.verify(&vk()).unwrap().first(),
            Some(Problem::Corrupt { .. })
        )),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn garbage_is_not_a_ledger() {
    let f = Fixture::new();
    std::fs::write(&f.path, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(
        Ledger::open(&f.path, ORIGIN, None),
        Err(LedgerError::Corrupt(_))
    ));
    let r = f.report();
    assert!(matches!(r.first(), Some(Problem::Corrupt { .. })), "{r}");
}

/// Rows no signature covers, but the ledger relies on, are checked for what they must be.
#[test]
fn edited_bookkeeping_rows_are_named() {
    let cases = [
        (
            "UPDATE ledger_meta SET value = 'other.example/ledger'",
            "records origin \"other.example/ledger\"",
        ),
        (
            "DELETE FROM ledger_checkpoints WHERE id = 2",
            "ids of the 3 checkpoints run from 1 to 4",
        ),
        (
            "UPDATE sqlite_sequence SET seq = 7 WHERE name = 'ledger_checkpoints'",
            "counter in sqlite_sequence is [7], not the last id 4",
        ),
        (
            "UPDATE ledger_checkpoints SET created_at = '2026-03-01 12:00:00' WHERE id = 3",
            "checkpoint #3 has a created_at",
        ),
    ];
    for (sql, want) in cases {
        let f = Fixture::standard();
        f.raw().execute(sql, []).unwrap();
        let r = f.report();
        assert!(
            matches!(r.first(), Some(Problem::Unsigned { .. })),
            "{sql}: {r}"
        );
        assert_eq!(r.problems.len(), 1, "{sql}: {r:?}");
        assert!(r.to_string().contains(want), "{sql}: {r}");
    }
}

/// Damage no row shows: the schema, a header byte that makes the file read-only.
#[test]
fn structural_damage_is_named() {
    let cases = [
        (
            "DROP INDEX ledger_checkpoints_by_size",
            "ledger_checkpoints_by_size is missing",
        ),
        (
            "CREATE TABLE ledger_notes (x)",
            "holds table \"ledger_notes\", which the ledger does not create",
        ),
    ];
    for (sql, want) in cases {
        let f = Fixture::standard();
        f.raw().execute(sql, []).unwrap();
        let r = f.report();
        assert!(
            matches!(r.first(), Some(Problem::Structure { .. })),
            "{sql}: {r}"
        );
        assert!(r.to_string().contains(want), "{sql}: {r}");
    }
    // A write version past 2: SQLite would open the file read-only, so no append could land.
    let f = Fixture::standard();
    let mut bytes = std::fs::read(&f.path).unwrap();
    assert_eq!(bytes[18], 2, "the ledger is in WAL mode");
    bytes[18] = 3;
    std::fs::write(&f.path, bytes).unwrap();
    let r = f.report();
    assert!(
        r.to_string().contains("file-format versions 3 (write)"),
        "{r}"
    );
    // An event missing from the bus-sequence index could be recorded twice.
    let f = Fixture::standard();
    f.raw()
        .execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = replace(sql, 'IS NOT NULL', 'IS NOT NULL AND seq < 1010')
                 WHERE name = 'ledger_entries_by_seq';",
        )
        .unwrap();
    let r = f.report();
    assert!(matches!(r.first(), Some(Problem::Structure { .. })), "{r}");
}

#[test]
fn a_checkpoint_for_another_origin_is_named() {
    let f = Fixture::standard();
    let other = f.open();
    let root = other.root();
    drop(other);
    let signed = {
        let g = Fixture::new();
        let mut l = Ledger::open(&g.path, "evil.example/log", Some(key())).unwrap();
        l.append_batch(&(0..40).map(new_entry).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(l.root(), root);
        l.checkpoint(now()).unwrap()
    };
    f.raw()
        .execute(
            "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES (40, ?1, ?2, 'x')",
            params![&root[..], signed.checkpoint.note],
        )
        .unwrap();
    assert!(matches!(
        first(&f),
        Problem::BadCheckpoint { checkpoint: 5, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Refusing to sign.

#[test]
fn refuses_to_sign_over_rewritten_history() {
    let f = Fixture::standard();
    forge(&f, 25);
    let mut l = f.open();
    assert!(l.damage().is_none(), "each row looks fine on its own");
    let err = l.checkpoint(now()).unwrap_err();
    assert!(matches!(err, LedgerError::Refused(_)), "{err}");
    assert!(err.to_string().contains("not an extension"), "{err}");
    assert_eq!(l.checkpoints().unwrap().len(), 4, "nothing was signed");
}

#[test]
fn refuses_to_sign_over_an_edited_new_entry() {
    let f = Fixture::standard();
    let mut l = f.open();
    l.append_batch(&(40..50).map(new_entry).collect::<Vec<_>>())
        .unwrap();
    f.raw()
        .execute("UPDATE ledger_entries SET topic = 'x' WHERE idx = 45", [])
        .unwrap();
    let err = l.checkpoint(now()).unwrap_err();
    assert!(
        err.to_string().contains("entry 45 no longer matches"),
        "{err}"
    );
}

#[test]
fn refuses_to_sign_after_a_forged_checkpoint() {
    let f = Fixture::standard();
    let note: String = f
        .raw()
        .query_row(
            "SELECT note FROM ledger_checkpoints WHERE id = 4",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let forged = note.replacen("\n40\n", "\n41\n", 1);
    f.raw()
        .execute(
            "UPDATE ledger_checkpoints SET note = ?1 WHERE id = 4",
            [&forged],
        )
        .unwrap();
    let mut l = f.open();
    let err = l.checkpoint(now()).unwrap_err();
    assert!(matches!(err, LedgerError::Refused(_)), "{err}");
}

#[test]
fn refuses_to_write_after_rows_vanish() {
    let f = Fixture::standard();
    let mut l = f.open();
    f.raw()
        .execute("DELETE FROM ledger_entries WHERE idx >= 38", [])
        .unwrap();
    assert!(matches!(
        l.append(new_entry(40)),
        Err(LedgerError::Damaged(_))
    ));
    assert!(matches!(l.checkpoint(now()), Err(LedgerError::Damaged(_))));
    drop(l);
    // Reopened, the log is shorter than its last checkpoint.
    let mut l = f.open();
    let err = l.checkpoint(now()).unwrap_err();
    assert!(
        err.to_string()
            .contains("attests 40 entries but the ledger holds 38"),
        "{err}"
    );
}

#[test]
fn tampered_files_open_for_inspection() {
    let f = Fixture::standard();
    f.raw()
        .execute("DELETE FROM ledger_entries WHERE idx = 3", [])
        .unwrap();
    let l = f.open();
    assert_eq!(l.len(), 3, "the intact prefix");
    assert_eq!(l.entries(0..100).unwrap().len(), 39);
    assert!(matches!(
        l.inclusion_proof(0, 1),
        Err(LedgerError::Damaged(_))
    ));
    let r = l.verify(&vk()).unwrap();
    assert_eq!(
        r.first(),
        Some(&Problem::Removed {
            index: 3,
            missing: 1
        })
    );
}

/// The embedded backend passes the suite every ledger backend runs.
#[test]
fn sqlite_rows_pass_the_conformance_suite() {
    use bridge_genesis::ledger::{LedgerRows, SqliteRows, conformance};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let made = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(&|| {
        let n = made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = root.join(format!("ledger-{n}.db"));
        Box::new(move || Box::new(SqliteRows::open(&path).unwrap()) as Box<dyn LedgerRows>)
    });
}
