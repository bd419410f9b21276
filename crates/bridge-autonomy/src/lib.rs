//! Autonomy: what `genesisctl serve` runs beside its requests, each a durable consumer of
//! the bus woken by its live feed (and every second, for events other processes stored):
//!
//! - [`reactions`]: heal drift, answer failed deploys (heal and redeploy, or escalate),
//!   verify after successful ones, check the schema after each commit;
//! - [`scheduler`]: the scheduled sync (`ENVSYNC_SCHEDULE`, `ENVSYNC_MODE`), once across
//!   every server sharing the store;
//! - [`workers`]: the ledger's feed and the `config_update` cascade.
//!
//! Every write goes through [`bridge_operations::Operations`], so a heal takes the same apply
//! lock and publishes the same events as an API or CLI apply. Shutdown is bounded
//! ([`Workers::finish`]): work stops between events, what is left unacknowledged is
//! redelivered on the next start, and the ledger's feed runs last.

pub mod reactions;
pub mod scheduler;
mod wake;
pub mod workers;

use std::sync::Arc;

use bridge_genesis::bus::Bus;
use bridge_genesis::ledger::LedgerAccess;
use bridge_operations::{Logger, Operations};
use tokio::sync::watch;

pub use crate::reactions::AutonomyOptions;
pub use crate::scheduler::{Clock, Schedule, ScheduledSync, SchedulerOptions, TestClock};
pub use crate::workers::{Finished, Workers};

/// What the workers need.
pub struct WorkerParts {
    pub bus: Bus,
    pub ops: Arc<Operations<'static>>,
    pub ledger: LedgerAccess,
    /// The reactions' mode, thresholds and deploy hooks.
    pub options: AutonomyOptions,
    /// The scheduled sync and the store its slots are claimed in; `None`: none.
    pub scheduler: Option<ScheduledSync>,
    pub logger: Logger,
}

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) bus: Bus,
    pub(crate) ops: Arc<Operations<'static>>,
    pub(crate) ledger: LedgerAccess,
    pub(crate) options: AutonomyOptions,
    pub(crate) logger: Logger,
    /// Flips to true when shutdown begins: workers stop between events.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

pub(crate) type State = Arc<Shared>;
