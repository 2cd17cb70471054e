//! Logging into Ganesha's log with the FSAL component: a direct [`log`] function for the
//! FSAL's own messages and a `tracing` layer that forwards the engine's events.

use std::ffi::CString;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::ffi;

/// Ganesha log levels we use (a subset of `log_levels_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GLevel {
    /// NIV_CRIT.
    Crit,
    /// NIV_WARN.
    Warn,
    /// NIV_EVENT (shown by default).
    Event,
    /// NIV_DEBUG.
    Debug,
    /// NIV_FULL_DEBUG.
    FullDebug,
}

impl GLevel {
    fn niv(self) -> ffi::log_levels {
        match self {
            GLevel::Crit => ffi::NIV_CRIT,
            GLevel::Warn => ffi::NIV_WARN,
            GLevel::Event => ffi::NIV_EVENT,
            GLevel::Debug => ffi::NIV_DEBUG,
            GLevel::FullDebug => ffi::NIV_FULL_DEBUG,
        }
    }

    fn of_tracing(level: &Level) -> GLevel {
        match *level {
            Level::ERROR => GLevel::Crit,
            Level::WARN => GLevel::Warn,
            Level::INFO => GLevel::Event,
            Level::DEBUG => GLevel::Debug,
            Level::TRACE => GLevel::FullDebug,
        }
    }
}

/// True when Ganesha would print a message of `level` for COMPONENT_FSAL.
pub(crate) fn enabled(level: GLevel) -> bool {
    if cfg!(test) {
        return true;
    }
    // SAFETY: component_log_level is Ganesha's exported array of per-component levels,
    // indexed by log_components; it is initialised before any FSAL is loaded. We only read it.
    unsafe {
        let levels = ffi::component_log_level;
        if levels.is_null() {
            return false;
        }
        let cur = *levels.add(ffi::COMPONENT_FSAL as usize);
        cur as i64 >= level.niv() as i64
    }
}

/// Writes `msg` to Ganesha's log with COMPONENT_FSAL. The message is passed as a `%s`
/// argument, never as the format string.
pub(crate) fn log(level: GLevel, msg: &str) {
    if cfg!(test) {
        // Unit-test binaries are not Ganesha: its logger is not initialised there.
        eprintln!("{level:?}: {msg}");
        return;
    }
    if !enabled(level) {
        return;
    }
    let text = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: DisplayLogComponentLevel is Ganesha's variadic logger; every pointer is a valid
    // NUL-terminated string for the duration of the call and the format consumes exactly one
    // `%s` argument.
    unsafe {
        ffi::DisplayLogComponentLevel(
            ffi::COMPONENT_FSAL,
            c"fsal/strata".as_ptr(),
            0,
            c"strata".as_ptr(),
            level.niv(),
            c"STRATA: %s".as_ptr(),
            text.as_ptr(),
        );
    }
}

/// Formats and logs at a level; cheap when the level is disabled.
#[macro_export]
macro_rules! glog {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            $crate::log::log($lvl, &format!($($arg)*));
        }
    };
}

/// A `tracing` layer that forwards every event to Ganesha's log.
struct GaneshaLayer;

struct MsgVisitor(String);

impl Visit for MsgVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for GaneshaLayer {
    fn register_callsite(
        &self,
        _meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Ganesha's level can change at run time (DBus), so decide per event.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        enabled(GLevel::of_tracing(meta.level()))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = GLevel::of_tracing(meta.level());
        if !enabled(level) {
            return;
        }
        let mut v = MsgVisitor(String::new());
        event.record(&mut v);
        log(level, &format!("{}: {}", meta.target(), v.0));
    }
}

/// Installs the forwarding layer as the process-wide `tracing` subscriber (once).
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(GaneshaLayer);
    // Another subscriber may already be set (never in ganesha.nfsd); keep it then.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
