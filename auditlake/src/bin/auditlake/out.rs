//! Standard output that behaves in a pipe: `auditlake demo | head -2` ends quietly.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe returns `BrokenPipe` and `println!`
//! panics on it. Every report and result goes through [`emit`] instead, which ends the
//! process on a closed pipe with 141 (128 + SIGPIPE), the status a shell reports for a
//! program the pipe stopped, and prints nothing.

use std::io::{ErrorKind, Write};

/// The exit status of a process stopped by a closed pipe.
pub const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Write `text` to stdout (and flush); on a closed pipe, exit quietly.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let r = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if let Err(e) = r {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        eprintln!("auditlake: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// [`emit`] with a newline.
pub fn emitln(text: &str) {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    emit(&s);
}
