//! Which commits are carried: the pure decision for one commit, from its message, its
//! touched paths and what has been carried before. A commit that touches one denied path
//! is skipped whole (fail closed), and the report names the path and the pattern.

use std::collections::HashSet;

use serde::Serialize;

use crate::config::FilterConfig;
use crate::conventional;
use crate::git::LogCommit;

/// Why a commit is not carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A merge commit (its changes arrive through its parents).
    MergeCommit,
    /// The message is not a Conventional Commit.
    NotConventional,
    /// The type is not in `filters.types`.
    TypeNotAllowed,
    /// A touched path matches `filters.deny`.
    DeniedPath,
    /// A touched path matches nothing in `filters.allow`.
    PathNotAllowed,
    /// It changes no file.
    Empty,
    /// A commit in the target already carries it (an `Auto-Sync-Commit:` trailer).
    AlreadyCarried,
}

impl SkipReason {
    /// The snake_case name used in JSON and the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MergeCommit => "merge_commit",
            Self::NotConventional => "not_conventional",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::DeniedPath => "denied_path",
            Self::PathNotAllowed => "path_not_allowed",
            Self::Empty => "empty",
            Self::AlreadyCarried => "already_carried",
        }
    }
}

/// A commit as the plan shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedCommit {
    /// Full commit id in the source.
    pub sha: String,
    /// The first line of the message.
    pub subject: String,
    /// Conventional Commit type, lower-cased, if the message has one.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Scope, if any.
    pub scope: Option<String>,
    /// `!` or a `BREAKING CHANGE:` footer.
    pub breaking: bool,
    /// Author name.
    pub author: String,
    /// Author date (ISO 8601).
    pub date: String,
    /// Paths touched (both sides of a rename).
    pub files: Vec<String>,
    /// Why it is skipped (absent for selected commits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// The reason in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The path that denied it (`denied_path`, `path_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The deny pattern that matched (`denied_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The full message (used for pull-request bodies, not serialised).
    #[serde(skip)]
    pub message: String,
}

impl PlannedCommit {
    /// The first 12 characters of the id.
    pub fn short(&self) -> &str {
        &self.sha[..self.sha.len().min(12)]
    }
}

/// Decides one commit. Returns it with `reason` unset when selected.
pub(crate) fn classify(
    commit: LogCommit,
    filters: &FilterConfig,
    carried: &HashSet<String>,
) -> PlannedCommit {
    let subject = commit.message.lines().next().unwrap_or_default().to_owned();
    let parsed = conventional::parse(&commit.message);
    let (kind, scope, breaking) = match &parsed {
        Ok(c) => (Some(c.kind.clone()), c.scope.clone(), c.breaking),
        Err(_) => (None, None, false),
    };
    let mut planned = PlannedCommit {
        sha: commit.sha,
        subject,
        kind,
        scope,
        breaking,
        author: commit.author,
        date: commit.date,
        files: commit.files,
        reason: None,
        detail: None,
        path: None,
        pattern: None,
        message: commit.message,
    };
    let mut skip = |reason: SkipReason, detail: String| {
        planned.reason = Some(reason);
        planned.detail = Some(detail);
    };
    if carried.contains(&planned.sha) {
        skip(
            SkipReason::AlreadyCarried,
            "the target already has it (Auto-Sync-Commit trailer)".into(),
        );
        return planned;
    }
    if commit.parents > 1 {
        skip(
            SkipReason::MergeCommit,
            "merge commits are not carried; their changes come with their parents".into(),
        );
        return planned;
    }
    match &parsed {
        Err(e) => {
            skip(
                SkipReason::NotConventional,
                format!("not a Conventional Commit: {e}"),
            );
            return planned;
        }
        Ok(c) if !filters.types.contains(&c.kind) => {
            let detail = format!(
                "type `{}` is not in filters.types ({})",
                c.kind,
                filters.types.join(", ")
            );
            skip(SkipReason::TypeNotAllowed, detail);
            return planned;
        }
        Ok(_) => {}
    }
    // Deny is checked over every path before allow, so the report names the deny match.
    let denied = planned.files.iter().find_map(|f| {
        filters
            .deny
            .first_match(f)
            .map(|g| (f.clone(), g.as_str().to_owned()))
    });
    if let Some((path, pattern)) = denied {
        planned.reason = Some(SkipReason::DeniedPath);
        planned.detail = Some(format!("touches `{path}`, denied by `{pattern}`"));
        planned.path = Some(path);
        planned.pattern = Some(pattern);
        return planned;
    }
    if let Some(path) = planned
        .files
        .iter()
        .find(|f| !filters.allow.is_match(f))
        .cloned()
    {
        planned.reason = Some(SkipReason::PathNotAllowed);
        planned.detail = Some(format!(
            "touches `{path}`, which no filters.allow pattern matches"
        ));
        planned.path = Some(path);
        return planned;
    }
    if planned.files.is_empty() {
        planned.reason = Some(SkipReason::Empty);
        planned.detail = Some("changes no file".into());
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::GlobSet;

    fn filters() -> FilterConfig {
        FilterConfig {
            types: vec!["feat".into(), "fix".into()],
            allow: GlobSet::new(&["**"]),
            deny: GlobSet::new(&[".env*", "secrets/**"]),
        }
    }

    fn commit(message: &str, files: &[&str]) -> LogCommit {
        LogCommit {
            sha: "a".repeat(40),
            parents: 1,
            author: "A".into(),
            date: "d".into(),
            message: message.into(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn decisions() {
        let none = HashSet::new();
        let f = filters();
        assert_eq!(
            classify(commit("feat: a", &["src/a.rs"]), &f, &none).reason,
            None
        );
        assert_eq!(
            classify(commit("chore: a", &["src/a.rs"]), &f, &none).reason,
            Some(SkipReason::TypeNotAllowed)
        );
        assert_eq!(
            classify(commit("update stuff", &["src/a.rs"]), &f, &none).reason,
            Some(SkipReason::NotConventional)
        );
        let denied = classify(commit("fix: a", &["src/a.rs", "web/.env.local"]), &f, &none);
        assert_eq!(denied.reason, Some(SkipReason::DeniedPath));
        assert_eq!(denied.path.as_deref(), Some("web/.env.local"));
        assert_eq!(denied.pattern.as_deref(), Some(".env*"));
        let mut merge = commit("feat: merge", &[]);
        merge.parents = 2;
        assert_eq!(
            classify(merge, &f, &none).reason,
            Some(SkipReason::MergeCommit)
        );
        let carried: HashSet<String> = ["a".repeat(40)].into();
        assert_eq!(
            classify(commit("feat: a", &["x"]), &f, &carried).reason,
            Some(SkipReason::AlreadyCarried)
        );
        let mut narrow = filters();
        narrow.allow = GlobSet::new(&["src/**"]);
        let out = classify(commit("feat: a", &["src/a", "docs/b"]), &narrow, &none);
        assert_eq!(out.reason, Some(SkipReason::PathNotAllowed));
        assert_eq!(out.path.as_deref(), Some("docs/b"));
    }
}
