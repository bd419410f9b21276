//! Which keys a sync is about: include and exclude prefix lists with the seed's semantics.
//!
//! An empty include list means every key; a key must start with one of the include prefixes
//! otherwise; a key starting with any exclude prefix is out whatever the include list says.
//! Keys outside the filter are invisible to a sync: never created, updated or deleted.
//! Single keys can be ignored too ([`KeyFilter::ignoring`]), for a platform's own variables
//! that should not even show up in a diff.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    ignore: Vec<String>,
}

impl KeyFilter {
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        let clean = |list: Vec<String>| list.into_iter().filter(|p| !p.is_empty()).collect();
        Self {
            include: clean(include),
            exclude: clean(exclude),
            ignore: Vec::new(),
        }
    }

    /// Also leaves out these exact keys.
    pub fn ignoring(mut self, keys: Vec<String>) -> Self {
        self.ignore = keys.into_iter().filter(|k| !k.is_empty()).collect();
        self
    }

    pub fn allows(&self, key: &str) -> bool {
        if self.ignore.iter().any(|k| k == key)
            || self.exclude.iter().any(|p| key.starts_with(p.as_str()))
        {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|p| key.starts_with(p.as_str()))
    }

    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty() && self.ignore.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFilter;

    fn filter(include: &[&str], exclude: &[&str]) -> KeyFilter {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        KeyFilter::new(owned(include), owned(exclude))
    }

    #[test]
    fn empty_include_means_all() {
        assert!(filter(&[], &[]).allows("ANYTHING"));
        assert!(filter(&[""], &[""]).is_everything());
    }

    #[test]
    fn include_restricts_and_exclude_wins() {
        let f = filter(&["BRIDGE_", "SR_"], &["BRIDGE_INTERNAL_"]);
        assert!(f.allows("BRIDGE_URL"));
        assert!(f.allows("SR_MODE"));
        assert!(!f.allows("OTHER"));
        assert!(!f.allows("BRIDGE_INTERNAL_TOKEN"));
        assert!(!filter(&[], &["SECRET_"]).allows("SECRET_X"));
        let ignoring = filter(&[], &[]).ignoring(vec!["RENDER_GIT_COMMIT".into()]);
        assert!(!ignoring.allows("RENDER_GIT_COMMIT"));
        assert!(ignoring.allows("RENDER_GIT_COMMIT_2"));
    }
}
