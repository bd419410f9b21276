//! [`EnvSet`]: a set of variables, ordered by key.

use std::collections::BTreeMap;
use std::collections::btree_map;

use crate::secret::SecretValue;

/// Variables keyed by name, in key order (so every listing, diff and report is sorted the
/// same way whatever the source's order was).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSet {
    vars: BTreeMap<String, SecretValue>,
}

impl EnvSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, returning the value it replaces.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<SecretValue>,
    ) -> Option<SecretValue> {
        self.vars.insert(key.into(), value.into())
    }

    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        self.vars.get(key)
    }

    pub fn remove(&mut self, key: &str) -> Option<SecretValue> {
        self.vars.remove(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.vars.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    pub fn iter(&self) -> btree_map::Iter<'_, String, SecretValue> {
        self.vars.iter()
    }

    /// Keeps only the keys for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.vars.retain(|k, _| keep(k));
    }
}

impl<'a> IntoIterator for &'a EnvSet {
    type Item = (&'a String, &'a SecretValue);
    type IntoIter = btree_map::Iter<'a, String, SecretValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.vars.iter()
    }
}

impl IntoIterator for EnvSet {
    type Item = (String, SecretValue);
    type IntoIter = btree_map::IntoIter<String, SecretValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.vars.into_iter()
    }
}

impl<K: Into<String>, V: Into<SecretValue>> FromIterator<(K, V)> for EnvSet {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl<K: Into<String>, V: Into<SecretValue>> Extend<(K, V)> for EnvSet {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.vars
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}
