//! `rate_per_second` as a token bucket shared by every connection. With a shared
//! store (several senders on one send), each sender takes an equal share of the rate:
//! `rate_per_second / live senders`, the count its heartbeat keeps up to date.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    per_second: f64,
    /// How many senders share the rate (none: this one alone).
    senders: Option<Arc<AtomicUsize>>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refills for the time passed, then takes a token, or says how long to wait.
    fn take(&mut self, now: Instant, per_second: f64) -> Option<Duration> {
        let capacity = per_second.max(1.0);
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + passed * per_second).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

impl RateLimiter {
    /// `per_second` 0 means unlimited. The bucket holds one second's worth.
    pub fn new(per_second: f64) -> RateLimiter {
        Self::shared(per_second, None)
    }

    /// A limiter whose rate is split among the `senders` of one send.
    pub fn shared(per_second: f64, senders: Option<Arc<AtomicUsize>>) -> RateLimiter {
        RateLimiter {
            per_second,
            senders,
            bucket: Mutex::new(Bucket {
                tokens: per_second.max(1.0),
                at: Instant::now(),
            }),
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        if self.per_second <= 0.0 {
            return;
        }
        loop {
            let share = self
                .senders
                .as_ref()
                .map_or(1, |n| n.load(Ordering::Relaxed).max(1));
            let wait = self
                .bucket
                .lock()
                .await
                .take(Instant::now(), self.per_second / share as f64);
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_spaces_tokens() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 10.0,
            at: t0,
        };
        for _ in 0..10 {
            assert_eq!(b.take(t0, 10.0), None);
        }
        let wait = b.take(t0, 10.0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9);
        assert_eq!(b.take(t0 + Duration::from_millis(100), 10.0), None);
        // A long idle time refills only up to the capacity.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(b.take(later, 10.0), None);
        }
        assert!(b.take(later, 10.0).is_some());
    }
}
