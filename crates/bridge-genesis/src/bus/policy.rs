//! The publish gate (the seed's "Guardian"): which role may publish which topics.
//!
//! A [`Policy`] maps each [`Role`] to the topic patterns it may publish. The defaults:
//! `system` and `admiral` may publish anything, `operator` may publish `envsync.*`,
//! `deploy.>` and `genesis.intent`, `observer` nothing. In [`PolicyMode::Strict`] (what
//! `GENESIS_STRICT_POLICY=true` selects) a topic outside [`KNOWN_TOPICS`] is refused for
//! every role, so a typo cannot start a topic nobody listens to.
//!
//! The policy only decides; the bus records each refusal as a `genesis.blocked` event.

use std::fmt;
use std::str::FromStr;

use super::topic::{KNOWN_TOPICS, Topic, TopicPattern};

/// Who is publishing. Wire names are the lowercase variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admiral,
    Operator,
    Observer,
    /// Bridge itself (sync runs, webhooks, the gate).
    System,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admiral, Role::Operator, Role::Observer, Role::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admiral => "admiral",
            Role::Operator => "operator",
            Role::Observer => "observer",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admiral, operator, observer or system")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Whether topics outside [`KNOWN_TOPICS`] may be published at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyMode {
    /// Any well-formed topic the role is granted.
    #[default]
    Permissive,
    /// Only known topics (`GENESIS_STRICT_POLICY=true`).
    Strict,
}

/// Why the gate refused a publish. Its `Display` is the `reason` of `genesis.blocked`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("role {role} may not publish {topic}")]
    NotGranted { role: Role, topic: String },
    #[error("{topic} is not a known topic and the policy is strict")]
    UnknownTopic { topic: String },
}

/// Roles → the patterns they may publish, plus the [`PolicyMode`].
#[derive(Debug, Clone)]
pub struct Policy {
    mode: PolicyMode,
    grants: Vec<(Role, TopicPattern)>,
    known: Vec<TopicPattern>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(PolicyMode::Permissive)
    }
}

impl Policy {
    /// The default grants (see the module docs) in the given mode.
    pub fn new(mode: PolicyMode) -> Self {
        let mut policy = Self::empty(mode);
        for (role, pattern) in [
            (Role::System, ">"),
            (Role::Admiral, ">"),
            (Role::Operator, "envsync.*"),
            (Role::Operator, "deploy.>"),
            (Role::Operator, "genesis.intent"),
        ] {
            policy.grants.push((role, parse_builtin(pattern)));
        }
        policy
    }

    /// No grants at all; add them with [`Policy::grant`].
    pub fn empty(mode: PolicyMode) -> Self {
        Self {
            mode,
            grants: Vec::new(),
            known: KNOWN_TOPICS.iter().map(|p| parse_builtin(p)).collect(),
        }
    }

    /// Lets `role` publish topics matching `pattern` as well.
    pub fn grant(mut self, role: Role, pattern: TopicPattern) -> Self {
        self.grants.push((role, pattern));
        self
    }

    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// The patterns `role` may publish.
    pub fn grants(&self, role: Role) -> impl Iterator<Item = &TopicPattern> {
        self.grants
            .iter()
            .filter(move |(r, _)| *r == role)
            .map(|(_, p)| p)
    }

    pub fn is_known(&self, topic: &Topic) -> bool {
        self.known.iter().any(|p| p.matches(topic.as_str()))
    }

    pub fn check(&self, topic: &Topic, role: Role) -> Result<(), Refusal> {
        if self.mode == PolicyMode::Strict && !self.is_known(topic) {
            return Err(Refusal::UnknownTopic {
                topic: topic.to_string(),
            });
        }
        if self.grants(role).any(|p| p.matches(topic.as_str())) {
            Ok(())
        } else {
            Err(Refusal::NotGranted {
                role,
                topic: topic.to_string(),
            })
        }
    }
}

fn parse_builtin(pattern: &str) -> TopicPattern {
    // The built-in lists are constants checked by the tests below; a bad entry is a bug in
    // this file, not input.
    TopicPattern::parse(pattern).unwrap_or_else(|e| panic!("built-in pattern {pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    #[test]
    fn default_grants() {
        let policy = Policy::default();
        for role in [Role::System, Role::Admiral] {
            assert!(policy.check(&topic("anything.at.all"), role).is_ok());
        }
        let op = Role::Operator;
        assert!(policy.check(&topic("envsync.drift"), op).is_ok());
        assert!(policy.check(&topic("deploy.platform.start"), op).is_ok());
        assert!(policy.check(&topic("genesis.intent"), op).is_ok());
        assert_eq!(
            policy.check(&topic("genesis.heal"), op),
            Err(Refusal::NotGranted {
                role: op,
                topic: "genesis.heal".into()
            })
        );
        assert!(
            policy
                .check(&topic("envsync.drift"), Role::Observer)
                .is_err()
        );
    }

    #[test]
    fn strict_mode_refuses_unknown_topics_for_everyone() {
        let policy = Policy::new(PolicyMode::Strict);
        assert!(
            policy
                .check(&topic("envsync.drift"), Role::Operator)
                .is_ok()
        );
        assert!(policy.check(&topic("autosync.plan"), Role::System).is_ok());
        for t in ["envsync.typo", "autosync", "autosync.a.b"] {
            assert_eq!(
                policy.check(&topic(t), Role::System),
                Err(Refusal::UnknownTopic { topic: t.into() })
            );
        }
    }

    #[test]
    fn every_builtin_pattern_parses() {
        let policy = Policy::new(PolicyMode::Strict);
        assert_eq!(policy.known.len(), KNOWN_TOPICS.len());
        assert_eq!(policy.grants(Role::Operator).count(), 3);
        assert_eq!(policy.grants(Role::Observer).count(), 0);
    }

    #[test]
    fn roles_parse_from_their_wire_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
