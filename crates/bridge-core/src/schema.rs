//! The schema of an environment (the seeds' "Blueprint"): which keys must exist, what each
//! value must look like, how many keys there must be at least.
//!
//! A [`Schema`] is plain data (it deserializes from the `[schema]` table of `bridge.toml`);
//! [`Schema::compile`] validates it once (regexes compile, enums have values) into a
//! [`CompiledSchema`] whose [`CompiledSchema::check`] lists every [`Violation`]. Violations
//! name the key and the rule, never the value: a schema is checked against secrets too.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::envset::EnvSet;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The set must hold at least this many keys.
    #[serde(default)]
    pub min_keys: Option<usize>,
    /// Rules per key.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRule {
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub format: Option<Format>,
    /// For `format = "regex"`: the pattern the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For `format = "enum"`: the allowed values.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Free text shown with violations.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Url,
    Int,
    Bool,
    Port,
    Email,
    Regex,
    Enum,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Url => "url",
            Format::Int => "int",
            Format::Bool => "bool",
            Format::Port => "port",
            Format::Email => "email",
            Format::Regex => "regex",
            Format::Enum => "enum",
        })
    }
}

/// A schema that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema.keys.{key}: format \"regex\" needs `pattern`")]
    MissingPattern { key: String },
    #[error("schema.keys.{key}: `pattern` is not a valid regex: {message}")]
    BadPattern { key: String, message: String },
    #[error("schema.keys.{key}: format \"enum\" needs a non-empty `values` list")]
    MissingValues { key: String },
    #[error("schema.keys.{key}: `{field}` only applies to format \"{applies_to}\"")]
    StrayField {
        key: String,
        field: &'static str,
        applies_to: &'static str,
    },
}

enum Check {
    Url,
    Int,
    Bool,
    Port,
    Email,
    /// The anchored regex, and the pattern as the user wrote it (for messages).
    Regex(Regex, String),
    Enum(Vec<String>),
}

struct CompiledRule {
    required: bool,
    check: Option<Check>,
    description: Option<String>,
}

/// A validated schema, ready to check sets against.
pub struct CompiledSchema {
    min_keys: Option<usize>,
    rules: BTreeMap<String, CompiledRule>,
}

impl Schema {
    pub fn is_empty(&self) -> bool {
        self.min_keys.is_none() && self.keys.is_empty()
    }

    pub fn compile(&self) -> Result<CompiledSchema, SchemaError> {
        let mut rules = BTreeMap::new();
        for (key, rule) in &self.keys {
            let stray = |field, applies_to| SchemaError::StrayField {
                key: key.clone(),
                field,
                applies_to,
            };
            if rule.pattern.is_some() && rule.format != Some(Format::Regex) {
                return Err(stray("pattern", "regex"));
            }
            if rule.values.is_some() && rule.format != Some(Format::Enum) {
                return Err(stray("values", "enum"));
            }
            let check = match rule.format {
                None => None,
                Some(Format::Url) => Some(Check::Url),
                Some(Format::Int) => Some(Check::Int),
                Some(Format::Bool) => Some(Check::Bool),
                Some(Format::Port) => Some(Check::Port),
                Some(Format::Email) => Some(Check::Email),
                Some(Format::Regex) => {
                    let pattern = rule
                        .pattern
                        .as_deref()
                        .ok_or(SchemaError::MissingPattern { key: key.clone() })?;
                    // Anchored: a format describes the whole value.
                    let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                        SchemaError::BadPattern {
                            key: key.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    Some(Check::Regex(regex, pattern.to_string()))
                }
                Some(Format::Enum) => match &rule.values {
                    Some(values) if !values.is_empty() => Some(Check::Enum(values.clone())),
                    _ => return Err(SchemaError::MissingValues { key: key.clone() }),
                },
            };
            rules.insert(
                key.clone(),
                CompiledRule {
                    required: rule.required,
                    check,
                    description: rule.description.clone(),
                },
            );
        }
        Ok(CompiledSchema {
            min_keys: self.min_keys,
            rules,
        })
    }
}

/// One way a set fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The key concerned; `None` for set-wide rules such as `min_keys`.
    pub key: Option<String>,
    pub rule: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl CompiledSchema {
    pub fn check(&self, set: &EnvSet) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(min) = self.min_keys
            && set.len() < min
        {
            out.push(Violation {
                key: None,
                rule: "min_keys".into(),
                message: format!("has {} keys, the schema asks for at least {min}", set.len()),
            });
        }
        for (key, rule) in &self.rules {
            let hint = rule
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let Some(value) = set.get(key) else {
                if rule.required {
                    out.push(Violation {
                        key: Some(key.clone()),
                        rule: "required".into(),
                        message: format!("is required but missing{hint}"),
                    });
                }
                continue;
            };
            if let Some(check) = &rule.check
                && let Err(expected) = check.test(value.expose())
            {
                out.push(Violation {
                    key: Some(key.clone()),
                    rule: check.name().into(),
                    message: format!("value is not {expected}{hint}"),
                });
            }
        }
        out
    }
}

impl Check {
    fn name(&self) -> &'static str {
        match self {
            Check::Url => "url",
            Check::Int => "int",
            Check::Bool => "bool",
            Check::Port => "port",
            Check::Email => "email",
            Check::Regex(..) => "regex",
            Check::Enum(_) => "enum",
        }
    }

    /// `Err` says what was expected, in words that never quote the value.
    fn test(&self, value: &str) -> Result<(), String> {
        let ok = match self {
            Check::Url => is_url(value),
            Check::Int => value.parse::<i64>().is_ok(),
            Check::Bool => matches!(
                value.to_ascii_lowercase().as_str(),
                "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off"
            ),
            Check::Port => matches!(value.parse::<u32>(), Ok(1..=65535)),
            Check::Email => is_email(value),
            Check::Regex(re, _) => re.is_match(value),
            Check::Enum(values) => values.iter().any(|v| v == value),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Check::Url => "a URL (scheme://host…)".into(),
            Check::Int => "an integer".into(),
            Check::Bool => "a boolean (true/false, 1/0, yes/no, on/off)".into(),
            Check::Port => "a port number (1-65535)".into(),
            Check::Email => "an email address".into(),
            Check::Regex(_, pattern) => format!("a full match for /{pattern}/"),
            Check::Enum(values) => format!("one of {}", values.join(", ")),
        })
    }
}

fn is_url(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    scheme_ok && !host.is_empty() && !value.chars().any(char::is_whitespace)
}

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.contains('.')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(toml_like: &[(&str, KeyRule)], min_keys: Option<usize>) -> CompiledSchema {
        Schema {
            min_keys,
            keys: toml_like
                .iter()
                .map(|(k, r)| (k.to_string(), r.clone()))
                .collect(),
        }
        .compile()
        .expect("schema compiles")
    }

    fn rule(format: Format) -> KeyRule {
        KeyRule {
            format: Some(format),
            ..KeyRule::default()
        }
    }

    #[test]
    fn formats_accept_and_reject() {
        let cases: &[(Format, &[&str], &[&str])] = &[
            (
                Format::Url,
                &["https://a.io", "postgres://u:p@db:5432/x", "redis://h"],
                &["a.io", "https://", "http://a b", "://x"],
            ),
            (Format::Int, &["0", "-12", "42"], &["", "1.5", "x"]),
            (Format::Bool, &["true", "FALSE", "1", "off"], &["", "maybe"]),
            (
                Format::Port,
                &["1", "8080", "65535"],
                &["0", "65536", "-1", "http"],
            ),
            (
                Format::Email,
                &["a@b.io", "ops+x@corp.example"],
                &["a@b", "@b.io", "a b@c.io", "a@.io"],
            ),
        ];
        for (format, good, bad) in cases {
            let s = schema(&[("K", rule(*format))], None);
            for v in *good {
                let set: EnvSet = [("K", *v)].into_iter().collect();
                assert!(s.check(&set).is_empty(), "{format} should accept {v:?}");
            }
            for v in *bad {
                let set: EnvSet = [("K", *v)].into_iter().collect();
                assert_eq!(s.check(&set).len(), 1, "{format} should reject {v:?}");
            }
        }
    }

    #[test]
    fn regex_enum_required_and_min_keys() {
        let s = schema(
            &[
                (
                    "STRIPE_KEY",
                    KeyRule {
                        format: Some(Format::Regex),
                        pattern: Some("sk_(live|test)_[A-Za-z0-9]+".into()),
                        required: true,
                        ..KeyRule::default()
                    },
                ),
                (
                    "LOG_LEVEL",
                    KeyRule {
                        format: Some(Format::Enum),
                        values: Some(vec!["debug".into(), "info".into()]),
                        ..KeyRule::default()
                    },
                ),
                (
                    "DATABASE_URL",
                    KeyRule {
                        required: true,
                        description: Some("the primary database".into()),
                        ..KeyRule::default()
                    },
                ),
            ],
            Some(3),
        );
        let set: EnvSet = [("STRIPE_KEY", "sk_live_abc x"), ("LOG_LEVEL", "trace")]
            .into_iter()
            .collect();
        let v = s.check(&set);
        let rules: Vec<_> = v.iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(rules, ["min_keys", "required", "enum", "regex"]);
        assert_eq!(
            v[1].to_string(),
            "DATABASE_URL: is required but missing (the primary database)"
        );
        // Never the value itself.
        assert!(v.iter().all(|v| !v.message.contains("sk_live_abc")));
        assert!(!v.iter().any(|v| v.message.contains("trace")));
    }

    #[test]
    fn bad_schemas_are_refused_with_the_key() {
        let bad = |rule: KeyRule| {
            Schema {
                min_keys: None,
                keys: [("K".to_string(), rule)].into_iter().collect(),
            }
            .compile()
            .err()
            .map(|e| e.to_string())
        };
        assert!(bad(rule(Format::Regex)).is_some_and(|e| e.contains("needs `pattern`")));
        assert!(bad(rule(Format::Enum)).is_some_and(|e| e.contains("schema.keys.K")));
        let broken = KeyRule {
            format: Some(Format::Regex),
            pattern: Some("(".into()),
            ..KeyRule::default()
        };
        assert!(bad(broken).is_some_and(|e| e.contains("not a valid regex")));
        let stray = KeyRule {
            format: Some(Format::Int),
            values: Some(vec!["a".into()]),
            ..KeyRule::default()
        };
        assert!(bad(stray).is_some_and(|e| e.contains("only applies")));
    }
}
