//! Platform specs: how a user names a place on the command line or in `bridge.toml`.
//!
//! Grammar: `[LABEL=]NAME[:ARG]`. For `local` the argument is a path (`local` alone means
//! `./.env`); for the others it is `key=value` options separated by `:` (a `:` followed by
//! something other than `key=` belongs to the value, so Netlify's `context=branch:staging`
//! works). The label names the place in reports (`missing_in_<label>`); it defaults to the
//! platform's name, and for several local files to the file's name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlatformKind {
    Local,
    Process,
    Render,
    Netlify,
    Github,
}

impl PlatformKind {
    pub const ALL: [PlatformKind; 5] = [
        PlatformKind::Local,
        PlatformKind::Process,
        PlatformKind::Render,
        PlatformKind::Netlify,
        PlatformKind::Github,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Local => "local",
            PlatformKind::Process => "process",
            PlatformKind::Render => "render",
            PlatformKind::Netlify => "netlify",
            PlatformKind::Github => "github",
        }
    }

    /// The option names each platform takes.
    fn options(self) -> &'static [&'static str] {
        match self {
            PlatformKind::Local | PlatformKind::Process => &[],
            PlatformKind::Render => &["service"],
            PlatformKind::Netlify => &["context", "site"],
            PlatformKind::Github => &["environment", "repository", "variables"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub kind: PlatformKind,
    /// The label given with `LABEL=`, if any; see [`assign_labels`] for the default.
    pub label: Option<String>,
    /// For `local`: the file.
    pub path: Option<PathBuf>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown platform `{name}` in `{spec}`{}; known platforms: local[:PATH], process, render, netlify, github",
        did_you_mean(*suggestion)
    )]
    UnknownPlatform {
        spec: String,
        name: String,
        /// The known platform the name is a typo of, if one is close.
        suggestion: Option<&'static str>,
    },
    #[error("`{spec}`: {name} takes no options")]
    NoOptions { spec: String, name: &'static str },
    #[error(
        "`{spec}`: unknown option `{option}` for {name}{} (it takes: {known})",
        did_you_mean(*suggestion)
    )]
    UnknownOption {
        spec: String,
        name: &'static str,
        option: String,
        known: String,
        suggestion: Option<&'static str>,
    },
    #[error("`{spec}`: expected `key=value` options after `{name}:`")]
    BadOption { spec: String, name: &'static str },
    /// `environment=$ENV` with `ENV` unset would otherwise quietly mean "no environment".
    #[error(
        "`{spec}`: option `{option}` of {name} is empty (a variable that was not set?); \
         give it a value, or leave the option out"
    )]
    EmptyOption {
        spec: String,
        name: &'static str,
        option: String,
    },
    #[error("`{spec}`: a label is letters, digits and `_` (it becomes part of report field names)")]
    BadLabel { spec: String },
    #[error("an empty platform spec; expected e.g. local:.env or render")]
    Empty,
    #[error("two places are labelled `{label}`; give them distinct labels with LABEL=SPEC")]
    DuplicateLabel { label: String },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean `{s}`?"))
}

impl PlatformSpec {
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: PlatformKind::Local,
            label: None,
            path: Some(path.into()),
            options: BTreeMap::new(),
        }
    }

    /// Parses a comma-separated list (`--target a,b`).
    pub fn parse_list(text: &str) -> Result<Vec<PlatformSpec>, SpecError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// The label reports use when none was given and the spec is the only one of its kind.
    fn default_label(&self) -> String {
        self.kind.name().to_string()
    }

    /// The label derived from a local file's name, for when several local files take part.
    fn file_label(&self) -> Option<String> {
        let name = self.path.as_deref()?.file_name()?.to_string_lossy();
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let label = label.trim_matches('_').to_string();
        (!label.is_empty()).then_some(label)
    }
}

fn valid_label(label: &str) -> bool {
    !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FromStr for PlatformSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpecError::Empty);
        }
        let head_end = text.find(':').unwrap_or(text.len());
        let (label, rest) = match text[..head_end].split_once('=') {
            Some((label, _)) => {
                if !valid_label(label) {
                    return Err(SpecError::BadLabel { spec: text.into() });
                }
                (Some(label.to_string()), &text[label.len() + 1..])
            }
            None => (None, text),
        };
        let (name, arg) = match rest.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (rest, None),
        };
        let kind = PlatformKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| SpecError::UnknownPlatform {
                spec: text.into(),
                name: name.into(),
                suggestion: bridge_core::suggest::closest(
                    name,
                    PlatformKind::ALL.map(PlatformKind::name),
                ),
            })?;
        let mut spec = PlatformSpec {
            kind,
            label,
            path: None,
            options: BTreeMap::new(),
        };
        match (kind, arg) {
            (PlatformKind::Local, arg) => {
                let path = arg.filter(|a| !a.is_empty()).unwrap_or(".env");
                spec.path = Some(PathBuf::from(path));
            }
            (_, None) => {}
            (_, Some(arg)) => {
                if kind.options().is_empty() {
                    return Err(SpecError::NoOptions {
                        spec: text.into(),
                        name: kind.name(),
                    });
                }
                for option in split_options(arg) {
                    let (key, value) = option.split_once('=').ok_or(SpecError::BadOption {
                        spec: text.into(),
                        name: kind.name(),
                    })?;
                    if !kind.options().contains(&key) {
                        return Err(SpecError::UnknownOption {
                            spec: text.into(),
                            name: kind.name(),
                            option: key.into(),
                            known: kind.options().join(", "),
                            suggestion: bridge_core::suggest::closest(
                                key,
                                kind.options().iter().copied(),
                            ),
                        });
                    }
                    if value.trim().is_empty() {
                        return Err(SpecError::EmptyOption {
                            spec: text.into(),
                            name: kind.name(),
                            option: key.into(),
                        });
                    }
                    spec.options.insert(key.into(), value.into());
                }
            }
        }
        Ok(spec)
    }
}

/// Splits `a=1:b=x:y` into `a=1`, `b=x:y`: a `:` starts a new option only before `key=`.
fn split_options(arg: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in arg.match_indices(':') {
        let next = &arg[i + 1..];
        let key_len = next
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(next.len());
        if key_len > 0 && next[key_len..].starts_with('=') {
            parts.push(&arg[start..i]);
            start = i + 1;
        }
    }
    parts.push(&arg[start..]);
    parts
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(label) = &self.label {
            write!(f, "{label}=")?;
        }
        f.write_str(self.kind.name())?;
        if let Some(path) = &self.path {
            write!(f, ":{}", path.display())?;
        }
        for (k, v) in &self.options {
            write!(f, ":{k}={v}")?;
        }
        Ok(())
    }
}

/// The label each spec goes by in reports, unique across the list.
pub fn assign_labels(specs: &[PlatformSpec]) -> Result<Vec<String>, SpecError> {
    let labels: Vec<String> = specs
        .iter()
        .map(|spec| {
            if let Some(label) = &spec.label {
                return label.clone();
            }
            // Only unlabelled specs compete for the platform's name.
            let same_kind = specs
                .iter()
                .filter(|s| s.kind == spec.kind && s.label.is_none())
                .count();
            match (same_kind > 1, spec.kind) {
                (true, PlatformKind::Local) => {
                    spec.file_label().unwrap_or_else(|| spec.default_label())
                }
                _ => spec.default_label(),
            }
        })
        .collect();
    for (i, label) in labels.iter().enumerate() {
        if labels[..i].contains(label) {
            return Err(SpecError::DuplicateLabel {
                label: label.clone(),
            });
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(s: &str) -> PlatformSpec {
        s.parse().expect("spec parses")
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(parse("local").path.as_deref(), Some(Path::new(".env")));
        assert_eq!(
            parse("local:config/prod.env").path.as_deref(),
            Some(Path::new("config/prod.env"))
        );
        assert_eq!(parse("process").kind, PlatformKind::Process);
        let n = parse("netlify:context=branch:staging:site=abc");
        assert_eq!(n.option("context"), Some("branch:staging"));
        assert_eq!(n.option("site"), Some("abc"));
        let g = parse("prod=github:environment=production");
        assert_eq!(g.label.as_deref(), Some("prod"));
        assert_eq!(g.option("environment"), Some("production"));
        assert_eq!(parse("Render").kind, PlatformKind::Render);
    }

    #[test]
    fn round_trips_through_display() {
        for s in [
            "local:.env",
            "process",
            "netlify:context=production",
            "x=github:environment=p",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |s: &str| s.parse::<PlatformSpec>().unwrap_err().to_string();
        assert!(err("heroku").contains("unknown platform `heroku`"));
        assert!(!err("heroku").contains("did you mean"));
        assert!(
            err("rendr:svc")
                .contains("unknown platform `rendr` in `rendr:svc`; did you mean `render`?"),
            "{}",
            err("rendr:svc")
        );
        assert!(err("Netlfy").contains("did you mean `netlify`?"));
        assert!(
            err("render:servise=x")
                .contains("unknown option `servise` for render; did you mean `service`?"),
            "{}",
            err("render:servise=x")
        );
        assert!(err("process:x=1").contains("takes no options"));
        assert!(err("netlify:colour=red").contains("unknown option `colour`"));
        assert!(err("netlify:production").contains("key=value"));
        // `environment=$ENV` with ENV unset: never the repository's secrets instead.
        for empty in [
            "github:environment=",
            "github:repository=a/b:environment= ",
            "render:service=",
            "netlify:site=x:context=",
        ] {
            assert!(err(empty).contains("is empty"), "{empty}: {}", err(empty));
        }
        assert!(err("bad label=local").contains("a label is"));
        assert!(err("  ").contains("empty"));
    }

    #[test]
    fn labels_are_unique_and_readable() {
        let specs = PlatformSpec::parse_list("local:.env,local:deploy/.env.production,render")
            .expect("list parses");
        assert_eq!(
            assign_labels(&specs).expect("labels"),
            ["env", "env_production", "render"]
        );
        let single = PlatformSpec::parse_list("local:x.env,render").expect("list parses");
        assert_eq!(assign_labels(&single).expect("labels"), ["local", "render"]);
        let labelled =
            PlatformSpec::parse_list("local:.env,prod=local:p.env").expect("list parses");
        assert_eq!(assign_labels(&labelled).expect("labels"), ["local", "prod"]);
        let clash = PlatformSpec::parse_list("local:a/.env,local:b/.env").expect("list parses");
        assert!(assign_labels(&clash).is_err());
    }
}
