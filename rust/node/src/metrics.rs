//! Counters of a server, kept where the events happen (atomics and one small map), read when someone asks
//! (a Prometheus scrape, a log line): associations, rejections by reason, statuses sent by code, C-STORE
//! instances, bytes and latency.
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the C-STORE latency histogram buckets, in microseconds (the last one is +Inf).
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// A cumulative latency histogram (Prometheus' convention: each bucket counts observations <= its bound).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
    /// (cumulative counts per bucket bound, total count, sum of the observations in seconds).
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut acc = 0;
        let buckets = LATENCY_BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                acc += c.load(Ordering::Relaxed);
                (*b as f64 / 1e6, acc)
            })
            .collect();
        (
            buckets,
            self.count.load(Ordering::Relaxed),
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// A server's counters.
#[derive(Default)]
pub struct Metrics {
    pub associations_total: AtomicU64,
    pub associations_ended: AtomicU64,
    rejected: Mutex<BTreeMap<(u8, u8, u8), u64>>,
    statuses: Mutex<BTreeMap<(u16, u16), u64>>,
    pub instances_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub store_latency: Histogram,
}

impl Metrics {
    pub fn association_opened(&self) {
        self.associations_total.fetch_add(1, Ordering::Relaxed);
    }
    pub fn association_ended(&self) {
        self.associations_ended.fetch_add(1, Ordering::Relaxed);
    }
    pub fn rejected(&self, result: u8, source: u8, reason: u8) {
        *self
            .rejected
            .lock()
            .entry((result, source, reason))
            .or_default() += 1;
    }
    /// A final (or pending) response sent: its command field and status.
    pub fn status_sent(&self, field: u16, status: u16) {
        *self.statuses.lock().entry((field, status)).or_default() += 1;
    }
    /// A C-STORE data set received (whatever its outcome), its size and the time from its command to
    /// its response.
    pub fn stored(&self, bytes: u64, latency: Duration) {
        self.instances_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
        self.store_latency.observe(latency);
    }
    pub fn active(&self) -> u64 {
        self.associations_total
            .load(Ordering::Relaxed)
            .saturating_sub(self.associations_ended.load(Ordering::Relaxed))
    }
    pub fn rejections(&self) -> Vec<((u8, u8, u8), u64)> {
        self.rejected.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
    pub fn statuses(&self) -> Vec<((u16, u16), u64)> {
        self.statuses.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative() {
        let h = Histogram::default();
        for us in [100, 400, 400, 3_000, 10_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let (b, count, sum) = h.snapshot();
        assert_eq!(count, 5);
        assert_eq!(b[0], (0.00025, 1));
        assert_eq!(b[1], (0.0005, 3));
        assert_eq!(b[3], (0.0025, 3));
        assert_eq!(b[4], (0.005, 4));
        assert_eq!(b.last().unwrap().1, 4, "10 s is only in +Inf (the count)");
        assert!((sum - 10.0039).abs() < 1e-9);
    }

    #[test]
    fn counts_by_key() {
        let m = Metrics::default();
        m.association_opened();
        m.association_opened();
        m.association_ended();
        m.rejected(1, 1, 7);
        m.rejected(1, 1, 7);
        m.status_sent(0x8001, 0);
        m.status_sent(0x8001, 0xB007);
        m.status_sent(0x8001, 0);
        assert_eq!(m.active(), 1);
        assert_eq!(m.rejections(), vec![((1, 1, 7), 2)]);
        assert_eq!(m.statuses(), vec![((0x8001, 0), 2), ((0x8001, 0xB007), 1)]);
    }
}
