//! A small path glob matcher with gitignore's anchoring rules, enough for allow and deny
//! lists (and small enough that we need not pull `globset` and its regex build):
//!
//! - `*` matches any run of characters except `/`; `?` one character except `/`;
//! - `**` matches anything, `/` included; `**/` at a segment start also matches nothing, so
//!   `**/secrets/**` matches `secrets/a` as well as `apps/x/secrets/a`;
//! - `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` match one character (never `/`) in or out of
//!   the set; an unclosed `[` is a literal `[`;
//! - a pattern without `/` matches the file name at any depth (`*.pem` matches
//!   `certs/prod.pem`); a pattern with a `/` is anchored at the repository root
//!   (`infra/**` does not match `apps/infra/x`); a leading `/` only anchors.

/// One compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    basename_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` not followed by `/`
    DoubleStar,
    /// `**/`: empty, or anything ending in `/`
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern, so this cannot fail; an empty
    /// pattern matches nothing.
    pub fn new(pattern: &str) -> Self {
        let trimmed = pattern.strip_prefix('/').unwrap_or(pattern);
        let basename_only = !pattern.contains('/');
        Self {
            source: pattern.to_owned(),
            tokens: compile(trimmed),
            basename_only,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (relative, `/`-separated, as git prints it) matches.
    pub fn matches(&self, path: &str) -> bool {
        if self.source.is_empty() {
            return false;
        }
        if self.basename_only {
            let name = path.rsplit('/').next().unwrap_or(path);
            return match_tokens(&self.tokens, name);
        }
        match_tokens(&self.tokens, path)
    }
}

/// A list of globs; a path matches the set when any of them matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self {
            globs: patterns.iter().map(|p| Glob::new(p.as_ref())).collect(),
        }
    }

    /// The first pattern that matches `path`.
    pub fn first_match(&self, path: &str) -> Option<&Glob> {
        self.globs.iter().find(|g| g.matches(path))
    }

    /// Whether any pattern matches `path`.
    pub fn is_match(&self, path: &str) -> bool {
        self.first_match(path).is_some()
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_segment_start = i == 0 || chars[i - 1] == '/';
                // Runs of three or more stars behave like two.
                let mut j = i + 2;
                while chars.get(j) == Some(&'*') {
                    j += 1;
                }
                if at_segment_start && chars.get(j) == Some(&'/') {
                    tokens.push(Token::Dirs);
                    i = j + 1;
                } else {
                    tokens.push(Token::DoubleStar);
                    i = j;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            '?' => {
                tokens.push(Token::One);
                i += 1;
            }
            '[' => match parse_class(&chars[i + 1..]) {
                Some((token, used)) => {
                    tokens.push(token);
                    i += 1 + used;
                }
                None => {
                    tokens.push(Token::Literal('['));
                    i += 1;
                }
            },
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    tokens
}

/// Parses the inside of `[...]` (after the `[`); returns the token and the characters used,
/// the closing `]` included, or `None` when the class is not closed.
fn parse_class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        // A `]` right after the opening (or the negation) is a member, as in fnmatch.
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            let end = chars[i + 2];
            ranges.push((c.min(end), c.max(end)));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    None
}

/// Dynamic programming over (token, character) positions: linear in the product of the
/// two lengths, never exponential, whatever the number of stars.
fn match_tokens(tokens: &[Token], path: &str) -> bool {
    let text: Vec<char> = path.chars().collect();
    let n = text.len();
    // `next[j]`: tokens[i+1..] match text[j..]; `cur[j]`: tokens[i..] match text[j..].
    let mut next = vec![false; n + 1];
    next[n] = true;
    let mut cur = vec![false; n + 1];
    for token in tokens.iter().rev() {
        for j in (0..=n).rev() {
            let c = text.get(j).copied();
            cur[j] = match token {
                Token::Literal(l) => c == Some(*l) && next[j + 1],
                Token::One => c.is_some_and(|c| c != '/') && next[j + 1],
                Token::Class { negated, ranges } => {
                    c.is_some_and(|c| {
                        c != '/' && (ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated)
                    }) && next[j + 1]
                }
                // Either match nothing, or eat one (non-slash) character and stay.
                Token::Star => next[j] || (c.is_some_and(|c| c != '/') && cur[j + 1]),
                Token::DoubleStar => next[j] || (c.is_some() && cur[j + 1]),
                // Nothing, or up to and including some later `/`.
                Token::Dirs => {
                    next[j]
                        || text[j.min(n)..]
                            .iter()
                            .enumerate()
                            .any(|(k, &ch)| ch == '/' && next[j + k + 1])
                }
            };
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).matches(s)
    }

    #[test]
    fn basename_patterns_match_at_any_depth() {
        assert!(m(".env*", ".env"));
        assert!(m(".env*", "apps/web/.env.local"));
        assert!(!m(".env*", "apps/env.ts"));
        assert!(m("*.pem", "certs/prod.pem"));
        assert!(m("*.key", "a.key"));
        assert!(!m("*.key", "a.keys"));
    }

    #[test]
    fn slash_patterns_are_anchored() {
        assert!(m("infra/**", "infra/main.tf"));
        assert!(m("infra/**", "infra/a/b/c.tf"));
        assert!(!m("infra/**", "apps/infra/x"));
        assert!(!m("infra/**", "infrastructure/x"));
        assert!(m("/docs/*.md", "docs/a.md"));
        assert!(!m("docs/*.md", "docs/a/b.md"));
        assert!(m(".github/workflows/**", ".github/workflows/ci.yml"));
    }

    #[test]
    fn double_star_slash_matches_zero_or_more_directories() {
        assert!(m("**/secrets/**", "secrets/a"));
        assert!(m("**/secrets/**", "x/y/secrets/a/b"));
        assert!(!m("**/secrets/**", "x/notsecrets/a"));
        assert!(m("**/migrations/**", "db/migrations/001.sql"));
        assert!(m("src/**/mod.rs", "src/mod.rs"));
        assert!(m("src/**/mod.rs", "src/a/b/mod.rs"));
        assert!(m("**", "anything/at/all"));
        assert!(m("a/**b", "a/x/yb"));
    }

    #[test]
    fn classes_and_question_marks() {
        assert!(m("file[0-9].txt", "file7.txt"));
        assert!(!m("file[!0-9].txt", "file7.txt"));
        assert!(m("file[^0-9].txt", "filex.txt"));
        assert!(m("[]]", "]"));
        assert!(m("a[", "a["));
        assert!(m("?.rs", "a.rs"));
        assert!(!m("x/?", "x//"));
    }

    #[test]
    fn empty_pattern_matches_nothing() {
        assert!(!m("", ""));
        assert!(!m("", "a"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The reference: the same pattern as an anchored regex (no classes).
        fn reference(pattern: &str) -> regex::Regex {
            let chars: Vec<char> = pattern.chars().collect();
            let mut re = String::from("^");
            let mut i = 0;
            while i < chars.len() {
                if chars[i] == '*' && chars.get(i + 1) == Some(&'*') {
                    let mut j = i + 2;
                    while chars.get(j) == Some(&'*') {
                        j += 1;
                    }
                    if (i == 0 || chars[i - 1] == '/') && chars.get(j) == Some(&'/') {
                        re.push_str("(?:.*/)?");
                        i = j + 1;
                    } else {
                        re.push_str(".*");
                        i = j;
                    }
                } else if chars[i] == '*' {
                    re.push_str("[^/]*");
                    i += 1;
                } else if chars[i] == '?' {
                    re.push_str("[^/]");
                    i += 1;
                } else {
                    re.push_str(&regex::escape(&chars[i].to_string()));
                    i += 1;
                }
            }
            re.push('$');
            regex::Regex::new(&re).unwrap()
        }

        proptest! {
            #[test]
            fn never_panics(pattern in "\\PC{0,12}", path in "\\PC{0,24}") {
                let _ = Glob::new(&pattern).matches(&path);
            }

            #[test]
            fn agrees_with_the_regex_reference(
                pattern in "[ab/*?]{1,10}",
                path in "[ab/]{0,12}",
            ) {
                // Anchored form only: a pattern with a `/` is compared against the whole path.
                prop_assume!(pattern.contains('/') && !pattern.starts_with('/'));
                let expected = reference(&pattern).is_match(&path);
                prop_assert_eq!(Glob::new(&pattern).matches(&path), expected, "pattern {} path {}", pattern, path);
            }

            #[test]
            fn literals_match_themselves_and_double_star_matches_all(path in "[a-z]{1,5}(/[a-z]{1,5}){0,3}") {
                prop_assert!(Glob::new(&path).matches(&path));
                prop_assert!(Glob::new("**").matches(&path));
                let name = path.rsplit('/').next().unwrap();
                let anywhere = format!("**/{name}");
                prop_assert!(Glob::new(&anywhere).matches(&path));
            }

            #[test]
            fn star_never_crosses_a_slash(dir in "[a-z]{1,5}", rest in "[a-z]{1,5}/[a-z]{1,5}") {
                let pattern = format!("{dir}/*");
                let path = format!("{dir}/{rest}");
                prop_assert!(!Glob::new(&pattern).matches(&path));
            }
        }
    }
}
