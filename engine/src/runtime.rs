//! The engine-owned tokio runtime: backend I/O and background work run on it; facade callers
//! (Ganesha worker threads) bridge into it with `Handle::block_on` and are never inside it.

use crate::error::{Error, Result};

/// Worker threads of the engine runtime: backend I/O is mostly waiting, two keep up.
const WORKERS: usize = 2;

/// Builds the runtime.
pub(crate) fn build() -> Result<tokio::runtime::Runtime> {
    // A thread the runtime creates inherits the creator's priority (`crate::niceness`).
    let base = crate::niceness::current().unwrap_or(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .on_thread_start(move || crate::niceness::runtime_thread_start(base))
        .thread_name("strata-engine")
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the engine runtime: {e}")))
}

/// True when the current thread is one of a tokio runtime's (where `block_on` would panic).
pub(crate) fn inside_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_runs_and_callers_are_outside() {
        let rt = super::build().expect("runtime");
        assert!(!super::inside_runtime());
        assert_eq!(rt.handle().block_on(async { 7 }), 7);
        assert!(rt.handle().block_on(async { super::inside_runtime() }));
    }
}
