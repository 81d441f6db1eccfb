//! Per-client limits: who the client is (behind a proxy on loopback, the last hop of
//! `X-Forwarded-For`), and a token bucket per client.

use super::http::client_group;
use hyper::HeaderMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle (full) ones are forgotten.
const MAX_TRACKED: usize = 65_536;

/// The address a request is charged to. A peer on loopback is the reverse proxy: the
/// client is the last address it appended to `X-Forwarded-For` (earlier entries are
/// whatever the client chose to send). Anyone else is taken at their word: their own
/// address.
/// An IPv4 proxy reaching a `[::]` listener shows up as `::ffff:127.0.0.1`: the same
/// loopback.
pub(super) fn client_ip(peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let ip = peer.ip().to_canonical();
    if !ip.is_loopback() {
        return ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        .map_or(ip, |hop| hop.to_canonical())
}

/// A token bucket per client: `burst` requests at once, then `rate` per second.
/// IPv6 clients are grouped by /64, the block one subscriber line usually gets.
pub(super) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    // Monotonic, not the time of day: rates are measured, not scheduled.
    last: Instant,
}

impl RateLimiter {
    /// `None` when `rate` is 0 (no limit).
    pub(super) fn new(rate: f64, burst: u32) -> Option<RateLimiter> {
        (rate > 0.0).then(|| RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `ip`; false when the client is over its rate.
    pub(super) fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let key = client_group(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refilled(b, now, rate, burst) < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, self.rate, self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refilled(b: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let limiter = RateLimiter::new(2.0, 3).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at(ip, t0)));
        assert!(!limiter.allow_at(ip, t0));
        assert!(limiter.allow_at(other, t0));
        assert!(limiter.allow_at(ip, t0 + Duration::from_millis(500)));
        assert!(!limiter.allow_at(ip, t0 + Duration::from_millis(500)));
        assert!(RateLimiter::new(0.0, 10).is_none());
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        let limiter = RateLimiter::new(1.0, 1).unwrap();
        let t0 = Instant::now();
        assert!(limiter.allow_at("2001:db8:1:2::1".parse().unwrap(), t0));
        assert!(!limiter.allow_at("2001:db8:1:2::ffff".parse().unwrap(), t0));
        assert!(limiter.allow_at("2001:db8:1:3::1".parse().unwrap(), t0));
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_loopback() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.9.9.9, 203.0.113.7".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let direct: SocketAddr = "198.51.100.4:5000".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &headers),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(direct, &headers), direct.ip());
        let mapped_proxy: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(
            client_ip(mapped_proxy, &headers),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &headers), proxy.ip());
    }
}
