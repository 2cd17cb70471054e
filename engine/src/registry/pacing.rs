//! Backpressure for volume writes: pacing between a soft and a hard mark, never a wall.
//!
//! A volume's *backlog* is what it wrote locally that the backend does not have yet. The
//! protocol, per write (see [`Pacer::admit`]):
//!
//! 1. Below the soft mark (`Write_Throttle_Start` % of `Write_Buffer_Size`) the write goes on.
//! 2. Between the soft and the hard mark it first waits `len / rate × 2 × f`, where `rate` is the
//!    measured upload rate (at least [`MIN_RATE`]) and `f` in `0..1` how far above the soft mark
//!    the backlog is: at the middle a writer is held to the upload rate, below it runs faster,
//!    above it slower, so a steady writer settles where it is paced at the rate the backend
//!    drains (as the Linux kernel paces dirty pages). One wait is at most [`MAX_PAUSE`].
//! 3. It then reserves its length in the backlog, which stays at most the hard mark
//!    (`Write_Buffer_Size`): concurrent writers never overshoot it together. Without room it
//!    waits for room, and is answered `Delay` (NFS3ERR_JUKEBOX / NFS4ERR_DELAY) only once the
//!    backend has made no upload progress for `Backend_Stall_Timeout`: QEMU's userspace NFS
//!    driver does not retry that answer, so it is kept for real outages (and logged as one).
//!
//! Progress is the volume's count of bytes uploaded ([`crate::volume::Volume::uploaded_bytes`],
//! each object counted once however often a failed pass sends it again), sampled by the
//! writers themselves: its increase since the last sample feeds the rate, a moving average, and
//! the backlog estimate subtracts it ([`crate::backlog`]). "No progress for the stall timeout"
//! counts from the later of the last progress and the moment the buffer became full: a volume
//! idle for an hour (nothing to upload, so no progress) is not stalled when its buffer fills.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The rate assumed when none was measured, or the backend is stalled (bytes per second): a
/// floor, so that a rate of zero gives a finite wait.
pub(crate) const MIN_RATE: f64 = 1024.0 * 1024.0;
/// The longest single pause of a paced write.
pub(crate) const MAX_PAUSE: Duration = Duration::from_millis(100);
/// How long a write at the hard mark sleeps between two looks at the backlog.
const POLL: Duration = Duration::from_millis(20);

/// What [`Pacer::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go on (after the pause it took, possibly none).
    Go,
    /// The buffer is full and the backend stalled: answer `Delay`.
    Refuse,
}

#[derive(Debug)]
struct Sample {
    /// `uploaded_bytes` at the last sample.
    uploaded: u64,
    /// When it was taken.
    at: Instant,
    /// The last time `uploaded_bytes` grew (or the pacer started).
    progress_at: Instant,
    /// Moving average of the upload rate, bytes per second (0: none measured yet).
    rate: f64,
}

/// The pacing state of one volume.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// What it paces, for its log lines ("volume", "regular files").
    what: &'static str,
    soft: u64,
    hard: u64,
    stall: Duration,
    sample: Mutex<Sample>,
    /// Writes that waited (paced or at the hard mark).
    delayed: AtomicU64,
    /// Their total wait, microseconds.
    delay_us: AtomicU64,
    /// Writes refused with `Delay`.
    refused: AtomicU64,
    /// Since when writers have found no room (`None` once a write got some).
    full_since: Mutex<Option<Instant>>,
    /// Whether this full episode's outage was logged already.
    logged: std::sync::atomic::AtomicBool,
    /// The largest backlog a write saw.
    peak: AtomicU64,
}

/// The pacer's counters, for `strata volume info`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PacerStats {
    pub delayed: u64,
    pub delay_ms: u64,
    pub refused: u64,
    pub peak_backlog: u64,
    pub upload_rate: f64,
}

/// The soft mark: `start_pct` % (1..100) of the hard mark `hard`.
pub(crate) fn soft_mark(hard: u64, start_pct: u64) -> u64 {
    (u128::from(hard) * u128::from(start_pct.clamp(1, 100)) / 100) as u64
}

impl Pacer {
    /// A pacer with the hard mark `hard` (`Write_Buffer_Size`), the soft mark at `start_pct` %
    /// of it, and `stall` (`Backend_Stall_Timeout`).
    pub(crate) fn new(hard: u64, start_pct: u64, stall: Duration, uploaded: u64) -> Pacer {
        Pacer::named("volume", hard, start_pct, stall, uploaded)
    }

    /// A pacer as [`Pacer::new`] that names what it paces in its log lines.
    pub(crate) fn named(
        what: &'static str,
        hard: u64,
        start_pct: u64,
        stall: Duration,
        uploaded: u64,
    ) -> Pacer {
        let now = Instant::now();
        Pacer {
            what,
            soft: soft_mark(hard, start_pct),
            hard,
            stall,
            sample: Mutex::new(Sample {
                uploaded,
                at: now,
                progress_at: now,
                rate: 0.0,
            }),
            delayed: AtomicU64::new(0),
            delay_us: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full_since: Mutex::new(None),
            logged: std::sync::atomic::AtomicBool::new(false),
            peak: AtomicU64::new(0),
        }
    }

    /// Records the volume's count of uploaded bytes; returns how much it grew since the last
    /// sample (the caller lowers its backlog estimate by that much).
    pub(crate) fn observe(&self, uploaded: u64) -> u64 {
        let mut s = self.sample.lock();
        let now = Instant::now();
        let grew = uploaded.saturating_sub(s.uploaded);
        let dt = now.duration_since(s.at).as_secs_f64();
        if grew > 0 {
            s.progress_at = now;
            if dt > 0.0 {
                let inst = grew as f64 / dt;
                s.rate = if s.rate == 0.0 {
                    inst
                } else {
                    0.7 * s.rate + 0.3 * inst
                };
            }
            s.uploaded = uploaded;
            s.at = now;
        } else if dt > 1.0 {
            // Nothing for a while: the rate decays (a stalled backend drains nothing).
            s.rate *= 0.5;
            s.at = now;
        }
        grew
    }

    /// The pause of a write of `len` bytes with `backlog` bytes not yet uploaded, between the
    /// marks (zero below the soft mark).
    pub(crate) fn pause_for(&self, backlog: u64, len: u64) -> Duration {
        if backlog <= self.soft || self.hard <= self.soft {
            return Duration::ZERO;
        }
        let f = ((backlog - self.soft) as f64 / (self.hard - self.soft) as f64).min(1.0);
        let rate = self.sample.lock().rate.max(MIN_RATE);
        let secs = len as f64 / rate * 2.0 * f;
        Duration::from_secs_f64(secs.min(MAX_PAUSE.as_secs_f64()))
    }

    /// How long the backend has made no progress.
    pub(crate) fn stalled_for(&self) -> Duration {
        self.sample.lock().progress_at.elapsed()
    }

    /// Decides, and waits, for a write of `len` bytes. `backlog` gives the current estimate,
    /// `uploaded` the volume's uploaded-bytes count, `reserve` adds `len` to the estimate if
    /// that keeps it at most the hard mark and returns the new estimate (atomically: concurrent
    /// writers never overshoot it together), and `wait` blocks (at most the given time) until
    /// the pipeline measures the backlog again.
    pub(crate) fn admit(
        &self,
        len: u64,
        backlog: impl Fn() -> u64,
        uploaded: impl Fn() -> u64,
        reserve: impl Fn(u64, u64) -> Option<u64>,
        wait: impl Fn(Duration),
    ) -> Admit {
        let start = Instant::now();
        self.observe(uploaded());
        let pause = self.pause_for(backlog(), len);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        // A write larger than the whole buffer only needs the buffer empty.
        let need = len.min(self.hard);
        let mut held = false;
        loop {
            self.observe(uploaded());
            if let Some(now) = reserve(need, self.hard) {
                self.peak.fetch_max(now, Ordering::Relaxed);
                if held {
                    *self.full_since.lock() = None;
                    self.logged.store(false, Ordering::Relaxed);
                }
                break;
            }
            held = true;
            let full_for = self
                .full_since
                .lock()
                .get_or_insert(Instant::now())
                .elapsed();
            let stalled = self.stalled_for().min(full_for);
            if stalled >= self.stall {
                self.refused.fetch_add(1, Ordering::Relaxed);
                // Once per outage: every write of it is refused the same way.
                if !self.logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        backlog = backlog(),
                        stalled_s = stalled.as_secs(),
                        what = self.what,
                        "write buffer full and the backend made no progress: answering DELAY until it does"
                    );
                }
                return Admit::Refuse;
            }
            wait(POLL);
        }
        if held || !pause.is_zero() {
            let waited = start.elapsed();
            self.delayed.fetch_add(1, Ordering::Relaxed);
            self.delay_us.fetch_add(
                u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        Admit::Go
    }

    /// Counters since the volume was opened.
    pub(crate) fn stats(&self) -> PacerStats {
        PacerStats {
            delayed: self.delayed.load(Ordering::Relaxed),
            delay_ms: self.delay_us.load(Ordering::Relaxed) / 1000,
            refused: self.refused.load(Ordering::Relaxed),
            peak_backlog: self.peak.load(Ordering::Relaxed),
            upload_rate: self.sample.lock().rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn no_pause_below_the_soft_mark_and_a_growing_one_above() {
        let p = Pacer::new(100 * MIB, 50, Duration::from_secs(60), 0);
        assert_eq!(p.pause_for(50 * MIB, MIB), Duration::ZERO);
        let low = p.pause_for(60 * MIB, 64 << 10);
        let high = p.pause_for(90 * MIB, 64 << 10);
        assert!(low > Duration::ZERO && high > low, "{low:?} {high:?}");
        // No rate measured: the floor rate bounds it; a single wait stays under the ceiling.
        assert!(p.pause_for(99 * MIB, 64 * MIB) <= MAX_PAUSE);
    }

    #[test]
    fn at_the_middle_a_writer_is_held_to_the_upload_rate() {
        let p = Pacer::new(100 * MIB, 50, Duration::from_secs(60), 0);
        p.sample.lock().rate = 100.0 * MIB as f64;
        // 1 MiB at 100 MiB/s: 10 ms at the middle between the marks.
        let d = p.pause_for(75 * MIB, MIB);
        assert!(
            (d.as_secs_f64() - 0.010).abs() < 0.001,
            "{d:?} at the middle"
        );
    }

    #[test]
    fn progress_lowers_the_estimate_and_sets_the_rate() {
        let p = Pacer::new(100 * MIB, 50, Duration::from_secs(60), 0);
        assert_eq!(p.observe(0), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(p.observe(10 * MIB), 10 * MIB);
        assert!(p.stats().upload_rate > 0.0);
        assert!(p.stalled_for() < Duration::from_secs(1));
    }

    #[test]
    fn at_the_hard_mark_a_write_waits_for_room_and_is_refused_only_when_stalled() {
        // Room appears after a few looks: the write goes on.
        let p = Pacer::new(10 * MIB, 50, Duration::from_secs(60), 0);
        let looks = AtomicU64::new(0);
        let r = p.admit(
            MIB,
            || 4 * MIB,
            || 0,
            // Room appears at the fourth look.
            |len, _| (looks.fetch_add(1, Ordering::Relaxed) >= 3).then_some(4 * MIB + len),
            |_| {},
        );
        assert_eq!(r, Admit::Go);
        assert_eq!(p.stats().delayed, 1);
        // No progress at all, stall timeout short: refused.
        let p = Pacer::new(10 * MIB, 50, Duration::from_millis(30), 0);
        let r = p.admit(MIB, || 10 * MIB, || 0, |_, _| None, std::thread::sleep);
        assert_eq!(r, Admit::Refuse);
        assert_eq!(p.stats().refused, 1);
    }

    /// Issue 11 review: a volume idle for longer than the stall timeout (nothing to upload, so
    /// no progress) whose buffer fills is not "stalled": its writes wait for room and get it.
    #[test]
    fn an_idle_volume_is_not_stalled_when_its_buffer_fills() {
        let stall = Duration::from_millis(500);
        let p = Pacer::new(10 * MIB, 50, stall, 0);
        // The last progress was long ago.
        p.sample.lock().progress_at = Instant::now() - 10 * stall;
        let looks = AtomicU64::new(0);
        let r = p.admit(
            MIB,
            || 10 * MIB,
            || 0,
            |len, _| (looks.fetch_add(1, Ordering::Relaxed) >= 2).then_some(9 * MIB + len),
            |_| {},
        );
        assert_eq!(r, Admit::Go, "refused at once after an idle period");
        assert_eq!(p.stats().refused, 0);
    }

    /// ...and refused only once it has been full for the whole stall timeout.
    #[test]
    fn a_full_buffer_is_refused_only_after_the_stall_timeout() {
        let stall = Duration::from_millis(500);
        let p = Pacer::new(10 * MIB, 50, stall, 0);
        p.sample.lock().progress_at = Instant::now() - 10 * stall;
        let began = Instant::now();
        let r = p.admit(MIB, || 10 * MIB, || 0, |_, _| None, std::thread::sleep);
        assert_eq!(r, Admit::Refuse);
        assert!(
            began.elapsed() >= stall,
            "refused after {:?}",
            began.elapsed()
        );
        // While it stays full, the next write is refused at once (the outage goes on).
        let began = Instant::now();
        let r = p.admit(MIB, || 10 * MIB, || 0, |_, _| None, std::thread::sleep);
        assert_eq!(r, Admit::Refuse);
        assert!(began.elapsed() < stall, "{:?}", began.elapsed());
        assert_eq!(p.stats().refused, 2);
    }
}
