//! Fault-injection state of one emulator: latency, random failures from a
//! seeded PRNG, a fixed-window rate limiter and the write budget. The
//! middleware in `layer.rs` consults it on every request.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The knobs a test can turn at run time through a handle.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultSettings {
    pub(crate) latency: Duration,
    pub(crate) error_rate: f64,
    pub(crate) rate_limit: Option<u32>,
    pub(crate) page_size: Option<usize>,
    pub(crate) fail_after_writes: Option<u64>,
}

/// xorshift64*: tiny, deterministic and good enough to decide "fail or not";
/// the crate must not pull in `rand` just for this.
#[derive(Clone, Debug)]
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 scrambles the seed so that 0 and small seeds still give
        // a non-zero, well-mixed xorshift state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let out = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // 53 high bits give every representable step of an f64 mantissa.
        (out >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the rate limiter decided for one request, plus the numbers the
/// platform's rate-limit headers report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateInfo {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) used: u32,
    /// Whole seconds until the window resets, at least 1.
    pub(crate) reset_after_secs: u64,
    /// Unix time at which the window resets.
    pub(crate) reset_epoch: u64,
    pub(crate) exceeded: bool,
}

/// A fixed window: the first request after the previous window expired opens
/// a new one. Simpler than a token bucket and it makes "N per second" exact,
/// which keeps rate-limit tests deterministic.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateWindow {
    started: Option<Instant>,
    count: u32,
}

impl RateWindow {
    /// Admits or rejects one request. With `enforce == false` the window only
    /// counts, so headers look plausible while nothing is ever refused.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        limit: u32,
        len: Duration,
        enforce: bool,
    ) -> RateInfo {
        let start = match self.started {
            Some(s) if now.duration_since(s) < len => s,
            _ => {
                self.started = Some(now);
                self.count = 0;
                now
            }
        };
        let exceeded = enforce && self.count >= limit;
        if !exceeded {
            self.count = self.count.saturating_add(1);
        }
        let left = (start + len).saturating_duration_since(now);
        let reset_after_secs = ceil_secs(left).max(1);
        let epoch_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        RateInfo {
            limit,
            remaining: limit.saturating_sub(self.count),
            used: self.count,
            reset_after_secs,
            reset_epoch: epoch_now + reset_after_secs,
            exceeded,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Everything the middleware mutates under one lock, so a request's rate
/// decision and its failure draw are taken atomically.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub(crate) settings: FaultSettings,
    pub(crate) prng: Prng,
    pub(crate) window: RateWindow,
}

/// The fault decision for one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decision {
    pub(crate) rate: RateInfo,
    pub(crate) inject_error: bool,
}

impl FaultState {
    pub(crate) fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            settings,
            prng: Prng::new(seed),
            window: RateWindow::default(),
        }
    }

    /// `nominal` is the platform's advertised limit, reported in headers when
    /// no test limit is configured.
    pub(crate) fn decide(&mut self, now: Instant, nominal: (u32, Duration)) -> Decision {
        let rate = match self.settings.rate_limit {
            Some(n) => self.window.admit(now, n, Duration::from_secs(1), true),
            None => self.window.admit(now, nominal.0, nominal.1, false),
        };
        // Drawing on every request keeps the failure sequence a pure function
        // of the seed and the request index, whatever the other settings are.
        let draw = self.prng.next_f64();
        Decision {
            rate,
            inject_error: !rate.exceeded && draw < self.settings.error_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_and_in_range() {
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        let mut c = Prng::new(8);
        let xs: Vec<f64> = (0..100).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next_f64()).collect();
        let zs: Vec<f64> = (0..100).map(|_| c.next_f64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mut z = Prng::new(0);
        assert!((0..10).map(|_| z.next_f64()).any(|x| x > 0.0));
    }

    #[test]
    fn prng_rate_roughly_matches() {
        let mut p = Prng::new(42);
        let hits = (0..10_000).filter(|_| p.next_f64() < 0.25).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }

    #[test]
    fn window_limits_and_reopens() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        assert!(!w.admit(t0, 2, sec, true).exceeded);
        let second = w.admit(t0, 2, sec, true);
        assert!(!second.exceeded);
        assert_eq!(second.remaining, 0);
        let third = w.admit(t0 + Duration::from_millis(10), 2, sec, true);
        assert!(third.exceeded);
        assert_eq!(third.reset_after_secs, 1);
        let later = w.admit(t0 + Duration::from_millis(1_001), 2, sec, true);
        assert!(!later.exceeded);
        assert_eq!(later.used, 1);
    }

    #[test]
    fn unenforced_window_never_refuses() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let infos: Vec<_> = (0..5)
            .map(|_| w.admit(t0, 2, Duration::from_secs(60), false))
            .collect();
        assert!(infos.iter().all(|i| !i.exceeded));
        assert_eq!(infos[4].remaining, 0);
        assert_eq!(infos[0].reset_after_secs, 60);
    }

    #[test]
    fn error_rate_one_always_injects_zero_never() {
        let mut s = FaultState::new(
            FaultSettings {
                error_rate: 1.0,
                ..FaultSettings::default()
            },
            1,
        );
        let nominal = (100, Duration::from_secs(60));
        assert!((0..20).all(|_| s.decide(Instant::now(), nominal).inject_error));
        s.settings.error_rate = 0.0;
        assert!((0..20).all(|_| !s.decide(Instant::now(), nominal).inject_error));
    }
}
