//! The one place that prints. Text for people (colour only on a terminal, via anstream),
//! JSON for machines (`--output json`: stdout carries nothing else), status and warnings on
//! stderr (silenced by `--quiet`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::cli::OutputFormat;

pub const GREEN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
pub const RED: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
pub const YELLOW: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
pub const CYAN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();

#[derive(Debug, Clone)]
pub struct Shell {
    format: OutputFormat,
    quiet: bool,
}

impl Shell {
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Self { format, quiet }
    }

    /// A progress line for long applies, drawn on stderr only when it is a terminal (and not
    /// in quiet or JSON mode): `applying  github 412/1000  render 2/2`.
    pub fn progress(&self) -> Option<Progress> {
        let wanted = !self.quiet && !self.is_json() && io::stderr().is_terminal();
        wanted.then(|| Progress(Arc::new(Mutex::new(BTreeMap::new()))))
    }

    /// Whether a person is there to answer: stdin and stdout are terminals and the output is
    /// text. Scripts and CI are not asked anything.
    pub fn interactive(&self) -> bool {
        !self.is_json() && io::stdin().is_terminal() && io::stdout().is_terminal()
    }

    /// Asks `question` on stderr and reads the answer from stdin: `y` or `yes` is yes,
    /// anything else (end of input included) is no.
    pub fn confirm(&self, question: &str) -> io::Result<bool> {
        let mut err = anstream::stderr();
        write!(err, "{question} [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Text for stdout; colour codes are stripped when stdout is not a terminal.
    pub fn print(&self, text: &str) -> io::Result<()> {
        let mut out = anstream::stdout().lock();
        ignore_broken_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
    }

    /// Text that would go to stdout when stdout is taken (by `export` lines); `--quiet`
    /// silences it.
    pub fn print_to_stderr(&self, text: &str) {
        if !self.quiet {
            let _ = anstream::stderr().write_all(text.as_bytes());
        }
    }

    /// stdout for a stream of lines (`events tail`, `ledger export`, `export` lines of a
    /// `process` target, completions), written as they come.
    pub fn stdout(&self) -> io::Stdout {
        io::stdout()
    }

    pub fn print_json(&self, value: &impl Serialize) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        text.push('\n');
        let mut out = io::stdout().lock();
        ignore_broken_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
    }

    /// A status line on stderr, cargo-style: a right-aligned coloured verb and a message.
    pub fn status(&self, verb: &str, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let style = GREEN.bold();
        let _ = writeln!(
            anstream::stderr(),
            "{style}{verb:>12}{style:#} {}",
            message.as_ref()
        );
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        warn(message.as_ref());
    }

    /// Has the platforms' notices said on stderr: every `.env` warning (a duplicate key),
    /// once each, and (unless `--quiet`) every HTTP retry: what failed, and when the next
    /// try is.
    pub fn report_platform_notices(&self) {
        bridge_platforms::local::report_warnings(|message| {
            static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
            let first = SAID
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(message.to_string());
            if first {
                warn(message);
            }
        });
        if !self.quiet {
            bridge_platforms::http::report_retries(|r| {
                warn(&format!(
                    "{}: {}; try {} of {} in {:.1} s",
                    r.request,
                    r.reason,
                    r.next_attempt,
                    r.max_attempts,
                    r.wait.as_secs_f64()
                ))
            });
        }
    }

    pub fn error(&self, message: impl AsRef<str>) {
        let style = RED.bold();
        let _ = writeln!(
            anstream::stderr(),
            "{style}error{style:#}: {}",
            message.as_ref()
        );
    }
}

fn warn(message: &str) {
    let style = YELLOW.bold();
    let _ = writeln!(anstream::stderr(), "{style}warning{style:#}: {message}");
}

/// A closed pipe (`genesisctl … | head`) is the reader's choice, not our failure.
fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The state of the progress line: per target, ops done of ops planned.
#[derive(Clone)]
pub struct Progress(Arc<Mutex<BTreeMap<String, (usize, usize)>>>);

impl Progress {
    pub fn update(&self, label: &str, done: usize, total: usize) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.insert(label.to_string(), (done, total));
        let parts: Vec<String> = state
            .iter()
            .map(|(l, (d, t))| format!("{l} {d}/{t}"))
            .collect();
        let style = CYAN.bold();
        let _ = write!(
            io::stderr(),
            "\r\x1b[2K{style}{:>12}{style:#} {}",
            "Applying",
            parts.join("  ")
        );
    }

    /// Clears the line so the report starts on a clean one.
    pub fn finish(&self) {
        let _ = write!(io::stderr(), "\r\x1b[2K");
    }
}
