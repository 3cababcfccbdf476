//! A token bucket per client address for the writes anyone may send without logging in
//! (login, refresh, setup): one noisy or hostile machine on the LAN cannot keep the password
//! hasher busy for everyone else. IPv6 clients are counted per /64, the block one host holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Above this many tracked addresses, buckets that have refilled are forgotten.
const FORGET_ABOVE: usize = 10_000;

/// The limiter: `burst` requests at once, refilled at `per_minute`.
pub struct PublicLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PublicLimit {
    pub fn new(per_minute: u32, burst: u32) -> PublicLimit {
        PublicLimit {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `ip` at `now`; when none is left, the whole seconds to wait.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = client_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > FORGET_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refilled(*b, now, per_second, burst) < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refilled(*bucket, now, self.per_second, self.burst);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { tokens, at: now };
        let wait = (1.0 - tokens) / self.per_second;
        Err((wait.ceil() as u64).max(1))
    }
}

fn refilled(bucket: Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}

/// The address requests (and failed logins) are counted under: IPv4 as is, IPv6 by its /64, the
/// block one host holds (so it cannot step around a limit by changing its address).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_address_waits_for_the_refill() {
        let limit = PublicLimit::new(60, 3);
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.take(ip, start), Ok(()));
        }
        assert_eq!(limit.take(ip, start), Err(1));
        // Another till is not affected.
        assert_eq!(limit.take("192.168.1.21".parse().unwrap(), start), Ok(()));
        // One token a second comes back.
        assert_eq!(limit.take(ip, start + Duration::from_millis(1_100)), Ok(()));
        assert_eq!(limit.take(ip, start + Duration::from_millis(1_200)), Err(1));
    }

    #[test]
    fn ipv6_hosts_are_counted_per_64_block() {
        let limit = PublicLimit::new(60, 1);
        let now = Instant::now();
        assert_eq!(limit.take("2001:db8::1".parse().unwrap(), now), Ok(()));
        assert!(
            limit
                .take("2001:db8::abcd:2".parse().unwrap(), now)
                .is_err()
        );
        assert_eq!(limit.take("2001:db8:0:1::1".parse().unwrap(), now), Ok(()));
        // An IPv4 client seen through a dual-stack socket is the same client.
        assert_eq!(limit.take("10.0.0.9".parse().unwrap(), now), Ok(()));
        assert!(limit.take("::ffff:10.0.0.9".parse().unwrap(), now).is_err());
    }
}
