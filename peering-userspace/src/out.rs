//! Standard output of the commands that print. Rust ignores SIGPIPE, so
//! when the reader of a pipe goes away early (`peering-agent show | head
//! -1`) a write fails with `BrokenPipe`, and `print!` turns that into a
//! panic. Printing through here takes a closed stdout as the reader being
//! done: the rest is dropped quietly and the command ends as it would have.
//! Other write errors (a full disk) are still errors. SIGPIPE itself stays
//! ignored, so a daemon writing to a socket whose peer left gets an error
//! to handle, never a signal that kills it.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes; a closed stdout is not an error.
pub fn print(text: &str) -> io::Result<()> {
    quiet_when_closed(write_to(&mut io::stdout().lock(), text))
}

/// [`print`] with a newline.
pub fn println(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    quiet_when_closed(write_to(&mut out, text).and_then(|()| write_to(&mut out, "\n")))
}

fn write_to(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn quiet_when_closed(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_quiet_other_errors_are_not() {
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(quiet_when_closed(Err(pipe)).is_ok());
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(quiet_when_closed(Err(full)).is_err());
    }
}
