//! The kubelet's container log files, read as `kubectl logs` shows them.
//!
//! Layout (kubelet's container log manager): one directory per pod,
//! `<root>/<namespace>_<pod>_<uid>/<container>/`, holding `<restart>.log` for
//! each container instance, and rotated files `<restart>.log.<YYYYmmdd-HHMMSS>`,
//! all but the newest of them gzip-compressed (`….gz`). Each line is in the CRI
//! format: `<RFC 3339 time> <stdout|stderr> <P|F> <content>`, where `P` marks a
//! partial line that the next entries continue and `F` ends it.
//!
//! Owns: names (validated, never a path), finding the files of a container
//! instance in order, parsing and joining lines. Must not touch: HTTP, or any
//! file outside the pod log root.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadName(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Namespaces that are never a berth project's.
const SYSTEM_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "default"];

/// A DNS label (namespaces, container names): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
fn dns_label(what: &str, s: &str) -> Result<(), LogError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(LogError::BadName(format!(
            "{what} {s:?} is not a valid name (lower-case letters, digits and '-', at most 63)"
        )))
    }
}

/// A pod name: a DNS subdomain (labels joined by '.'), at most 253.
fn dns_subdomain(what: &str, s: &str) -> Result<(), LogError> {
    if s.is_empty() || s.len() > 253 {
        return Err(LogError::BadName(format!(
            "{what} {s:?} is not a valid name"
        )));
    }
    for label in s.split('.') {
        dns_label(what, label).map_err(|_| {
            LogError::BadName(format!(
                "{what} {s:?} is not a valid name (lower-case letters, digits, '-' and '.')"
            ))
        })?;
    }
    Ok(())
}

/// Which container instance's log to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerId {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl ContainerId {
    /// Checks every part: names only, and never a system namespace.
    pub fn new(namespace: &str, pod: &str, container: &str) -> Result<Self, LogError> {
        dns_label("namespace", namespace)?;
        if SYSTEM_NAMESPACES.contains(&namespace) {
            return Err(LogError::BadName(format!(
                "namespace {namespace} is not a berth project's; its logs are not served"
            )));
        }
        dns_subdomain("pod", pod)?;
        dns_label("container", container)?;
        Ok(ContainerId {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        })
    }

    /// The container's log directory under `root`: of the pod directories with this
    /// namespace and name (a pod recreated under its name gets a new uid), the newest.
    pub fn directory(&self, root: &Path) -> Result<PathBuf, LogError> {
        let prefix = format!("{}_{}_", self.namespace, self.pod);
        let entries = std::fs::read_dir(root)
            .map_err(|e| LogError::Io(format!("pod log directory {}", root.display()), e))?;
        let newest = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
            })
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, e.path()))
            })
            .max();
        let Some((_, pod_dir)) = newest else {
            return Err(LogError::NotFound(format!(
                "no pod {} in namespace {} on this node",
                self.pod, self.namespace
            )));
        };
        let dir = pod_dir.join(&self.container);
        if !dir.is_dir() {
            return Err(LogError::NotFound(format!(
                "pod {} has no container {}",
                self.pod, self.container
            )));
        }
        Ok(dir)
    }
}

/// A pod directory of a namespace, as `GET /api/v1/logs/{namespace}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodDir {
    pub pod: String,
    pub uid: String,
    pub containers: Vec<String>,
    /// Unix seconds the pod directory last changed.
    pub modified: u64,
}

/// The pods of `namespace` that have log directories under `root`, newest first.
pub fn pods(root: &Path, namespace: &str) -> Result<Vec<PodDir>, LogError> {
    dns_label("namespace", namespace)?;
    if SYSTEM_NAMESPACES.contains(&namespace) {
        return Err(LogError::BadName(format!(
            "namespace {namespace} is not a berth project's; its logs are not served"
        )));
    }
    let prefix = format!("{namespace}_");
    let entries = std::fs::read_dir(root)
        .map_err(|e| LogError::Io(format!("pod log directory {}", root.display()), e))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((pod, uid)) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.rsplit_once('_'))
        else {
            continue;
        };
        if dns_subdomain("pod", pod).is_err() {
            continue;
        }
        let mut containers: Vec<String> = std::fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|c| c.path().is_dir())
            .filter_map(|c| c.file_name().to_str().map(str::to_string))
            .filter(|c| dns_label("container", c).is_ok())
            .collect();
        containers.sort();
        let modified = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        out.push(PodDir {
            pod: pod.to_string(),
            uid: uid.to_string(),
            containers,
            modified,
        });
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.pod.cmp(&b.pod)));
    Ok(out)
}

/// One log file of a container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub restart: u32,
    /// The rotation time stamp (`YYYYmmdd-HHMMSS`); `None` for the live file.
    pub rotated: Option<String>,
    pub path: PathBuf,
}

impl LogFile {
    pub fn compressed(&self) -> bool {
        self.path.extension().is_some_and(|e| e == "gz")
    }

    /// Parses `N.log`, `N.log.<stamp>` or `N.log.<stamp>.gz`.
    fn parse(dir: &Path, name: &str) -> Option<LogFile> {
        let (restart, rest) = name.split_once(".log")?;
        let restart: u32 = restart.parse().ok()?;
        let rotated = match rest {
            "" => None,
            r => {
                let stamp = r.strip_prefix('.')?;
                let stamp = stamp.strip_suffix(".gz").unwrap_or(stamp);
                let ok = stamp.len() == 15
                    && stamp.bytes().enumerate().all(|(i, b)| {
                        if i == 8 {
                            b == b'-'
                        } else {
                            b.is_ascii_digit()
                        }
                    });
                if !ok {
                    return None;
                }
                Some(stamp.to_string())
            }
        };
        Some(LogFile {
            restart,
            rotated,
            path: dir.join(name),
        })
    }

    /// Oldest first: by instance, then rotated files by time, then the live file.
    fn order(&self) -> (u32, bool, String) {
        let stamp = self.rotated.clone().unwrap_or_default();
        (self.restart, self.rotated.is_none(), stamp)
    }
}

/// The files of the current container instance (or, with `previous`, of the one
/// before it), oldest first; the live `N.log` last.
pub fn instance_files(dir: &Path, previous: bool) -> Result<Vec<LogFile>, LogError> {
    let mut all: Vec<LogFile> = std::fs::read_dir(dir)
        .map_err(|e| LogError::Io(format!("container log directory {}", dir.display()), e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| LogFile::parse(dir, n)))
        .collect();
    let Some(current) = all.iter().map(|f| f.restart).max() else {
        return Err(LogError::NotFound(
            "the container has written no log yet".into(),
        ));
    };
    let want = if previous {
        all.iter()
            .map(|f| f.restart)
            .filter(|r| *r < current)
            .max()
            .ok_or_else(|| {
                LogError::NotFound(
                    "the container has not restarted: there is no previous instance".into(),
                )
            })?
    } else {
        current
    };
    all.retain(|f| f.restart == want);
    all.sort_by_key(LogFile::order);
    Ok(all)
}

/// Opens a log file for reading, decompressing a `.gz` one.
pub fn open(file: &LogFile) -> Result<Box<dyn BufRead + Send>, LogError> {
    let f = std::fs::File::open(&file.path)
        .map_err(|e| LogError::Io(file.path.display().to_string(), e))?;
    Ok(if file.compressed() {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// One complete log entry (partial lines joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The time as the runtime wrote it (RFC 3339 with nanoseconds).
    pub time_text: String,
    pub time: Option<SystemTime>,
    pub stream: String,
    pub content: Vec<u8>,
}

/// Joins CRI lines into entries; lines that are not CRI are skipped.
#[derive(Default)]
pub struct Assembler {
    pending: Option<Entry>,
}

impl Assembler {
    /// Feeds one line (without its newline); returns an entry when one is complete.
    pub fn push(&mut self, line: &[u8]) -> Option<Entry> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time_text = std::str::from_utf8(parts.next()?).ok()?.to_string();
        let stream = std::str::from_utf8(parts.next()?).ok()?.to_string();
        let tag = parts.next()?;
        let content = parts.next().unwrap_or_default();
        if !matches!(stream.as_str(), "stdout" | "stderr") {
            return None;
        }
        // The tag may carry more flags after the first, separated by ':'.
        let partial = tag.split(|b| *b == b':').next() == Some(b"P".as_slice());
        let entry = self.pending.get_or_insert_with(|| Entry {
            time: humantime::parse_rfc3339_weak(&time_text).ok(),
            time_text,
            stream,
            content: Vec::new(),
        });
        entry.content.extend_from_slice(content);
        if partial {
            None
        } else {
            self.pending.take()
        }
    }
}

/// Reads every complete entry of `reader` through `assembler`, giving each to `f`.
pub fn read_entries(
    reader: &mut dyn BufRead,
    assembler: &mut Assembler,
    mut f: impl FnMut(Entry),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(e) = assembler.push(&line) {
            f(e);
        }
    }
}

/// Reads up to the end of what is written, keeping an unfinished last line
/// (no newline yet) for the next call: for a file still being written.
pub struct Follower<R> {
    reader: R,
    partial: Vec<u8>,
}

impl<R: Read> Follower<R> {
    pub fn new(reader: R) -> Self {
        Follower {
            reader,
            partial: Vec::new(),
        }
    }

    /// Complete lines written since the last call.
    pub fn poll(&mut self, assembler: &mut Assembler, out: &mut Vec<Entry>) -> std::io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = self.reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut rest = &buf[..n];
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                self.partial.extend_from_slice(&rest[..i]);
                if let Some(e) = assembler.push(&self.partial) {
                    out.push(e);
                }
                self.partial.clear();
                rest = &rest[i + 1..];
            }
            self.partial.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_names_never_paths() {
        assert!(ContainerId::new("shop", "web-7d9f-abc12", "web").is_ok());
        assert!(ContainerId::new("shop", "web.v1", "web").is_ok());
        for (ns, pod, c) in [
            ("..", "p", "c"),
            ("shop", "../etc", "c"),
            ("shop", "p", "../../x"),
            ("shop", "p/q", "c"),
            ("Shop", "p", "c"),
            ("shop", "p", ""),
            ("kube-system", "etcd", "etcd"),
            ("default", "p", "c"),
        ] {
            assert!(
                ContainerId::new(ns, pod, c).is_err(),
                "{ns}/{pod}/{c} must be refused"
            );
        }
    }

    #[test]
    fn partial_lines_are_joined_and_junk_skipped() {
        let mut a = Assembler::default();
        assert!(a
            .push(b"2026-01-02T03:04:05.123456789Z stdout P hello ")
            .is_none());
        let e = a
            .push(b"2026-01-02T03:04:05.2Z stdout F world")
            .expect("complete");
        assert_eq!(e.content, b"hello world");
        assert_eq!(e.stream, "stdout");
        assert_eq!(e.time_text, "2026-01-02T03:04:05.123456789Z");
        assert!(e.time.is_some());
        assert!(a.push(b"not a cri line").is_none());
        let e = a
            .push(b"2026-01-02T03:04:06Z stderr F ")
            .expect("empty line");
        assert_eq!(e.content, b"");
    }

    #[test]
    fn files_of_an_instance_in_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        for f in [
            "0.log",
            "1.log.20260101-100000.gz",
            "1.log.20260101-110000",
            "1.log",
            "1.log.bak",
            "x.log",
        ] {
            std::fs::write(d.join(f), b"").expect("write");
        }
        let names = |v: Vec<LogFile>| -> Vec<String> {
            v.iter()
                .map(|f| {
                    f.path
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(
            names(instance_files(d, false).expect("current")),
            vec!["1.log.20260101-100000.gz", "1.log.20260101-110000", "1.log"]
        );
        assert_eq!(
            names(instance_files(d, true).expect("previous")),
            vec!["0.log"]
        );
        std::fs::remove_file(d.join("0.log")).expect("rm");
        assert!(matches!(
            instance_files(d, true),
            Err(LogError::NotFound(_))
        ));
    }

    #[test]
    fn follower_keeps_an_unfinished_line() {
        let data = b"2026-01-02T03:04:05Z stdout F one\n2026-01-02T03:04:05Z stdout F tw".to_vec();
        let mut f = Follower::new(std::io::Cursor::new(data));
        let mut a = Assembler::default();
        let mut out = Vec::new();
        f.poll(&mut a, &mut out).expect("poll");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].content, b"one");
        assert_eq!(f.partial, b"2026-01-02T03:04:05Z stdout F tw");
    }
}
