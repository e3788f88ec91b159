//! Restart delays: exponential with jitter, capped, and reset after a stable run.
//!
//! Jitter keeps components that died together (etcd lost its disk, everything behind it fell over)
//! from restarting in lockstep; the reset means a component that crashes once a day restarts after
//! the first step, not after the cap.

use std::time::Duration;

/// How restart delays grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Relative spread around each step: 0.1 gives a delay within ±10 % of the step.
    pub jitter: f64,
    /// A run at least this long resets the delay to `initial`.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    /// 0.5 s doubling to 30 s, ±10 % jitter, reset after 10 s of running.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter: 0.1,
            reset_after: Duration::from_secs(10),
        }
    }
}

/// The delay sequence of one component.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    step: u32,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        Self { policy, step: 0 }
    }

    /// Takes into account how long the process ran before it exited.
    pub(crate) fn record_run(&mut self, ran: Duration) {
        if ran >= self.policy.reset_after {
            self.step = 0;
        }
    }

    /// The delay before the next restart; each call moves one step further.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.step_delay();
        self.step = self.step.saturating_add(1);
        let spread = self.policy.jitter.clamp(0.0, 1.0);
        if spread == 0.0 {
            return base;
        }
        let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(factor).min(self.policy.max)
    }

    fn step_delay(&self) -> Duration {
        let doubling = 2u32.saturating_pow(self.step.min(31));
        self.policy
            .initial
            .saturating_mul(doubling)
            .min(self.policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(BackoffPolicy {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            jitter: 0.0,
            reset_after: Duration::from_secs(10),
        })
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = exact(500, 30_000);
        let delays: Vec<_> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn never_overflows() {
        let mut backoff = exact(500, 30_000);
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
    }

    #[test]
    fn a_stable_run_resets_and_a_short_one_does_not() {
        let mut backoff = exact(500, 30_000);
        backoff.next_delay();
        backoff.next_delay();
        backoff.record_run(Duration::from_secs(9));
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
        backoff.record_run(Duration::from_secs(10));
        assert_eq!(backoff.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let mut backoff = Backoff::new(BackoffPolicy::default());
        for _ in 0..200 {
            let first = backoff.next_delay();
            assert!((450..=550).contains(&first.as_millis()), "{first:?}");
            backoff.record_run(Duration::from_secs(60));
        }
    }
}
