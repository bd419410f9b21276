//! The scheduled sync (`ENVSYNC_SCHEDULE`, `ENVSYNC_MODE`): at each slot of the schedule,
//! every provider is synced in the configured mode, once across every server sharing the
//! store.
//!
//! ```text
//! start:  done = the store's newest slot of "envsync"
//!           (none recorded: the latest slot so far counts as done; a new store does not
//!            catch up a slot from before any server ran)
//! loop:   due = the latest slot <= now
//!         due > done?  claim (job, due) in the store ── lost: another server runs it (info)
//!                        └─ won: sync every provider (applies under the provider's lock),
//!                               finish(outcome), publish genesis.intent {kind: scheduled_sync}
//!                      done = due
//!         else sleep until the next slot (or shutdown)
//! ```
//!
//! After downtime only the most recent missed slot runs, once: syncs converge on the
//! source's present state, so replaying every missed hour would only repeat the last.
//! A claimed slot whose server died mid-run is not run again; the next slot is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_genesis::bus::Role;
use bridge_genesis::schedule::ScheduleStore;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::State;
use bridge_operations::Mode;
use bridge_operations::{BoxFuture, Origin};

/// The job name the scheduled sync claims its slots under.
pub const JOB: &str = "envsync";

/// When the sync runs: `@hourly`, `@daily`, `@weekly` (also `@monthly`, `@yearly`,
/// `@annually`, `@midnight`) or a 5-field cron expression (minute hour day-of-month month
/// day-of-week), in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(
                "the schedule is empty: expected @hourly, @daily or a cron expression".into(),
            );
        }
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        if !pattern.starts_with('@') && pattern.split_whitespace().count() != 5 {
            return Err(format!(
                "{trimmed:?}: a cron expression has 5 fields (minute hour day month weekday)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("{trimmed:?}: {e}"))?;
        Ok(Schedule {
            text: trimmed.to_owned(),
            cron,
        })
    }

    /// The schedule as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The newest slot at or before `now`; `None` when there is none (a date that never
    /// comes, like `0 0 31 2 *`).
    pub fn latest_at_or_before(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron
            .find_previous_occurrence(&Utc(whole_seconds(now)), true)
            .ok()
            .map(|t| t.0)
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron
            .find_next_occurrence(&Utc(whole_seconds(t)), false)
            .ok()
            .map(|t| t.0)
    }
}

/// Slots fall on whole seconds; `t` rounded down to one (in UTC).
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
}

/// A UTC instant for croner (whose own implementations are for chrono and jiff).
#[derive(Debug, Clone, Copy)]
struct Utc(OffsetDateTime);

impl CronDateTime for Utc {
    fn to_civil(&self) -> CivilDateTime {
        let t = self.0;
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(
                t.year(),
                u32::from(u8::from(t.month())),
                u32::from(t.day()),
            ),
            CivilTime::from_parts_unchecked(
                u32::from(t.hour()),
                u32::from(t.minute()),
                u32::from(t.second()),
            ),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(u32::from(self.0.weekday().number_days_from_sunday()))
    }

    fn resolve_civil(
        &self,
        civil: CivilDateTime,
    ) -> Result<Resolution<Self>, croner::errors::CronError> {
        let invalid = || croner::errors::CronError::InvalidDate;
        let month = u8::try_from(civil.month())
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(invalid)?;
        let date = time::Date::from_calendar_date(
            civil.year(),
            month,
            u8::try_from(civil.day()).map_err(|_| invalid())?,
        )
        .map_err(|_| invalid())?;
        let time = time::Time::from_hms(
            u8::try_from(civil.hour()).map_err(|_| invalid())?,
            u8::try_from(civil.minute()).map_err(|_| invalid())?,
            u8::try_from(civil.second()).map_err(|_| invalid())?,
        )
        .map_err(|_| croner::errors::CronError::InvalidTime)?;
        Ok(Resolution::Single(Utc(date.with_time(time).assume_utc())))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(time::Duration::seconds(seconds))
            .map(Utc)
    }

    fn cmp_instant(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// What the scheduled sync does; the binary fills it from `ENVSYNC_*`.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// `ENVSYNC_ENABLED`: false, and nothing runs.
    pub enabled: bool,
    /// `ENVSYNC_SCHEDULE`; `None`, and nothing runs.
    pub schedule: Option<Schedule>,
    /// `ENVSYNC_MODE`.
    pub mode: Mode,
    /// Who claims the slots (`host:pid`), recorded with each run.
    pub owner: String,
}

/// The time, and waiting for one: the system's, or one a test moves.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: OffsetDateTime) -> BoxFuture<'_, ()>;
}

/// The wall clock. Long sleeps are taken in steps of a minute, so that a clock set forward
/// (or a machine waking from suspend) is noticed within one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep_until(&self, t: OffsetDateTime) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let left = t - OffsetDateTime::now_utc();
                if !left.is_positive() {
                    return;
                }
                let step = Duration::try_from(left)
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(60));
                tokio::time::sleep(step.max(Duration::from_millis(1))).await;
            }
        })
    }
}

/// A clock that only moves when told to: sleepers wake when it passes their time.
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<OffsetDateTime>,
    moved: watch::Sender<OffsetDateTime>,
}

impl TestClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
            moved: watch::channel(start).0,
        }
    }

    /// Moves the clock to `t` (never back).
    pub fn set(&self, t: OffsetDateTime) {
        let mut now = match self.now.lock() {
            Ok(now) => now,
            Err(poisoned) => poisoned.into_inner(),
        };
        if t > *now {
            *now = t;
        }
        self.moved.send_replace(*now);
    }

    pub fn advance(&self, by: time::Duration) {
        self.set(self.now() + by);
    }

    /// How many `sleep_until`s are waiting: a test moves the clock once its schedulers sleep.
    pub fn sleepers(&self) -> usize {
        self.moved.receiver_count()
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        match self.now.lock() {
            Ok(now) => *now,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn sleep_until(&self, t: OffsetDateTime) -> BoxFuture<'_, ()> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            while self.now() < t {
                if moved.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// The scheduled sync as the server runs it: options, the store its slots are claimed in,
/// and the clock.
#[derive(Clone)]
pub struct ScheduledSync {
    pub options: SchedulerOptions,
    pub store: Arc<dyn ScheduleStore>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ScheduledSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledSync")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ScheduledSync {
    /// On the wall clock.
    pub fn new(options: SchedulerOptions, store: Arc<dyn ScheduleStore>) -> Self {
        Self {
            options,
            store,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Runs the schedule until shutdown (at once, when disabled or without a schedule).
pub(crate) async fn run(state: State, sync: ScheduledSync) {
    let options = &sync.options;
    let Some(schedule) = options.schedule.as_ref().filter(|_| options.enabled) else {
        return;
    };
    let mut shutdown = state.shutdown.clone();
    let logger = &state.logger;
    logger.info(
        "scheduled sync",
        &[
            ("schedule", schedule.as_str()),
            ("mode", options.mode.as_str()),
            ("owner", &options.owner),
        ],
    );
    let mut done = match sync.store.last_slot(JOB.to_owned()).await {
        Ok(Some(slot)) => Some(slot),
        // A new store: nothing was missed, since nothing ever ran.
        Ok(None) => schedule.latest_at_or_before(sync.clock.now()),
        Err(e) => {
            logger.warn(
                "cannot read the last scheduled sync; not catching up",
                &[("error", &e.to_string())],
            );
            schedule.latest_at_or_before(sync.clock.now())
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = sync.clock.now();
        if let Some(due) = schedule.latest_at_or_before(now)
            && done.is_none_or(|d| due > d)
        {
            run_slot(&state, &sync, due).await;
            done = Some(due);
            continue;
        }
        let Some(next) = schedule.next_after(now) else {
            logger.warn(
                "the schedule never fires again; scheduled sync stops",
                &[("schedule", schedule.as_str())],
            );
            return;
        };
        tokio::select! {
            () = sync.clock.sleep_until(next) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Claims `slot`; when won, syncs every provider, records the outcome and publishes it.
async fn run_slot(state: &State, sync: &ScheduledSync, slot: OffsetDateTime) {
    let logger = &state.logger;
    let mode = sync.options.mode;
    let slot_text = bridge_core::time::rfc3339(slot);
    match sync
        .store
        .claim(JOB.to_owned(), slot, sync.options.owner.clone())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            logger.info(
                "scheduled sync already claimed by another server; skipped",
                &[("slot", &slot_text)],
            );
            return;
        }
        Err(e) => {
            logger.warn(
                "cannot claim the scheduled sync's slot; skipped",
                &[("slot", &slot_text), ("error", &e.to_string())],
            );
            return;
        }
    }

    let mut results = Vec::new();
    let mut failed = Vec::new();
    let providers: Vec<String> = state
        .ops
        .providers()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    for provider in providers {
        if state.stopping() {
            break;
        }
        // Applies take the provider's lock inside the operation, as every apply does.
        let result = state
            .ops
            .sync_provider(&provider, mode, Origin::Scheduler)
            .await;
        let entry = match result.as_ref().map(|r| r.summary()) {
            Ok(r) => {
                if r.errors > 0 {
                    failed.push(provider.clone());
                }
                json!({
                    "provider": provider,
                    "status": r.status,
                    "changes": r.changes,
                    "errors": r.errors,
                })
            }
            Err(e) => {
                state.logger.warn(
                    "a scheduled sync failed",
                    &[("provider", &provider), ("error", &e.to_string())],
                );
                failed.push(provider.clone());
                json!({
                    "provider": provider,
                    "status": "failed",
                    "changes": 0,
                    "errors": 1,
                })
            }
        };
        results.push(entry);
    }

    let outcome = if failed.is_empty() {
        format!("ok ({} providers)", results.len())
    } else {
        format!(
            "failed: {} ({} of {} providers)",
            failed.join(", "),
            failed.len(),
            results.len()
        )
    };
    if let Err(e) = sync
        .store
        .finish(JOB.to_owned(), slot, outcome.clone())
        .await
    {
        logger.warn(
            "cannot record the scheduled sync's outcome",
            &[("slot", &slot_text), ("error", &e.to_string())],
        );
    }
    let payload = json!({
        "kind": "scheduled_sync",
        "slot": slot_text,
        "mode": mode.as_str(),
        "owner": sync.options.owner,
        "outcome": outcome,
        "results": Value::Array(results),
    });
    if let Err(e) = state
        .bus
        .publish("genesis.intent", payload, Role::System)
        .await
    {
        logger.warn(
            "cannot publish the scheduled sync's record",
            &[("slot", &slot_text), ("error", &e.to_string())],
        );
    }
    logger.info(
        "scheduled sync ran",
        &[
            ("slot", &slot_text),
            ("mode", mode.as_str()),
            ("outcome", &outcome),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn schedule(text: &str) -> Schedule {
        Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn nicknames_and_cron_expressions_parse() {
        let at = datetime!(2026-03-04 10:30:15.5 UTC); // a Wednesday
        let hourly = schedule("@hourly");
        assert_eq!(
            hourly.latest_at_or_before(at),
            Some(datetime!(2026-03-04 10:00 UTC))
        );
        assert_eq!(hourly.next_after(at), Some(datetime!(2026-03-04 11:00 UTC)));
        let daily = schedule("@daily");
        assert_eq!(
            daily.latest_at_or_before(at),
            Some(datetime!(2026-03-04 00:00 UTC))
        );
        assert_eq!(daily.next_after(at), Some(datetime!(2026-03-05 00:00 UTC)));
        assert_eq!(schedule("@midnight").next_after(at), daily.next_after(at));
        let weekly = schedule("@weekly");
        assert_eq!(
            weekly.latest_at_or_before(at),
            Some(datetime!(2026-03-01 00:00 UTC))
        );
        assert_eq!(weekly.next_after(at), Some(datetime!(2026-03-08 00:00 UTC)));
        let cron = schedule("*/15 9-17 * * 1-5");
        assert_eq!(cron.next_after(at), Some(datetime!(2026-03-04 10:45 UTC)));
        assert_eq!(
            cron.latest_at_or_before(at),
            Some(datetime!(2026-03-04 10:30 UTC))
        );
        assert_eq!(
            cron.next_after(datetime!(2026-03-06 17:50 UTC)),
            Some(datetime!(2026-03-09 09:00 UTC)),
            "Friday evening to Monday morning"
        );
        assert_eq!(cron.as_str(), "*/15 9-17 * * 1-5");
    }

    #[test]
    fn a_slot_is_its_own_latest_and_not_its_own_next() {
        let hourly = schedule("@hourly");
        let slot = datetime!(2026-03-04 10:00 UTC);
        assert_eq!(hourly.latest_at_or_before(slot), Some(slot));
        assert_eq!(
            hourly.next_after(slot),
            Some(datetime!(2026-03-04 11:00 UTC))
        );
        assert_eq!(
            hourly.latest_at_or_before(slot - time::Duration::nanoseconds(1)),
            Some(datetime!(2026-03-04 09:00 UTC))
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "",
            "  ",
            "@often",
            "* * * *",
            "0 * * * * *",
            "0 0 * * * 2026",
            "61 * * * *",
            "0 25 * * *",
            "x y z w v",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn impossible_dates_have_no_slot() {
        let never = schedule("0 0 31 2 *");
        assert_eq!(never.next_after(datetime!(2026-01-01 00:00 UTC)), None);
    }

    proptest! {
        /// For any instant: latest <= t < next, both slots of the schedule, with no slot
        /// strictly between them.
        #[test]
        fn latest_and_next_bracket_every_instant(
            secs in 1_700_000_000i64..1_900_000_000,
            which in 0usize..4,
        ) {
            let text = ["@hourly", "@daily", "@weekly", "7,37 */3 * * *"][which];
            let s = schedule(text);
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let latest = s.latest_at_or_before(t).unwrap();
            let next = s.next_after(t).unwrap();
            prop_assert!(latest <= t && t < next);
            prop_assert_eq!(s.next_after(latest), Some(next));
            prop_assert_eq!(s.latest_at_or_before(next), Some(next));
            prop_assert_eq!(latest.second(), 0);
        }
    }
}
