//! The one middleware every emulated route goes through (latency, stats,
//! rate limit, auth, injected failures, write budget), the per-emulator
//! `Core` it works on, and the `/_emulator/*` control routes. Platform
//! modules only hold their routes and state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};

use crate::common::lock;
use crate::faults::{Decision, FaultSettings, FaultState};
use crate::platform::Platform;
use crate::stats::Stats;
use crate::write_log::{BodyKey, WriteRecord, key_in_path};

/// Shared, platform-agnostic state of one running emulator.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) platform: Platform,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub(crate) root_url: String,
    stats: Mutex<Stats>,
    write_log: Mutex<Vec<WriteRecord>>,
    faults: Mutex<FaultState>,
    render_reset_epoch: AtomicBool,
}

impl Core {
    pub(crate) fn new(
        platform: Platform,
        root_url: String,
        settings: FaultSettings,
        seed: u64,
    ) -> Self {
        Self {
            platform,
            root_url,
            stats: Mutex::new(Stats::default()),
            write_log: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultState::new(settings, seed)),
            render_reset_epoch: AtomicBool::new(false),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub(crate) fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
        lock(&self.write_log).clear();
    }

    pub(crate) fn write_log(&self) -> Vec<WriteRecord> {
        lock(&self.write_log).clone()
    }

    pub(crate) fn take_write_log(&self) -> Vec<WriteRecord> {
        std::mem::take(&mut *lock(&self.write_log))
    }

    pub(crate) fn update_faults(&self, f: impl FnOnce(&mut FaultSettings)) {
        let mut state = lock(&self.faults);
        let before = state.settings.rate_limit;
        f(&mut state.settings);
        // A new limit must not inherit the count of a window sized for the
        // old one.
        if state.settings.rate_limit != before {
            state.window.reset();
        }
    }

    pub(crate) fn page_size(&self) -> Option<usize> {
        lock(&self.faults).settings.page_size
    }

    pub(crate) fn set_render_reset_epoch(&self, epoch: bool) {
        self.render_reset_epoch.store(epoch, Ordering::Relaxed);
    }

    fn decide(&self) -> Decision {
        lock(&self.faults).decide(Instant::now(), self.platform.nominal_limit())
    }

    fn writes_exhausted(&self) -> bool {
        let limit = lock(&self.faults).settings.fail_after_writes;
        limit.is_some_and(|n| lock(&self.stats).writes >= n)
    }

    fn latency(&self) -> std::time::Duration {
        lock(&self.faults).settings.latency
    }
}

/// How the middleware treats a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// An authenticated API route; its mutating methods are env-var writes.
    Api,
    /// A deploy/build hook: the URL is the secret, so no `Authorization`,
    /// and it is not an env-var write.
    Hook,
    /// No route matched: authenticated, never a write, answers 404.
    Unmatched,
}

#[derive(Clone, Debug)]
struct RouteCtx {
    core: Arc<Core>,
    template: &'static str,
    kind: RouteKind,
}

/// Registers `template` with the shared middleware wrapped around it. The
/// template is captured here rather than read from `MatchedPath`, which would
/// need an axum feature the workspace does not enable.
pub(crate) fn route<S>(
    router: Router<S>,
    core: &Arc<Core>,
    template: &'static str,
    kind: RouteKind,
    methods: MethodRouter<S>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let ctx = RouteCtx {
        core: Arc::clone(core),
        template,
        kind,
    };
    router.route(template, methods.layer(from_fn_with_state(ctx, guard)))
}

/// Adds `/_emulator/*` and the platform-shaped 404 fallback to a platform's
/// routes.
pub(crate) fn finish(core: &Arc<Core>, routes: Router) -> Router {
    let ctx = RouteCtx {
        core: Arc::clone(core),
        template: "<unmatched>",
        kind: RouteKind::Unmatched,
    };
    let fallback = any(unmatched)
        .with_state(Arc::clone(core))
        .layer(from_fn_with_state(ctx, guard));
    Router::new()
        .route("/_emulator/stats", get(stats_handler))
        .route("/_emulator/reset", post(reset_handler))
        .with_state(Arc::clone(core))
        .merge(routes)
        .fallback_service(fallback)
}

async fn stats_handler(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.stats()).into_response()
}

async fn reset_handler(State(core): State<Arc<Core>>) -> StatusCode {
    core.reset_stats();
    StatusCode::NO_CONTENT
}

async fn unmatched(State(core): State<Arc<Core>>) -> Response {
    let p = core.platform;
    p.error(StatusCode::NOT_FOUND, p.message(StatusCode::NOT_FOUND))
}

fn is_mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The order matters: a request is counted first (so 401/429/5xx show up in
/// stats), then refused by the rate limiter before auth (the limiter sees
/// every request, like a front proxy), then auth, then injected failures. All
/// refusals happen before the handler runs, so they never change state.
async fn guard(State(ctx): State<RouteCtx>, req: Request, next: Next) -> Response {
    let core = &ctx.core;
    let platform = core.platform;
    let latency = core.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = req.method().clone();
    lock(&core.stats).record_request(format!("{method} {}", ctx.template));
    let is_write = ctx.kind == RouteKind::Api && is_mutating(&method);
    let path = is_write.then(|| req.uri().path().to_owned());
    let decision = core.decide();

    let mut response = if decision.rate.exceeded {
        let status = StatusCode::TOO_MANY_REQUESTS;
        platform.error(status, platform.message(status))
    } else if ctx.kind != RouteKind::Hook && !platform.authorized(req.headers()) {
        let status = StatusCode::UNAUTHORIZED;
        platform.error(status, platform.message(status))
    } else if decision.inject_error {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        platform.error(status, platform.message(status))
    } else if is_write && core.writes_exhausted() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        platform.error(status, platform.message(status))
    } else {
        let response = next.run(req).await;
        if is_write && response.status().is_success() {
            lock(&core.stats).record_write();
        }
        response
    };
    if let Some(path) = path {
        let key = match response.extensions_mut().remove::<BodyKey>() {
            Some(BodyKey(key)) => Some(key),
            None => key_in_path(ctx.template, &path),
        };
        lock(&core.write_log).push(WriteRecord {
            method: method.to_string(),
            path,
            key,
            status: response.status().as_u16(),
        });
    }
    platform.rate_headers(
        &decision.rate,
        core.render_reset_epoch.load(Ordering::Relaxed),
        response.headers_mut(),
    );
    response
}

/// Generates the stats and fault controls every handle shares, so the three
/// handles expose identical inherent methods without a trait import.
macro_rules! fault_controls {
    ($handle:ty) => {
        impl $handle {
            /// Counters since start or the last reset (not counting this call).
            pub fn stats(&self) -> $crate::Stats {
                self.core.stats()
            }

            /// Zeroes the counters and empties the write log; this also restarts
            /// the `fail_after_writes` budget, which counts successful writes.
            pub fn reset_stats(&self) {
                self.core.reset_stats();
            }

            /// Every write request since start or the last reset, oldest first.
            pub fn write_log(&self) -> Vec<$crate::WriteRecord> {
                self.core.write_log()
            }

            /// The write log, emptied as it is read: what was written since the
            /// last call, for a test that looks at one phase at a time.
            pub fn take_write_log(&self) -> Vec<$crate::WriteRecord> {
                self.core.take_write_log()
            }

            /// After `n` successful writes every further write answers 500;
            /// `None` disables.
            pub fn set_fail_after_writes(&self, n: Option<u64>) {
                self.core.update_faults(|f| f.fail_after_writes = n);
            }

            /// Delay added before every answer.
            pub fn set_latency(&self, d: std::time::Duration) {
                self.core.update_faults(|f| f.latency = d);
            }

            /// Requests per second before 429; `None` disables.
            pub fn set_rate_limit(&self, per_sec: Option<u32>) {
                self.core.update_faults(|f| f.rate_limit = per_sec);
            }

            /// Probability in `[0, 1]` of an injected 503.
            pub fn set_error_rate(&self, r: f64) {
                self.core
                    .update_faults(|f| f.error_rate = r.clamp(0.0, 1.0));
            }

            /// Overrides the default page size of list endpoints.
            pub fn set_page_size(&self, n: Option<usize>) {
                self.core.update_faults(|f| f.page_size = n);
            }
        }
    };
}
pub(crate) use fault_controls;
