//! [`HistoryCache`]: answers of `GET /genesis/events` by query string, reused while the bus
//! has no new event.
//!
//! The log only grows, so a page's answer can change only when a new event is stored. The
//! head it was computed at is kept with it; a background task moves the head on every event
//! this process stores (the live feed) and at least once a second for events other
//! processes store. The head is read before a page is computed, so a cached page never misses
//! an event at or below its head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use bridge_genesis::bus::Event;
use tokio::sync::broadcast;

/// At most this many distinct queries are kept; past it the cache starts over.
const MAX_ENTRIES: usize = 256;
/// Answers larger than this are not kept.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

pub(crate) struct HistoryCache {
    head: AtomicU64,
    /// Off until the store was read once, and again after the live feed lagged, until the
    /// next read of the store.
    enabled: AtomicBool,
    /// This process's events, drained on every read: the store sends them before an append
    /// returns, so a page read after a publish here always sees it.
    live: Mutex<broadcast::Receiver<Arc<Event>>>,
    entries: Mutex<HashMap<String, (u64, Bytes)>>,
}

impl HistoryCache {
    pub(crate) fn new(live: broadcast::Receiver<Arc<Event>>) -> Self {
        Self {
            head: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            live: Mutex::new(live),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The head to compute or look up a page at; `None` when the cache cannot be trusted
    /// right now (then the page is read from the store and not kept).
    pub(crate) fn current_head(&self) -> Option<u64> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let mut live = self.live.lock().ok()?;
        loop {
            match live.try_recv() {
                Ok(event) => self.advance(event.seq),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => {
                    // Lagged or closed: wait for the next read of the store.
                    self.enabled.store(false, Ordering::Release);
                    return None;
                }
            }
        }
        Some(self.head.load(Ordering::Acquire))
    }

    /// The store says its newest event is `seq` (read at least once a second).
    pub(crate) fn observed(&self, seq: u64) {
        self.advance(seq);
        self.enabled.store(true, Ordering::Release);
    }

    fn advance(&self, seq: u64) {
        self.head.fetch_max(seq, Ordering::AcqRel);
    }

    pub(crate) fn get(&self, query: &str, head: u64) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        match entries.get(query) {
            Some((at, bytes)) if *at == head => Some(bytes.clone()),
            _ => None,
        }
    }

    pub(crate) fn put(&self, query: &str, head: u64, bytes: Bytes) {
        if bytes.len() > MAX_ANSWER_BYTES {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(query) {
                entries.clear();
            }
            entries.insert(query.to_owned(), (head, bytes));
        }
    }
}

/// Tells the history cache where the store's head is, once a second: events of other
/// processes sharing the store show in history within that second (this process's own
/// events, at once). Ends when shutdown begins.
pub(crate) async fn track_head(state: crate::AppState) {
    let store = state.inner.bus.store().clone();
    let mut shutdown = state.inner.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Ok(seq) = store.last_seq().await {
            state.inner.history_cache.observed(seq);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            topic: "a.b".into(),
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            who: "system".into(),
            payload: Default::default(),
        })
    }

    #[test]
    fn an_answer_is_reused_only_at_the_head_it_was_computed_at() {
        let (tx, rx) = broadcast::channel(4);
        let cache = HistoryCache::new(rx);
        assert_eq!(cache.current_head(), None, "off until the store was read");
        cache.observed(5);
        let head = cache.current_head().unwrap();
        cache.put("limit=50", head, Bytes::from_static(b"a"));
        assert_eq!(cache.get("limit=50", 5).as_deref(), Some(&b"a"[..]));
        assert!(cache.get("limit=10", 5).is_none());
        // An event stored by this process moves the head at once.
        tx.send(event(6)).unwrap();
        assert_eq!(cache.current_head(), Some(6));
        assert!(cache.get("limit=50", 6).is_none());
        // The head never goes back.
        cache.observed(3);
        assert_eq!(cache.current_head(), Some(6));
        // A lagging feed turns the cache off until the store is read again.
        for seq in 7..20 {
            let _ = tx.send(event(seq));
        }
        assert_eq!(cache.current_head(), None);
        cache.observed(19);
        assert_eq!(cache.current_head(), Some(19));
    }

    #[test]
    fn the_cache_is_bounded() {
        let (_tx, rx) = broadcast::channel(4);
        let cache = HistoryCache::new(rx);
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(&format!("q{i}"), 0, Bytes::from_static(b"x"));
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
        cache.put("big", 0, Bytes::from(vec![0u8; MAX_ANSWER_BYTES + 1]));
        assert!(cache.get("big", 0).is_none());
    }
}
