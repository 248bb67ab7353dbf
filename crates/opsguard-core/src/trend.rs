//! The fill trend of a disk, before it is full: a least-squares line
//! through the recent usage samples (Prometheus's `predict_linear`), and
//! whether, at that rate, the disk crosses its threshold within a horizon.
//!
//! Pure: the shell feeds each reading with the time it was made, and gets
//! a [`Forecast`] while the trend warns. A warning needs a line that is
//! really rising (its slope several standard errors above zero, over enough
//! samples spanning enough time), so a flat or shrinking disk never warns
//! and noise on a flat disk rarely does; once on, it stays on while the
//! crossing is within twice the horizon, so noise on a filling disk does not
//! make it flap.

use std::collections::VecDeque;

use crate::model::Timestamp;

/// Most samples kept, whatever the window: bounds memory and the fit's cost
/// when readings come faster than expected.
pub const MAX_SAMPLES: usize = 1024;
/// Fewest samples a line is fitted to.
pub const MIN_SAMPLES: usize = 8;
/// How many standard errors above zero the slope must be to start a warning.
const SIGNIFICANCE: f64 = 3.0;
/// A reading this many points below the one before is a drop, not noise.
pub const DROP_PCT: f64 = 2.0;
/// Slowest fill that counts, in percentage points per millisecond (0.01 %
/// a minute): below it the line is flat, whatever rounding says.
const MIN_RATE: f64 = 0.01 / 60_000.0;

/// How a trend is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrendSettings {
    /// Samples older than this, before the newest, are forgotten.
    pub window_ms: u64,
    /// A warning needs samples spanning at least this long.
    pub min_span_ms: u64,
    /// Warn when the threshold will be crossed within this long.
    pub horizon_ms: u64,
}

/// What the trend foresees while it warns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// The fill rate, in percentage points a minute.
    pub rate_pct_per_min: f64,
    /// The usage the line gives for now, percent.
    pub used_pct: f64,
    /// When the line crosses the threshold (now, if it already has).
    pub crosses_at: Timestamp,
}

/// The recent samples of one disk and whether they warn; see the module doc.
#[derive(Clone, Debug)]
pub struct FillTrend {
    settings: TrendSettings,
    threshold_pct: f64,
    samples: VecDeque<(Timestamp, f64)>,
    warning: bool,
}

/// A fitted line: slope in points per millisecond, value at the newest
/// sample, and the slope's standard error.
struct Fit {
    slope: f64,
    now: f64,
    stderr: f64,
}

impl FillTrend {
    /// A trend toward `threshold_pct`, with no samples yet.
    pub fn new(settings: TrendSettings, threshold_pct: f64) -> FillTrend {
        FillTrend { settings, threshold_pct, samples: VecDeque::new(), warning: false }
    }

    /// Whether the trend warns (as of the last sample).
    pub fn is_warning(&self) -> bool {
        self.warning
    }

    /// Forgets every sample (the disk was cleaned: the old line no longer holds).
    pub fn reset(&mut self) {
        self.samples.clear();
        self.warning = false;
    }

    /// Takes the reading `used_pct` made at `at`; the forecast while the
    /// trend warns. A reading that is not a number in 0..=100, or older than
    /// the newest, is ignored.
    pub fn observe(&mut self, at: Timestamp, used_pct: f64) -> Option<Forecast> {
        if !(0.0..=100.0).contains(&used_pct) || self.samples.back().is_some_and(|(t, _)| at < *t) {
            return self.forecast_at(at);
        }
        // A drop (a clean, a rotation) starts a new line: the readings
        // before it no longer describe the fill.
        if self.samples.back().is_some_and(|(_, last)| used_pct < last - DROP_PCT) {
            self.reset();
        }
        self.samples.push_back((at, used_pct));
        let oldest = Timestamp(at.0.saturating_sub(self.settings.window_ms));
        while self.samples.front().is_some_and(|(t, _)| *t < oldest) || self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.forecast_at(at)
    }

    fn forecast_at(&mut self, at: Timestamp) -> Option<Forecast> {
        let Some(fit) = self.fit() else {
            self.warning = false;
            return None;
        };
        let rising = fit.slope >= MIN_RATE;
        let left = (self.threshold_pct - fit.now).max(0.0);
        let crosses_in = if rising { left / fit.slope } else { f64::INFINITY };
        let horizon = self.settings.horizon_ms as f64;
        // A warning starts only when even the slowest fill the readings
        // allow (the slope less its margin of error) crosses within the
        // horizon: a short, noisy window can overstate the rate by half and
        // more, and a warning started on that would go out again as the
        // window fills (seen by the property suite, 1 case in ~10,000).
        let slowest = fit.slope - SIGNIFICANCE * fit.stderr;
        self.warning = if self.warning {
            rising && crosses_in <= 2.0 * horizon
        } else {
            rising && slowest > 0.0 && left / slowest <= horizon
        };
        self.warning.then(|| Forecast {
            rate_pct_per_min: fit.slope * 60_000.0,
            used_pct: fit.now,
            crosses_at: at.plus_millis(crosses_in.ceil() as u64),
        })
    }

    fn fit(&self) -> Option<Fit> {
        let n = self.samples.len();
        let (first, last) = (self.samples.front()?.0, self.samples.back()?.0);
        if n < MIN_SAMPLES || last.millis_since(first) < self.settings.min_span_ms.max(1) {
            return None;
        }
        // Times relative to the first sample keep the sums small and exact.
        let nf = n as f64;
        let t = |s: &(Timestamp, f64)| s.0.millis_since(first) as f64;
        let mean_t = self.samples.iter().map(t).sum::<f64>() / nf;
        let mean_y = self.samples.iter().map(|s| s.1).sum::<f64>() / nf;
        let (mut sxx, mut sxy) = (0.0, 0.0);
        for s in &self.samples {
            let dt = t(s) - mean_t;
            sxx += dt * dt;
            sxy += dt * (s.1 - mean_y);
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let residuals: f64 = self
            .samples
            .iter()
            .map(|s| {
                let r = s.1 - (mean_y + slope * (t(s) - mean_t));
                r * r
            })
            .sum();
        let stderr = (residuals / (nf - 2.0) / sxx).sqrt();
        let now = mean_y + slope * (t(self.samples.back()?) - mean_t);
        Some(Fit { slope, now, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);
    const SETTINGS: TrendSettings = TrendSettings { window_ms: 60_000, min_span_ms: 20_000, horizon_ms: 600_000 };

    #[test]
    fn a_steady_fill_warns_once_the_crossing_is_within_the_horizon_and_says_when() {
        // 0.1 point a second from 10 %: 85 % at 750 s.
        let mut trend = FillTrend::new(SETTINGS, 85.0);
        let mut first = None;
        for i in 0..1_400u64 {
            let at = T0.plus_millis(i * 500);
            if let Some(f) = trend.observe(at, 10.0 + 0.05 * i as f64) {
                first.get_or_insert((at, f));
            }
        }
        let (at, f) = first.expect("a warning");
        // 10 minutes before the crossing, give or take a sample's rounding.
        assert!((150_000..=150_500).contains(&at.millis_since(T0)), "{at:?}");
        assert!((f.rate_pct_per_min - 6.0).abs() < 1e-6, "{f:?}");
        assert!(f.crosses_at.0.abs_diff(T0.plus_millis(750_000).0) <= 1, "{f:?}");
    }

    #[test]
    fn too_few_samples_or_too_short_a_span_say_nothing() {
        let mut trend = FillTrend::new(SETTINGS, 85.0);
        for i in 0..39u64 {
            assert_eq!(trend.observe(T0.plus_millis(i * 500), 80.0 + i as f64 * 0.1), None, "span under 20 s");
        }
        let mut sparse = FillTrend::new(SETTINGS, 85.0);
        for i in 0..7u64 {
            assert_eq!(sparse.observe(T0.plus_millis(i * 10_000), 50.0 + i as f64), None, "7 samples");
        }
    }

    #[test]
    fn a_drop_starts_a_new_line() {
        let mut trend = FillTrend::new(SETTINGS, 85.0);
        for i in 0..100u64 {
            trend.observe(T0.plus_millis(i * 500), 40.0 + 0.2 * i as f64);
        }
        assert!(trend.is_warning());
        assert_eq!(trend.observe(T0.plus_millis(50_000), 10.0), None, "cleaned");
        assert_eq!(trend.samples.len(), 1);
    }

    #[test]
    fn hostile_readings_are_ignored() {
        let mut trend = FillTrend::new(SETTINGS, 85.0);
        for (i, v) in [f64::NAN, f64::INFINITY, -1.0, 100.5].into_iter().enumerate() {
            assert_eq!(trend.observe(T0.plus_millis(i as u64), v), None);
        }
        assert!(trend.samples.is_empty());
        trend.observe(T0.plus_millis(1_000), 10.0);
        trend.observe(T0, 20.0);
        assert_eq!(trend.samples.len(), 1, "a reading older than the newest is dropped");
    }

    #[test]
    fn a_reset_forgets_the_line() {
        let mut trend = FillTrend::new(SETTINGS, 85.0);
        for i in 0..200u64 {
            trend.observe(T0.plus_millis(i * 500), 40.0 + 0.2 * i as f64);
        }
        assert!(trend.is_warning());
        trend.reset();
        assert!(!trend.is_warning());
        assert_eq!(trend.observe(T0.plus_millis(100_500), 5.0), None);
    }
}
