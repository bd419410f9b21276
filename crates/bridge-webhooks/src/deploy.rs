//! The normalised deploy event: one shape for a deploy on any platform, whether it came from
//! a webhook, the autonomy API or `genesisctl deploy publish`.
//!
//! The wire shape is the seeds' (field names are pinned):
//!
//! ```json
//! {"platform": "netlify", "event_type": "success", "status": "ready",
//!  "timestamp": "2025-10-11T08:40:20.557Z",
//!  "metadata": {"commit_sha": "abc123", "branch": "main", "deploy_url": "https://…",
//!               "deploy_id": "…", "message": null, "site_id": "…"}}
//! ```
//!
//! The five named metadata fields are always present (`null` when the platform did not say);
//! platform-specific fields follow them. `status` is the platform's own word for the state
//! (`ready`, `succeeded`, `failure`, …); `event_type` is the class every consumer can rely on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Every topic a deploy event is published on (what `GET /engines/autonomy/deployment/status`
/// lists).
pub const TOPICS: [&str; 6] = [
    "deploy.netlify",
    "deploy.render",
    "deploy.github",
    "deploy.platform.start",
    "deploy.platform.success",
    "deploy.platform.failure",
];

/// A platform that sends deploy events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Github,
    Netlify,
    Render,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Github, Platform::Netlify, Platform::Render];

    /// The wire name: `github`, `netlify`, `render` (also the webhook path's last segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Github => "github",
            Platform::Netlify => "netlify",
            Platform::Render => "render",
        }
    }

    /// The bus topic that carries every deploy event of this platform: `deploy.<platform>`.
    pub fn topic(self) -> &'static str {
        match self {
            Platform::Github => "deploy.github",
            Platform::Netlify => "deploy.netlify",
            Platform::Render => "deploy.render",
        }
    }

    /// The environment variable holding this platform's webhook secret.
    pub fn secret_env_var(self) -> &'static str {
        match self {
            Platform::Github => "GITHUB_WEBHOOK_SECRET",
            Platform::Netlify => "NETLIFY_WEBHOOK_SECRET",
            Platform::Render => "RENDER_WEBHOOK_SECRET",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Platform::ALL`] or [`DeployEventType`]'s four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}: expected one of {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
}

impl FromStr for Platform {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "platform",
                name: s.to_owned(),
                expected: "github, netlify, render",
            })
    }
}

/// What a deploy event means, whatever the platform called it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployEventType {
    /// A deploy (or the run that deploys) began.
    Start,
    /// It is live.
    Success,
    /// It failed; reactions (`genesis.heal`) follow this.
    Failure,
    /// Anything in between or beside: a build step finished, a run was cancelled. Published
    /// on `deploy.<platform>` only, never on the generic topics.
    Progress,
}

impl DeployEventType {
    pub const ALL: [DeployEventType; 4] = [
        DeployEventType::Start,
        DeployEventType::Success,
        DeployEventType::Failure,
        DeployEventType::Progress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployEventType::Start => "start",
            DeployEventType::Success => "success",
            DeployEventType::Failure => "failure",
            DeployEventType::Progress => "progress",
        }
    }

    /// The platform-independent topic, `deploy.platform.<start|success|failure>`; none for
    /// progress.
    pub fn generic_topic(self) -> Option<&'static str> {
        match self {
            DeployEventType::Start => Some("deploy.platform.start"),
            DeployEventType::Success => Some("deploy.platform.success"),
            DeployEventType::Failure => Some("deploy.platform.failure"),
            DeployEventType::Progress => None,
        }
    }
}

impl fmt::Display for DeployEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeployEventType {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeployEventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "event type",
                name: s.to_owned(),
                expected: "start, success, failure, progress",
            })
    }
}

/// What is known about the deploy. The five named fields are always serialised (`null` when
/// unknown); `extra` holds platform-specific fields beside them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployMetadata {
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub deploy_url: Option<String>,
    pub deploy_id: Option<String>,
    pub message: Option<String>,
    /// Platform-specific fields (`environment`, `site_id`, `service_id`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One deploy event in the seeds' shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployEvent {
    pub platform: Platform,
    pub event_type: DeployEventType,
    /// The platform's own word for the state (`ready`, `succeeded`, `in_progress`, …).
    pub status: String,
    /// When it happened (the platform's stamp where it gives one), RFC 3339 UTC.
    pub timestamp: String,
    pub metadata: DeployMetadata,
}

impl DeployEvent {
    /// The topics to publish this event on, in order: `deploy.<platform>`, then
    /// `deploy.platform.<start|success|failure>` unless it is progress.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics = vec![self.platform.topic()];
        topics.extend(self.event_type.generic_topic());
        topics
    }

    /// The event as a bus payload (a JSON object).
    pub fn to_payload(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A struct of strings and JSON values always serialises to an object.
            _ => serde_json::Map::new(),
        }
    }
}

/// A deploy event as a caller of the autonomy API or `genesisctl deploy publish` states it:
/// the timestamp may be left out (then it is the time of receipt) and so may the metadata.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployEventRequest {
    pub platform: Platform,
    pub event_type: DeployEventType,
    pub status: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub metadata: DeployMetadata,
}

/// A stated timestamp that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp is not RFC 3339 (like 2025-10-11T08:40:20Z)")]
pub struct BadTimestamp;

impl DeployEventRequest {
    /// The event, stamped `now` unless the request says when; the stated time is normalised
    /// to UTC.
    pub fn into_event(self, now: OffsetDateTime) -> Result<DeployEvent, BadTimestamp> {
        let timestamp = match &self.timestamp {
            Some(text) => parse_time(text).ok_or(BadTimestamp)?,
            None => now,
        };
        Ok(DeployEvent {
            platform: self.platform,
            event_type: self.event_type,
            status: self.status,
            timestamp: format_time(timestamp),
            metadata: self.metadata,
        })
    }
}

/// RFC 3339 in UTC (`…Z`), as every timestamp here is written.
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    bridge_core::time::rfc3339(at)
}

pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn event(event_type: DeployEventType) -> DeployEvent {
        DeployEvent {
            platform: Platform::Netlify,
            event_type,
            status: "ready".into(),
            timestamp: "2025-10-11T08:40:20.557Z".into(),
            metadata: DeployMetadata {
                commit_sha: Some("abc123".into()),
                extra: BTreeMap::from([("site_id".into(), json!("s1"))]),
                ..DeployMetadata::default()
            },
        }
    }

    #[test]
    fn the_wire_shape_is_the_seeds() {
        let value = serde_json::to_value(event(DeployEventType::Success)).unwrap();
        assert_eq!(
            value,
            json!({
                "platform": "netlify",
                "event_type": "success",
                "status": "ready",
                "timestamp": "2025-10-11T08:40:20.557Z",
                "metadata": {
                    "commit_sha": "abc123",
                    "branch": null,
                    "deploy_url": null,
                    "deploy_id": null,
                    "message": null,
                    "site_id": "s1"
                }
            })
        );
        let back: DeployEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event(DeployEventType::Success));
    }

    #[test]
    fn progress_stays_on_the_platform_topic() {
        assert_eq!(
            event(DeployEventType::Start).topics(),
            ["deploy.netlify", "deploy.platform.start"]
        );
        assert_eq!(
            event(DeployEventType::Success).topics(),
            ["deploy.netlify", "deploy.platform.success"]
        );
        assert_eq!(
            event(DeployEventType::Failure).topics(),
            ["deploy.netlify", "deploy.platform.failure"]
        );
        assert_eq!(
            event(DeployEventType::Progress).topics(),
            ["deploy.netlify"]
        );
    }

    #[test]
    fn names_parse_and_print() {
        for platform in Platform::ALL {
            assert_eq!(platform.as_str().parse::<Platform>(), Ok(platform));
            assert_eq!(
                platform.topic(),
                format!("deploy.{platform}"),
                "topic of {platform}"
            );
        }
        for event_type in DeployEventType::ALL {
            assert_eq!(
                event_type.as_str().parse::<DeployEventType>(),
                Ok(event_type)
            );
        }
        let error = "vercel".parse::<Platform>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown platform \"vercel\": expected one of github, netlify, render"
        );
        assert!("done".parse::<DeployEventType>().is_err());
    }

    #[test]
    fn requests_are_stamped_on_receipt_unless_they_say() {
        let now = datetime!(2026-01-02 03:04:05 UTC);
        let request: DeployEventRequest = serde_json::from_value(json!({
            "platform": "render", "event_type": "failure", "status": "failed",
            "metadata": {"branch": "main", "run": 7}
        }))
        .unwrap();
        let event = request.into_event(now).unwrap();
        assert_eq!(event.timestamp, "2026-01-02T03:04:05Z");
        assert_eq!(event.metadata.branch.as_deref(), Some("main"));
        assert_eq!(event.metadata.extra["run"], json!(7));

        let request: DeployEventRequest = serde_json::from_value(json!({
            "platform": "github", "event_type": "start", "status": "deploying",
            "timestamp": "2025-10-11T10:40:20+02:00"
        }))
        .unwrap();
        assert_eq!(
            request.into_event(now).unwrap().timestamp,
            "2025-10-11T08:40:20Z"
        );

        let request: DeployEventRequest = serde_json::from_value(json!({
            "platform": "github", "event_type": "start", "status": "x", "timestamp": "yesterday"
        }))
        .unwrap();
        assert_eq!(request.into_event(now), Err(BadTimestamp));
        assert!(
            serde_json::from_value::<DeployEventRequest>(json!({
                "platform": "github", "event_type": "finish", "status": "x"
            }))
            .is_err()
        );
    }
}
