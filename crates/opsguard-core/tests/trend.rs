//! The fill trend's properties on generated disks: a steady fill is
//! foreseen with the right crossing time, a flat or shrinking disk never
//! warns, and a noisy fill warns once and stays warned (no flapping).
//!
//! Mutation checks, each making it fail: dropping the hysteresis (the
//! warning held at twice the horizon) in `FillTrend::forecast_at` (the noisy
//! fill flaps); fitting the line's value at the mean time instead of the newest sample
//! (the crossing time is off by half the window).

use opsguard_core::model::Timestamp;
use opsguard_core::trend::{FillTrend, TrendSettings};
use proptest::prelude::*;

// The suite's own knob (as in the root package's suites), not the core reading its environment.
#[allow(clippy::disallowed_methods)]
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const T0: Timestamp = Timestamp(1_700_000_000_000);
const THRESHOLD: f64 = 85.0;

fn settings(horizon_s: u64) -> TrendSettings {
    TrendSettings { window_ms: 60_000, min_span_ms: 20_000, horizon_ms: horizon_s * 1000 }
}

/// A deterministic noise in -1..=1 (a linear congruential generator).
fn noise(seed: &mut u64) -> f64 {
    *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

proptest! {
    #![proptest_config(config())]

    /// Every warning of a steady fill gives the true crossing time (within
    /// a sample period), and the first comes no later than one sample period
    /// after the crossing entered the horizon, once the window is full enough.
    #[test]
    fn a_steady_fill_is_foreseen_at_the_right_time(
        start in 0.0f64..60.0,
        rate_per_min in 0.5f64..30.0,
        horizon_s in 60u64..1_200,
        period_ms in 200u64..5_000,
    ) {
        let mut trend = FillTrend::new(settings(horizon_s), THRESHOLD);
        let slope = rate_per_min / 60_000.0;
        let crossing_ms = (THRESHOLD - start) / slope;
        let mut first = None;
        let mut i = 0u64;
        while (i * period_ms) as f64 <= crossing_ms {
            let t = i * period_ms;
            let at = T0.plus_millis(t);
            if let Some(f) = trend.observe(at, start + slope * t as f64) {
                first.get_or_insert(t);
                let expected = T0.0 as f64 + crossing_ms;
                prop_assert!((f.crosses_at.0 as f64 - expected).abs() <= 2.0, "{f:?} vs {expected}");
                prop_assert!((f.rate_pct_per_min - rate_per_min).abs() <= 1e-6 * rate_per_min.max(1.0));
            }
            i += 1;
        }
        // Warned by the later of: the crossing within the horizon, the
        // window spanning 20 s with 8 samples; a sample period of slack.
        let due = (crossing_ms - (horizon_s * 1000) as f64).max(20_000f64.max(7.0 * period_ms as f64));
        if due + (period_ms as f64) < crossing_ms {
            let first = first.expect("a warning before the crossing");
            prop_assert!(first as f64 <= due + period_ms as f64, "first {first} ms, due {due} ms");
        }
    }

    /// A disk that never grows (flat, shrinking, or both, in any steps)
    /// never warns.
    #[test]
    fn a_flat_or_shrinking_disk_never_warns(
        start in 0.0f64..100.0,
        drops in proptest::collection::vec((0u8..4, 0.0f64..2.0), 10..400),
        period_ms in 100u64..5_000,
    ) {
        let mut trend = FillTrend::new(settings(600), THRESHOLD);
        let mut used = start;
        for (i, (kind, step)) in drops.into_iter().enumerate() {
            // Mostly flat, sometimes a drop.
            if kind == 0 {
                used = (used - step).max(0.0);
            }
            prop_assert_eq!(trend.observe(T0.plus_millis(i as u64 * period_ms), used), None);
        }
    }

    /// A fill with noise on it warns at most once: never on, off, and on
    /// again, up to the crossing.
    #[test]
    fn a_noisy_fill_does_not_flap(
        start in 0.0f64..50.0,
        rate_per_min in 2.0f64..30.0,
        amplitude in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let mut trend = FillTrend::new(settings(600), THRESHOLD);
        let slope = rate_per_min / 60_000.0;
        let mut seed = seed;
        let (mut on, mut switches) = (false, 0);
        let mut t = 0u64;
        while start + slope * t as f64 <= 100.0 {
            let used = (start + slope * t as f64 + amplitude * noise(&mut seed)).clamp(0.0, 100.0);
            let warns = trend.observe(T0.plus_millis(t), used).is_some();
            if warns != on {
                switches += 1;
                on = warns;
            }
            t += 500;
        }
        prop_assert!(on, "still warning at 100 %");
        prop_assert_eq!(switches, 1);
    }
}
