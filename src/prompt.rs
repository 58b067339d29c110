//! Reading passwords from the person at the terminal.
//!
//! Owns: prompting on stderr, turning the terminal's echo off while a secret is
//! typed (and back on, whatever happens), and asking twice for a new password.
//! When stdin is not a terminal (a script pipes the answers), each question
//! reads one line and shows no prompt, so `printf 'old\nnew\nnew\n' | berth
//! passwd` answers the same questions.

use std::io::{BufRead, Write};

use anyhow::bail;
use rustix::termios::{self, LocalModes, OptionalActions};

/// Puts the terminal's echo back when dropped.
struct EchoOff {
    saved: termios::Termios,
}

impl EchoOff {
    /// Turns echo off on stdin's terminal; `None` when stdin is not one.
    fn on_stdin() -> Option<Self> {
        let stdin = std::io::stdin();
        if !termios::isatty(&stdin) {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        termios::tcsetattr(&stdin, OptionalActions::Flush, &quiet).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Asks for a secret once; the answer is not echoed on a terminal.
pub fn secret(label: &str) -> anyhow::Result<String> {
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    // Answers piped in by a script get no prompt: its output stays its own.
    let quiet = EchoOff::on_stdin();
    if quiet.is_some() {
        eprint!("{label}: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(quiet);
    if read? == 0 {
        bail!("{label}: no answer (stdin is closed)");
    }
    let s = line.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("{label} is required");
    }
    Ok(s)
}

/// Asks for a new password twice and insists the two agree, so a typo made
/// without echo does not become the password.
pub fn new_secret(label: &str) -> anyhow::Result<String> {
    let first = secret(label)?;
    let again = secret("the same again")?;
    if first != again {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
