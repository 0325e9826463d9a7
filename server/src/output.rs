//! Standard output for the commands. `println!` panics when the reader has gone
//! (`spindle gentoken -u 1 | head -c 10`); here a closed pipe quietly ends the output and any
//! other write error is returned to the caller.

use std::fmt::Display;
use std::io::{self, ErrorKind, Write};

/// Writes `text` and a newline to standard output.
pub fn line(text: impl Display) -> io::Result<()> {
    match writeln!(io::stdout().lock(), "{text}") {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
