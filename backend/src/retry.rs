//! The one retry policy of the stores: bounded attempts and total time, exponential backoff
//! with full jitter, and only transient errors retried ([`Error::is_transient`]).
//!
//! A store runs each request through [`RetryPolicy::run`], which hands the attempt number to
//! the request so that a conditional put can tell a retry from a first attempt (see the S3
//! store's put id). "Not found" and "condition failed" are answers, never retried here.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// No new attempt starts once this much time has passed since the first began.
    pub max_elapsed: Duration,
    /// The backoff before the second attempt; it doubles with each attempt...
    pub base_delay: Duration,
    /// ...up to this bound. Each wait is drawn uniformly from zero to the bound of its attempt
    /// (full jitter), so writers that failed together do not retry together.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts within 300 s (so that an attempt cut by a 120 s request timeout is still
    /// retried), backoff from 100 ms up to 5 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            max_elapsed: Duration::from_secs(300),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Runs `op(attempt)` (attempts count from 1) until it succeeds, fails with an error that
    /// is not transient, or the attempts or the time are used up; returns the last result.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut attempt = 1u32;
        loop {
            let err: Error = match op(attempt).await {
                Err(e) if e.is_transient() => e,
                done => return done,
            };
            if attempt >= self.max_attempts.max(1) {
                return Err(err);
            }
            let delay = self.backoff(attempt);
            if start.elapsed() + delay >= self.max_elapsed {
                return Err(err);
            }
            tracing::debug!(attempt, ?delay, error = %err, "retrying a store request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The wait after failed attempt `attempt`: uniform in `[0, min(max, base * 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let bound = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(jitter() % (nanos + 1))
    }
}

/// A pseudo-random number (splitmix64 over a process-wide counter seeded by the clock): enough
/// to spread retries, not for anything secret.
pub(crate) fn jitter() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(u64::from(seed));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    }

    fn unavailable() -> Error {
        Error::Unavailable {
            key: "k".into(),
            reason: "503".into(),
        }
    }

    #[test]
    fn transient_errors_are_retried_up_to_the_bound_and_answers_never() {
        let rt = rt();
        let policy = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        let r: Result<()> = rt.block_on(policy.run(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(unavailable()) }
        }));
        assert!(matches!(r, Err(Error::Unavailable { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), policy.max_attempts);

        for answer in [
            Error::NotFound { key: "k".into() },
            Error::ConditionFailed { key: "k".into() },
            Error::Denied {
                key: "k".into(),
                message: "403".into(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let mut answer = Some(answer);
            let r: Result<()> = rt.block_on(policy.run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                let e = answer.take().expect("called once");
                async move { Err(e) }
            }));
            assert!(r.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1, "an answer is not retried");
        }
    }

    #[test]
    fn a_retry_sees_its_attempt_number_and_can_succeed() {
        let rt = rt();
        let seen = std::sync::Mutex::new(Vec::new());
        let r = rt.block_on(RetryPolicy::default().run(|attempt| {
            seen.lock().expect("lock").push(attempt);
            async move {
                if attempt < 3 {
                    Err(unavailable())
                } else {
                    Ok(attempt)
                }
            }
        }));
        assert_eq!(r.expect("third attempt"), 3);
        assert_eq!(*seen.lock().expect("lock"), vec![1, 2, 3]);
    }

    #[test]
    fn total_time_bounds_the_retries() {
        let rt = rt();
        let policy = RetryPolicy {
            max_attempts: 1000,
            max_elapsed: Duration::from_secs(10),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
        };
        let start = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let r: Result<()> = rt.block_on(async {
            policy
                .run(|_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err(unavailable()) }
                })
                .await
        });
        assert!(r.is_err());
        let n = calls.load(Ordering::SeqCst);
        assert!(n > 1 && n < 1000, "{n} attempts");
        assert!(
            start.elapsed() < policy.max_elapsed,
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            let bound = p
                .base_delay
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(p.max_delay);
            let d = p.backoff(attempt);
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        let draws: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(8)).collect();
        assert!(draws.len() > 10, "jittered: {draws:?}");
    }
}
