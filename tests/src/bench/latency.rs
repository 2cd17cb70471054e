//! Latency histograms that several client runs can pool: a client prints the latencies of
//! its requests as `lat_hist=` (bucket:count pairs), and the bench adds the windows of a
//! phase together before taking a percentile, instead of averaging percentiles.
//!
//! Buckets keep the six most significant bits of a latency in microseconds: exact below
//! 64 µs, within 1/32 (about 3 %) above. A bucket is named by its lower bound.

use std::collections::BTreeMap;

/// The significant bits a bucket keeps.
const BITS: u32 = 6;

/// The lower bound of the bucket that holds `us`.
pub(crate) fn bucket(us: u32) -> u32 {
    let width = 32 - us.leading_zeros();
    if width <= BITS {
        us
    } else {
        let drop = width - BITS;
        (us >> drop) << drop
    }
}

/// A histogram of latencies in microseconds: bucket lower bound -> requests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Histogram(BTreeMap<u32, u64>);

impl Histogram {
    /// The histogram of `latencies_us`.
    pub(crate) fn of(latencies_us: &[u32]) -> Histogram {
        let mut h = Histogram::default();
        for &us in latencies_us {
            *h.0.entry(bucket(us)).or_default() += 1;
        }
        h
    }

    /// The `lat_hist=` value: `bucket:count` pairs joined by commas (no spaces).
    pub(crate) fn encode(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(b, n)| format!("{b}:{n}")).collect();
        pairs.join(",")
    }

    /// Parses what [`Histogram::encode`] printed.
    pub(crate) fn parse(s: &str) -> Result<Histogram, String> {
        let mut h = Histogram::default();
        for pair in s.split(',').filter(|p| !p.is_empty()) {
            let (b, n) = pair
                .split_once(':')
                .ok_or_else(|| format!("lat_hist: {pair:?} is not bucket:count"))?;
            let b: u32 = b.parse().map_err(|_| format!("lat_hist: bucket {b:?}"))?;
            let n: u64 = n.parse().map_err(|_| format!("lat_hist: count {n:?}"))?;
            *h.0.entry(b).or_default() += n;
        }
        Ok(h)
    }

    /// Adds `other`'s requests to this one.
    pub(crate) fn add(&mut self, other: &Histogram) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    /// How many requests it holds.
    pub(crate) fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The bucket (lower bound, microseconds) holding the `q` quantile (0..=1), the same rank
    /// as the client's own quantile of its sorted latencies; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u32 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((n - 1) as f64 * q.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0;
        for (b, c) in &self.0 {
            seen += c;
            if seen > rank {
                return *b;
            }
        }
        self.0.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_six_significant_bits() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(63), 63);
        assert_eq!(bucket(64), 64);
        assert_eq!(bucket(65), 64);
        assert_eq!(bucket(127), 126);
        assert_eq!(bucket(1000), 992);
        for us in [100u32, 517, 2_460, 99_999, u32::MAX] {
            let b = bucket(us);
            assert!(
                b <= us && f64::from(us - b) <= f64::from(us) / 32.0,
                "{us} -> {b}"
            );
        }
    }

    #[test]
    fn pooled_windows_give_the_percentile_of_all_requests() {
        // Two windows: 99 fast requests, then 99 fast and 3 slow ones. Pooled, the p99 of
        // 201 requests is the 199th smallest: a slow one only if at least 3 are slow.
        let a: Vec<u32> = vec![500; 99];
        let mut b: Vec<u32> = vec![500; 99];
        b.extend([8_000, 8_000, 8_000]);
        let mut h = Histogram::parse(&Histogram::of(&a).encode()).expect("parses");
        h.add(&Histogram::parse(&Histogram::of(&b).encode()).expect("parses"));
        assert_eq!(h.count(), 201);
        assert_eq!(h.quantile(0.99), bucket(8_000));
        assert_eq!(h.quantile(0.5), bucket(500));
        assert_eq!(Histogram::default().quantile(0.99), 0);
        assert!(Histogram::parse("12").is_err());
        assert!(Histogram::parse("x:1").is_err());
    }
}
