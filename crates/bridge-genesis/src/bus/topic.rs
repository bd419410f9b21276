//! Topic names and subscription patterns.
//!
//! A topic is one or more dot-separated segments of `[a-z0-9_]`: `envsync.drift`,
//! `deploy.platform.start`, `config_update`. Patterns follow NATS subjects, so that a
//! JetStream backend can hand them to the server unchanged (as `genesis.<pattern>`):
//!
//! - a literal segment matches itself;
//! - `*` matches exactly one segment (`envsync.*` matches `envsync.drift`, not
//!   `envsync.drift.late` and not `envsync`);
//! - `>` as the last segment matches one or more trailing segments (`deploy.>` matches
//!   `deploy.render` and `deploy.platform.start`, not `deploy`); `>` alone matches every topic.

use std::fmt;
use std::str::FromStr;

/// Longest accepted topic or pattern, in bytes. It bounds what a refused publish can put into
/// a `genesis.blocked` event, and stays far below NATS' subject limits.
pub const MAX_TOPIC_LEN: usize = 255;

/// The topics Bridge defines: the catalogue of events its parts and its clients exchange
/// (`autosync.*` admits that whole family). Strict policy refuses any other.
pub const KNOWN_TOPICS: &[&str] = &[
    "envsync.init",
    "envsync.commit",
    "envsync.drift",
    "envsync.complete",
    "envsync.error",
    "deploy.netlify",
    "deploy.render",
    "deploy.github",
    "deploy.platform.start",
    "deploy.platform.success",
    "deploy.platform.failure",
    "genesis.intent",
    "genesis.heal",
    "genesis.blocked",
    "config_update",
    "autosync.*",
    "vault.read",
    "webhook.rejected",
];

/// Where the gate records its refusals.
pub const BLOCKED_TOPIC: &str = "genesis.blocked";

/// Why a topic or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is {len} bytes long; the limit is {MAX_TOPIC_LEN}")]
    TooLong { len: usize },
    #[error(
        "topic segment {index} ({segment:?}) must be one or more of a-z, 0-9 and _ \
         (topics look like `envsync.drift`)"
    )]
    BadSegment { index: usize, segment: String },
    #[error("pattern segment {index} is `>`, which may only be the last segment")]
    TailNotLast { index: usize },
}

/// A validated topic name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(String);

impl Topic {
    pub fn new(name: &str) -> Result<Self, TopicError> {
        check_length(name)?;
        for (index, segment) in name.split('.').enumerate() {
            if !is_literal_segment(segment) {
                return Err(bad_segment(index, segment));
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// `genesis.blocked`, where the gate records refusals.
    pub fn blocked() -> Self {
        Self(BLOCKED_TOPIC.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `>`: one or more trailing segments.
    Tail,
}

/// A validated subscription pattern (NATS subject syntax, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    text: String,
    segments: Vec<Segment>,
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_length(text)?;
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.into_iter().enumerate() {
            segments.push(match part {
                "*" => Segment::One,
                ">" if index == last => Segment::Tail,
                ">" => return Err(TopicError::TailNotLast { index }),
                literal if is_literal_segment(literal) => Segment::Literal(literal.to_owned()),
                other => return Err(bad_segment(index, other)),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern that matches every topic (`>`).
    pub fn all() -> Self {
        Self {
            text: ">".to_owned(),
            segments: vec![Segment::Tail],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Tail, Some(_)) => return true,
                (Segment::One, Some(_)) => {}
                (Segment::Literal(want), Some(got)) => {
                    if want != got {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// The topic itself when the pattern has no wildcard: backends look it up by equality.
    pub fn as_literal(&self) -> Option<&str> {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
            .then_some(self.text.as_str())
    }

    /// The literal segments before the first wildcard, with their trailing dot
    /// (`deploy.platform.` for `deploy.platform.*`), or `""` when the pattern starts with a
    /// wildcard. Every matching topic starts with it, so backends can narrow a scan to a
    /// range of an index and check [`TopicPattern::matches`] on what remains.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => {
                    prefix.push_str(s);
                    prefix.push('.');
                }
                Segment::One | Segment::Tail => break,
            }
        }
        prefix
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for TopicPattern {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<&Topic> for TopicPattern {
    fn from(topic: &Topic) -> Self {
        Self {
            text: topic.0.clone(),
            segments: topic
                .0
                .split('.')
                .map(|s| Segment::Literal(s.to_owned()))
                .collect(),
        }
    }
}

fn check_length(text: &str) -> Result<(), TopicError> {
    match text.len() {
        0 => Err(TopicError::Empty),
        len if len > MAX_TOPIC_LEN => Err(TopicError::TooLong { len }),
        _ => Ok(()),
    }
}

fn is_literal_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn bad_segment(index: usize, segment: &str) -> TopicError {
    // The segment is echoed to help the caller; it is bounded by MAX_TOPIC_LEN.
    TopicError::BadSegment {
        index,
        segment: segment.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_grammar() {
        for ok in [
            "envsync.drift",
            "config_update",
            "deploy.platform.start",
            "a1.b_2",
        ] {
            assert!(Topic::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Envsync.drift",
            "envsync..drift",
            ".x",
            "x.",
            "a-b",
            "a.*",
            "a b",
        ] {
            assert!(Topic::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Topic::new(BLOCKED_TOPIC), Ok(Topic::blocked()));
        assert_eq!(
            Topic::new(&"a".repeat(256)),
            Err(TopicError::TooLong { len: 256 })
        );
    }

    #[test]
    fn patterns_match_like_nats_subjects() {
        let cases = [
            ("envsync.*", "envsync.drift", true),
            ("envsync.*", "envsync", false),
            ("envsync.*", "envsync.drift.late", false),
            ("deploy.>", "deploy.render", true),
            ("deploy.>", "deploy.platform.start", true),
            ("deploy.>", "deploy", false),
            (">", "config_update", true),
            ("*.drift", "envsync.drift", true),
            ("*.drift", "envsync.commit", false),
            ("deploy.*.start", "deploy.platform.start", true),
            ("genesis.intent", "genesis.intent", true),
            ("genesis.intent", "genesis.intents", false),
        ];
        for (pattern, topic, want) in cases {
            let p = TopicPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(topic), want, "{pattern} vs {topic}");
        }
        assert_eq!(
            TopicPattern::parse("a.>.b"),
            Err(TopicError::TailNotLast { index: 1 })
        );
        assert!(TopicPattern::parse("a.**").is_err());
    }

    #[test]
    fn prefixes_and_literals() {
        let p = TopicPattern::parse("deploy.platform.*").unwrap();
        assert_eq!(p.literal_prefix(), "deploy.platform.");
        assert_eq!(p.as_literal(), None);
        assert_eq!(TopicPattern::parse("*.x").unwrap().literal_prefix(), "");
        let literal = TopicPattern::parse("envsync.drift").unwrap();
        assert_eq!(literal.as_literal(), Some("envsync.drift"));
    }
}
