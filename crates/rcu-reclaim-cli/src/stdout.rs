//! Writing the reports to standard output without panicking: `println!`
//! panics when the write fails (a full disk, `> /dev/full`), so the
//! commands print with [`outln!`] and [`out!`], which end the program with
//! a message and exit status 1 instead (and quietly, with status 0, when
//! the reader of a pipe has gone, as `| head` does). Messages go to
//! standard error with [`errln!`], which, unlike `eprintln!`, does not
//! panic when standard error cannot be written (`2> /dev/full`).

use std::fmt;
use std::io::{self, Write};

/// `println!` that ends the program with a message if stdout fails.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends the program with a message if stdout fails.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `eprintln!` that ignores a failed write to standard error (there is
/// nowhere left to report it) instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

/// Writes `args` to standard error, ignoring a failure; see [`errln!`].
pub(crate) fn write_err(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Writes `args` to stdout and flushes; see the module docs.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        exit_on(&e);
    }
}

/// Ends the program after a failed write to stdout.
pub(crate) fn exit_on(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    errln!("rcu-reclaim: cannot write to standard output: {e}");
    std::process::exit(1);
}
