//! Ctrl-C and SIGTERM: the first one asks the harvest to stop after the frame it is decoding and
//! publish everything harvested so far (exit 130); a second one kills the process as usual.
//! Only the binary installs the handler; the library just reads the flag.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked us to stop, or 0.
static REQUESTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(signal, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; restoring the default makes a second one kill.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores an atomic and calls signal(2).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Asks the harvest to stop as SIGTERM would (a season task that lost its episode to another).
pub fn request_stop() {
    REQUESTED.store(libc::SIGTERM, Ordering::SeqCst);
}

/// The signal number that asked the run to stop, if one did.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
