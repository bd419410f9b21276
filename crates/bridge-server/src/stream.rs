//! `GET /genesis/stream`: live events as server-sent events (the seeds' Cascade).
//!
//! The store is the source of truth and the live feed only a wake-up call: the stream reads
//! the store after the last sequence it sent, so it never skips or reorders an event, whether
//! the event came from this process, another one sharing the store (polled every second), or
//! was published while the client was away. A client that reconnects with `Last-Event-ID`
//! (which browsers' `EventSource` does by itself) resumes exactly after the last event it got.
//!
//! A stream is authorised when it opens and again while it runs: every [`AUTH_CHECK`] (and
//! before each event it sends) it asks the token store whether its token still stands, and
//! ends when it was revoked, so a revoked token keeps no stream open.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use bridge_genesis::bus::{Event, EventStore, HistoryQuery, TopicPattern};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiQuery};

/// Events a stream reads from the store at once. What a stream holds is about this many
/// events while it replays, so this bounds the memory of thousands of streams catching up at
/// once (each read is one of the store's few pooled connections, so small pages cost little).
const PAGE: usize = 32;
/// The most events' room an idle stream keeps.
const IDLE_CAPACITY: usize = 8;
/// How often a quiet stream looks at the store for events of other processes.
const POLL: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an open stream asks whether its token still stands. The token store itself
/// re-reads its source at most once a second, so a stream ends within about a second of
/// its token's revocation.
pub const AUTH_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    topic: Option<String>,
    since: Option<u64>,
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let pattern = match params.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(text) => parse_pattern(text)?,
        None => parse_pattern(">")?,
    };
    let store = state.inner.bus.store().clone();
    // Subscribe before reading where to start, so nothing falls between the two.
    let live = store.live();
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be a _genesis_seq (a whole number)")
                })?,
        ),
        None => params.since,
    };
    let after = match resume {
        Some(seq) => seq,
        None => store
            .last_seq()
            .await
            .map_err(|e| ApiError::unavailable(format!("reading the event store: {e}")))?,
    };
    let cursor = Cursor {
        store,
        pattern,
        after,
        ready: VecDeque::new(),
        live,
        shutdown: state.inner.shutdown.clone(),
        principal: principal.map(|p| p.0),
        state,
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok(to_sse(&event)), cursor))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.seq.to_string())
        .event(event.topic.clone())
        .data(event.envelope().to_string())
}

struct Cursor {
    store: Arc<dyn EventStore>,
    pattern: TopicPattern,
    /// Every event up to here was sent (or did not match).
    after: u64,
    ready: VecDeque<Event>,
    live: broadcast::Receiver<Arc<Event>>,
    shutdown: watch::Receiver<bool>,
    /// Whose stream it is (the route's guard put it there); `None` only for a route
    /// without a role, which this one is not.
    principal: Option<Principal>,
    state: AppState,
}

impl Cursor {
    /// The next matching event; `None` when the server shuts down, the store fails (the
    /// client reconnects with `Last-Event-ID` and loses nothing) or the token is revoked
    /// (a reconnect is refused 401).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !authorised(self.principal.as_ref(), &self.state) {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            // A caught-up stream gives back the page it replayed: thousands of idle streams
            // would otherwise each keep room for PAGE events.
            if self.ready.capacity() > IDLE_CAPACITY {
                self.ready = VecDeque::new();
            }
            let head = self.store.last_seq().await.ok()?;
            if head > self.after {
                let query = HistoryQuery::default()
                    .pattern(self.pattern.clone())
                    .after_seq(self.after)
                    .until_seq(head)
                    .limit(PAGE);
                let page = self.store.read(query).await.ok()?;
                // A short page read everything up to `head`: skip the events that did not
                // match. A full page continues after its last event.
                self.after = if page.len() < PAGE {
                    head
                } else {
                    page.last().map_or(head, |e| e.seq)
                };
                self.ready.extend(page);
                continue;
            }
            tokio::select! {
                // Any news (an event, or lagging behind) means: read the store again.
                news = self.live.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = news {
                        tokio::time::sleep(POLL).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = revoked(self.principal.as_ref(), &self.state) => return None,
            }
        }
    }
}

/// Whether the stream's token still stands.
fn authorised(principal: Option<&Principal>, state: &AppState) -> bool {
    principal.is_none_or(|p| state.inner.tokens.is_current(p))
}

/// Resolves once the stream's token no longer stands.
async fn revoked(principal: Option<&Principal>, state: &AppState) {
    while authorised(principal, state) {
        tokio::time::sleep(AUTH_CHECK).await;
    }
}

/// The `topic` parameter of the history and the stream, as a pattern.
pub(crate) fn parse_pattern(text: &str) -> Result<TopicPattern, ApiError> {
    TopicPattern::parse(text)
        .map_err(|e| ApiError::bad_request(format!("`topic` is not a valid pattern: {e}")))
}
