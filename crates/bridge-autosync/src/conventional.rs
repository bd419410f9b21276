//! Conventional Commits 1.0.0: `type(scope)!: description`, an optional body, and footers,
//! of which `BREAKING CHANGE: …` (or `BREAKING-CHANGE: …`) marks a breaking change.
//!
//! Choices the specification leaves open: the type is compared case-insensitively (it says
//! types "MUST NOT be treated as case sensitive") and reported lower-cased; the footer
//! token `BREAKING CHANGE` must be upper case, as the specification requires; a footer is
//! any line after the first blank line, so a trailer block after a long body is found.
//! Deviations such as `feat!(scope):` or a missing space after the colon are not
//! conventional, and are reported as such rather than guessed at.

use serde::Serialize;

/// A parsed commit message header (and its breaking-change marker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conventional {
    /// The type, lower-cased (`feat`, `fix`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The scope inside the parentheses, if any.
    pub scope: Option<String>,
    /// `!` before the colon, or a `BREAKING CHANGE:` footer.
    pub breaking: bool,
    /// The description after `: `.
    pub description: String,
}

/// Why a message is not a Conventional Commit, for the skip report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotConventional {
    /// The message is empty.
    Empty,
    /// The header has no `type: ` prefix in the required shape.
    Header(&'static str),
}

impl std::fmt::Display for NotConventional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("the message is empty"),
            Self::Header(why) => f.write_str(why),
        }
    }
}

/// Parses a full commit message (header, body, footers).
pub fn parse(message: &str) -> Result<Conventional, NotConventional> {
    let message = message.trim_start_matches(['\n', '\r']);
    let mut lines = message.lines();
    let header = lines.next().ok_or(NotConventional::Empty)?.trim_end();
    if header.is_empty() {
        return Err(NotConventional::Empty);
    }
    let mut conventional = parse_header(header)?;
    // Footers come after a blank line; the first blank line ends the header block.
    let mut after_blank = false;
    for line in lines {
        if line.trim().is_empty() {
            after_blank = true;
            continue;
        }
        if after_blank && is_breaking_footer(line) {
            conventional.breaking = true;
        }
    }
    Ok(conventional)
}

fn is_breaking_footer(line: &str) -> bool {
    ["BREAKING CHANGE", "BREAKING-CHANGE"].iter().any(|token| {
        line.strip_prefix(token)
            .is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(" #"))
    })
}

/// `type(scope)!: description`.
pub fn parse_header(header: &str) -> Result<Conventional, NotConventional> {
    let bytes = header.as_bytes();
    let type_end = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .unwrap_or(bytes.len());
    if type_end == 0 || !bytes[0].is_ascii_alphabetic() {
        return Err(NotConventional::Header(
            "the header does not start with a type (e.g. `feat: …`)",
        ));
    }
    let kind = header[..type_end].to_ascii_lowercase();
    let mut rest = &header[type_end..];
    let mut scope = None;
    if let Some(after_paren) = rest.strip_prefix('(') {
        let close = after_paren.find(')').ok_or(NotConventional::Header(
            "the scope's `(` is not closed by `)`",
        ))?;
        let inner = &after_paren[..close];
        if inner.trim().is_empty() || inner.contains('(') {
            return Err(NotConventional::Header(
                "the scope must be a non-empty noun inside `(…)`",
            ));
        }
        scope = Some(inner.to_owned());
        rest = &after_paren[close + 1..];
    }
    let mut breaking = false;
    if let Some(r) = rest.strip_prefix('!') {
        breaking = true;
        rest = r;
    }
    let description = rest.strip_prefix(": ").ok_or(NotConventional::Header(
        "the type (and scope) must be followed by `: ` and a description",
    ))?;
    let description = description.trim();
    if description.is_empty() {
        return Err(NotConventional::Header("the description is empty"));
    }
    Ok(Conventional {
        kind,
        scope,
        breaking,
        description: description.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let c = parse("feat(api)!: drop v1").unwrap();
        assert_eq!(c.kind, "feat");
        assert_eq!(c.scope.as_deref(), Some("api"));
        assert!(c.breaking);
        assert_eq!(c.description, "drop v1");
        let c = parse("Fix: typo").unwrap();
        assert_eq!(c.kind, "fix");
        assert!(!c.breaking);
        assert!(parse("feat:missing space").is_err());
        assert!(parse("feat!(api): wrong order").is_err());
        assert!(parse("feat(): empty scope").is_err());
        assert!(parse("Merge branch 'x'").is_err());
        assert!(parse("Revert \"feat: x\"").is_err());
        assert!(parse("").is_err());
        assert!(parse("feat: ").is_err());
        assert!(parse("1feat: x").is_err());
    }

    #[test]
    fn breaking_footers() {
        assert!(
            parse("feat: x\n\nbody\n\nBREAKING CHANGE: api gone")
                .unwrap()
                .breaking
        );
        assert!(
            parse("feat: x\n\nBREAKING-CHANGE: api gone")
                .unwrap()
                .breaking
        );
        // Lower case is not the footer token, and the header line is not a footer.
        assert!(!parse("feat: x\n\nbreaking change: no").unwrap().breaking);
        assert!(!parse("feat: BREAKING CHANGE: in header").unwrap().breaking);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(message in "\\PC{0,80}") {
                let _ = parse(&message);
            }

            #[test]
            fn well_formed_headers_round_trip(
                kind in "[a-zA-Z][a-zA-Z0-9]{0,8}",
                scope in proptest::option::of("[a-z0-9-]{1,8}"),
                bang in any::<bool>(),
                description in "[a-zA-Z0-9][a-zA-Z0-9 ]{0,20}",
                footer in any::<bool>(),
            ) {
                let scope_part = scope.as_ref().map(|s| format!("({s})")).unwrap_or_default();
                let mut message = format!("{kind}{scope_part}{}: {description}", if bang { "!" } else { "" });
                if footer {
                    message.push_str("\n\nSome body.\n\nBREAKING CHANGE: it changed");
                }
                let c = parse(&message).unwrap();
                prop_assert_eq!(c.kind, kind.to_ascii_lowercase());
                prop_assert_eq!(c.scope, scope);
                prop_assert_eq!(c.breaking, bang || footer);
                prop_assert_eq!(c.description, description.trim());
            }

            #[test]
            fn without_colon_space_is_never_conventional(kind in "[a-z]{1,8}", rest in "[a-z ]{0,20}") {
                let message = format!("{kind}{rest}");
                prop_assert!(parse(&message).is_err());
            }
        }
    }
}
