//! Container logs as the kubelet writes them (CRI format files under
//! `/var/log/pods`), and the lines of a streamed (followed) log response.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// One CRI log line at second `time` (e.g. `"04.0"`) of 2026-01-02T03:04,
/// on `stream` (`stdout`/`stderr`), `tag` `F` (full) or `P` (partial).
pub fn cri(time: &str, stream: &str, tag: &str, text: &str) -> String {
    format!("2026-01-02T03:04:{time}Z {stream} {tag} {text}\n")
}

/// Appends `text` to the file at `path`, creating it.
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

/// How long a followed stream may take to deliver the next line.
pub const NEXT_LINE_WITHIN: Duration = Duration::from_secs(20);

/// The lines of a streaming response, read on a thread as they arrive.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub fn of(res: reqwest::blocking::Response) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(res);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Lines(rx)
    }

    /// The next line; panics naming `want` if none comes within [`NEXT_LINE_WITHIN`].
    pub fn next_line(&self, want: &str) -> String {
        self.0
            .recv_timeout(NEXT_LINE_WITHIN)
            .unwrap_or_else(|e| panic!("waiting for {want:?}: {e}"))
    }

    /// Asserts the next line is `want`.
    #[track_caller]
    pub fn expect(&self, want: &str) {
        assert_eq!(self.next_line(want), want);
    }
}
