//! Progress of long operations and their cancellation: what a job of the management API
//! watches (`mgmt/jobs.rs`), passed down to the facade's long calls.

/// Told how far a long operation got; asked whether it should stop.
pub trait Progress: Sync {
    /// `done` of `total` steps are done (`total` may grow as the operation learns more).
    fn step(&self, done: u64, total: u64);
    /// Whether the operation should stop. Operations look only where stopping leaves
    /// everything as it was or as consistent as after a crash (each says where).
    fn cancelled(&self) -> bool;
}

/// Nobody watches, nothing cancels.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _: u64, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// The error of an operation stopped by [`Progress::cancelled`].
pub(crate) fn cancelled_error() -> crate::error::Error {
    crate::error::Error::Io("cancelled".into())
}
