//! CPU priority of the scrubber's work. A pass's compactions run at nice 19 (the lowest
//! priority Linux has): `Scrub_Bandwidth` bounds the bytes a pass moves, this keeps its CPU
//! bursts (a TLog's replay, a SCO's checksums) from taking a core from Ganesha's workers. On
//! Linux the nice value belongs to each thread, and a thread it creates inherits it: so the
//! priority is lowered only for a scope ([`Niced`]) that holds no lock other work waits for,
//! and the engine runtime's threads set their own back when they start ([`runtime_thread_start`]),
//! in case one was created from a lowered thread.

/// The nice value of scrub work.
pub(crate) const SCRUB_NICE: libc::c_int = 19;

/// The calling thread's id as `setpriority` takes it.
fn this_thread() -> Option<libc::id_t> {
    libc::id_t::try_from(nix::unistd::gettid().as_raw()).ok()
}

/// The calling thread's nice value.
pub(crate) fn current() -> Option<libc::c_int> {
    let who = this_thread()?;
    // getpriority may legitimately return -1: errno tells.
    nix::errno::Errno::clear();
    // SAFETY: getpriority takes plain integers and touches no memory of ours.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, who) };
    (n != -1 || nix::errno::Errno::last_raw() == 0).then_some(n)
}

/// Sets the calling thread's nice value.
fn set(n: libc::c_int) -> std::io::Result<()> {
    let Some(who) = this_thread() else {
        return Ok(());
    };
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, n) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread at [`SCRUB_NICE`] until dropped, then back to what it was (raising it
/// again needs CAP_SYS_NICE, which the gateway has as root; without it the thread stays low,
/// logged). Failures are logged and change nothing else.
pub(crate) struct Niced(Option<libc::c_int>);

impl Niced {
    /// Lowers the calling thread's priority.
    pub(crate) fn lower() -> Niced {
        let was = current();
        if let Err(e) = set(SCRUB_NICE) {
            tracing::warn!(error = %e, "cannot lower the scrub's CPU priority");
            return Niced(None);
        }
        Niced(was)
    }
}

impl Drop for Niced {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            if let Err(e) = set(n) {
                tracing::warn!(error = %e, "cannot raise the scrub thread's CPU priority back");
            }
        }
    }
}

/// What each engine runtime thread runs when it starts: back to the nice value `base` (the
/// process's when the runtime was built) if it inherited another.
pub(crate) fn runtime_thread_start(base: libc::c_int) {
    if current().is_some_and(|n| n != base) {
        if let Err(e) = set(base) {
            tracing::warn!(error = %e, "an engine thread cannot take the process's CPU priority back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_niced_scope_lowers_only_this_thread_and_ends() {
        let before = current().expect("nice");
        assert!(before < SCRUB_NICE, "the tests run at nice {before}");
        let (inside, after) = std::thread::spawn(|| {
            let n = Niced::lower();
            let inside = current();
            drop(n);
            (inside, current())
        })
        .join()
        .expect("the thread ran");
        assert_eq!(inside, Some(SCRUB_NICE));
        assert_eq!(
            after,
            Some(before),
            "the scope's end gave the priority back"
        );
        assert_eq!(current(), Some(before), "the caller's priority changed");
    }

    #[test]
    fn runtime_threads_created_from_a_niced_thread_take_the_base_priority_back() {
        let rt = crate::runtime::build().expect("runtime");
        let base = current().expect("nice");
        let h = rt.handle().clone();
        let seen = std::thread::spawn(move || {
            let _low = Niced::lower();
            // A blocking thread is created by this (niced) thread.
            h.block_on(async { tokio::task::spawn_blocking(current).await })
        })
        .join()
        .expect("the thread ran")
        .expect("the blocking task ran");
        assert_eq!(seen, Some(base));
    }
}
