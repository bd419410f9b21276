//! One structured log line per request and per notable event, as text for people or JSON
//! lines for collectors (`--log-format json`). Fields are key/value pairs chosen by the
//! caller; the Authorization header and values never are among them.

use std::io::Write;
use std::sync::mpsc::{SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

/// How often queued log lines are written.
pub const WRITE_EVERY: Duration = Duration::from_millis(10);

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// Nothing at all (tests, benchmarks).
    Off,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Off => "off",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            "off" => Ok(LogLevel::Off),
            other => Err(format!(
                "unknown log level `{other}`: expected debug, info, warn, error or off"
            )),
        }
    }
}

/// Writes log lines to stderr, through one writer thread: a request formats its line and
/// hands it over; the thread writes whatever has queued up in one go, so a busy server makes
/// one write per burst rather than one per request.
#[derive(Debug, Clone)]
pub struct Logger {
    format: LogFormat,
    level: LogLevel,
    sink: Option<SyncSender<String>>,
}

impl Logger {
    pub fn new(format: LogFormat, level: LogLevel) -> Self {
        let sink = (level != LogLevel::Off).then(spawn_writer).flatten();
        Self {
            format,
            level,
            sink,
        }
    }

    pub fn off() -> Self {
        Self::new(LogFormat::Text, LogLevel::Off)
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.level && self.level != LogLevel::Off
    }

    pub fn info(&self, msg: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Info, msg, fields);
    }

    pub fn warn(&self, msg: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Warn, msg, fields);
    }

    pub fn error(&self, msg: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Error, msg, fields);
    }

    pub fn log(&self, level: LogLevel, msg: &str, fields: &[(&str, &str)]) {
        if !self.enabled(level) {
            return;
        }
        let line = self.line(level, msg, fields);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// Like [`Logger::log`], but handed to the writer thread: for the per-request lines,
    /// whose cost the request should not pay. Rare lines (start, shutdown, failures) are
    /// written at once, so none is lost when the process exits.
    pub fn log_queued(&self, level: LogLevel, msg: &str, fields: &[(&str, &str)]) {
        if !self.enabled(level) {
            return;
        }
        let line = self.line(level, msg, fields);
        let unsent = match &self.sink {
            Some(sink) => sink.send(line).err().map(|e| e.0),
            None => Some(line),
        };
        if let Some(line) = unsent {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn line(&self, level: LogLevel, msg: &str, fields: &[(&str, &str)]) -> String {
        let ts = now();
        match self.format {
            LogFormat::Json => {
                let mut map = Map::new();
                map.insert("ts".into(), Value::String(ts));
                map.insert("level".into(), level.as_str().into());
                map.insert("msg".into(), msg.into());
                for (k, v) in fields {
                    map.insert((*k).to_owned(), Value::String((*v).to_owned()));
                }
                let mut text = Value::Object(map).to_string();
                text.push('\n');
                text
            }
            LogFormat::Text => {
                let mut text = format!("{ts} {:<5} {msg}", level.as_str().to_uppercase());
                for (k, v) in fields {
                    text.push(' ');
                    text.push_str(k);
                    text.push('=');
                    if v.contains(' ') || v.is_empty() {
                        text.push_str(&format!("{v:?}"));
                    } else {
                        text.push_str(v);
                    }
                }
                text.push('\n');
                text
            }
        }
    }
}

/// The writer thread; `None` if it cannot be started (lines are then written directly).
fn spawn_writer() -> Option<SyncSender<String>> {
    let (tx, rx) = sync_channel::<String>(16_384);
    std::thread::Builder::new()
        .name("bridge-log".into())
        .spawn(move || {
            // The thread wakes on its own every few milliseconds and writes what queued up,
            // so that a request hands its line over without waking anyone (no syscall).
            let mut out = std::io::BufWriter::new(std::io::stderr());
            loop {
                std::thread::sleep(WRITE_EVERY);
                let mut wrote = false;
                loop {
                    match rx.try_recv() {
                        Ok(line) => {
                            let _ = out.write_all(line.as_bytes());
                            wrote = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            let _ = out.flush();
                            return;
                        }
                    }
                }
                if wrote {
                    let _ = out.flush();
                }
            }
        })
        .ok()?;
    Some(tx)
}

fn now() -> String {
    bridge_core::time::rfc3339(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_lines_carry_the_fields_and_text_quotes_spaces() {
        let json = Logger::new(LogFormat::Json, LogLevel::Info);
        let line = json.line(
            LogLevel::Info,
            "request",
            &[("status", "200"), ("path", "/x")],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "request");
        assert_eq!(v["status"], "200");
        assert_eq!(v["level"], "info");
        let text = Logger::new(LogFormat::Text, LogLevel::Info);
        let line = text.line(LogLevel::Warn, "x", &[("why", "a b")]);
        assert!(line.contains("WARN") && line.contains("why=\"a b\""));
    }

    #[test]
    fn levels_filter() {
        let l = Logger::new(LogFormat::Text, LogLevel::Warn);
        assert!(!l.enabled(LogLevel::Info));
        assert!(l.enabled(LogLevel::Error));
        assert!(!Logger::off().enabled(LogLevel::Error));
    }
}
