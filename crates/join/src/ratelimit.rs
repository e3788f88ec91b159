//! Per-source-IP token buckets for failed join attempts.
//!
//! Only failures drain a bucket, so a node with a good token is never slowed by its own joins;
//! a source whose bucket is empty is refused before its credential is even looked at, which
//! bounds both guessing and the etcd load an attacker can cause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Bucket size and refill speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Failures allowed in a burst.
    pub burst: f64,
    /// Failures forgiven per second.
    pub refill_per_second: f64,
}

impl Default for RateLimit {
    /// Ten failures at once, then one every two seconds.
    fn default() -> Self {
        Self {
            burst: 10.0,
            refill_per_second: 0.5,
        }
    }
}

/// Buckets beyond this count trigger a sweep of the full ones.
const SWEEP_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every source that failed recently.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when `source` may try (its bucket holds at least one failure's worth).
    pub fn allows(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock");
        buckets
            .get_mut(&source)
            .is_none_or(|bucket| self.refill(bucket, now) >= 1.0)
    }

    /// Records a failure of `source`.
    pub fn record_failure(&self, source: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock");
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, bucket| self.refill(bucket, now) < self.limit.burst);
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: self.limit.burst,
            updated: now,
        });
        let available = self.refill(bucket, now);
        bucket.tokens = (available - 1.0).max(0.0);
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) -> f64 {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * self.limit.refill_per_second).min(self.limit.burst);
        bucket.updated = now;
        bucket.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_drain_only_their_source() {
        let limiter = FailureLimiter::new(RateLimit {
            burst: 3.0,
            refill_per_second: 0.0,
        });
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let good: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.allows(bad));
            limiter.record_failure(bad);
        }
        assert!(!limiter.allows(bad));
        assert!(limiter.allows(good));
    }

    #[test]
    fn buckets_refill() {
        let limiter = FailureLimiter::new(RateLimit {
            burst: 1.0,
            refill_per_second: 1e9,
        });
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        limiter.record_failure(source);
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(limiter.allows(source));
    }
}
