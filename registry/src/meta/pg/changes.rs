//! What a metadata write changed that a replica's read cache may hold
//! (`read_cache.rs`), and how the write tells every replica: one
//! `NOTIFY` on `CHANGES_CHANNEL` in the write's own transaction, so the
//! database delivers it exactly when (and only if) the write commits.
//!
//! Only removals and moves are announced: the cache holds what exists (a
//! tag's digest, a manifest a repository holds, a blob linked to one),
//! never that something is missing, so an addition cannot make an entry
//! stale. The payload is text: a first line naming the writer
//! (`<replica>:<sequence>`, so the writer knows when its own listener has
//! heard it), then one change a line, fields separated by tabs (no
//! repository name, tag or digest contains a tab or a newline).

use deadpool_postgres::Transaction;

use super::db::{Cached, Ctx};
use crate::meta::Result;

/// The channel metadata writes announce their changes on.
pub const CHANGES_CHANNEL: &str = "berth_meta_changes";

/// PostgreSQL refuses payloads of 8000 bytes or more; past this the
/// changes are announced coarser (whole repositories, or everything).
const MAX_PAYLOAD: usize = 7000;

/// One thing a write removed or moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tag moved to another manifest or was removed.
    Tag { repo: String, tag: String },
    /// A manifest left a repository (and the tags that pointed to it).
    Manifest { repo: String, digest: String },
    /// A blob's link left a repository.
    Link { repo: String, digest: String },
    /// A blob's record and every link to it went.
    Blob { digest: String },
    /// Anything in a repository may have gone (the repository was deleted,
    /// or GC swept in it).
    Repo { repo: String },
    /// Anything at all may have gone.
    Everything,
}

impl Change {
    fn line(&self) -> String {
        match self {
            Change::Tag { repo, tag } => format!("T\t{repo}\t{tag}"),
            Change::Manifest { repo, digest } => format!("M\t{repo}\t{digest}"),
            Change::Link { repo, digest } => format!("L\t{repo}\t{digest}"),
            Change::Blob { digest } => format!("B\t{digest}"),
            Change::Repo { repo } => format!("R\t{repo}"),
            Change::Everything => "*".to_string(),
        }
    }

    fn parse(line: &str) -> Option<Change> {
        let mut f = line.split('\t');
        let kind = f.next()?;
        let a = f.next().map(str::to_string);
        let b = f.next().map(str::to_string);
        Some(match (kind, a, b) {
            ("T", Some(repo), Some(tag)) => Change::Tag { repo, tag },
            ("M", Some(repo), Some(digest)) => Change::Manifest { repo, digest },
            ("L", Some(repo), Some(digest)) => Change::Link { repo, digest },
            ("B", Some(digest), None) => Change::Blob { digest },
            ("R", Some(repo), None) => Change::Repo { repo },
            ("*", None, None) => Change::Everything,
            _ => return None,
        })
    }

    /// The repository it is about, if one.
    fn repo(&self) -> Option<&str> {
        match self {
            Change::Tag { repo, .. }
            | Change::Manifest { repo, .. }
            | Change::Link { repo, .. }
            | Change::Repo { repo } => Some(repo),
            Change::Blob { .. } | Change::Everything => None,
        }
    }
}

/// An announcement as sent: who wrote it, and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// `<replica>:<sequence>` of the writer ("-" when it does not wait).
    pub origin: String,
    pub changes: Vec<Change>,
}

impl Announcement {
    /// The payload, within PostgreSQL's limit: too many changes are
    /// announced as their repositories, or as everything.
    pub fn encode(&self) -> String {
        let exact = self.with_lines(self.changes.iter().map(Change::line));
        if exact.len() <= MAX_PAYLOAD {
            return exact;
        }
        let mut coarse: Vec<Change> = Vec::new();
        for c in &self.changes {
            let wider = match c.repo() {
                Some(repo) => Change::Repo {
                    repo: repo.to_string(),
                },
                None => c.clone(),
            };
            if !coarse.contains(&wider) {
                coarse.push(wider);
            }
        }
        let coarse = self.with_lines(coarse.iter().map(Change::line));
        if coarse.len() <= MAX_PAYLOAD {
            return coarse;
        }
        self.with_lines(std::iter::once(Change::Everything.line()))
    }

    fn with_lines(&self, lines: impl Iterator<Item = String>) -> String {
        let mut s = self.origin.clone();
        for l in lines {
            s.push('\n');
            s.push_str(&l);
        }
        s
    }

    /// An announcement from its payload. A line this version does not
    /// understand (a newer replica's) counts as "everything changed".
    pub fn decode(payload: &str) -> Announcement {
        let mut lines = payload.split('\n');
        let origin = lines.next().unwrap_or_default().to_string();
        let changes = lines
            .map(|l| Change::parse(l).unwrap_or(Change::Everything))
            .collect();
        Announcement { origin, changes }
    }
}

/// Announces `a` in `tx`: delivered to every listener when `tx` commits.
pub(super) async fn announce(tx: &Transaction<'_>, a: &Announcement) -> Result<()> {
    tx.cexec("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &a.encode()])
        .await
        .ctx("announcing a change to the other replicas")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(repo: &str, tag: &str) -> Change {
        Change::Tag {
            repo: repo.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn announcements_round_trip() {
        let a = Announcement {
            origin: "r1:7".into(),
            changes: vec![
                tag("p/app", "v1"),
                Change::Manifest {
                    repo: "p/app".into(),
                    digest: "sha256:aa".into(),
                },
                Change::Link {
                    repo: "p/app".into(),
                    digest: "sha256:bb".into(),
                },
                Change::Blob {
                    digest: "sha256:cc".into(),
                },
                Change::Repo {
                    repo: "p/other".into(),
                },
                Change::Everything,
            ],
        };
        assert_eq!(Announcement::decode(&a.encode()), a);
    }

    #[test]
    fn what_this_version_does_not_understand_means_everything() {
        let a = Announcement::decode("r1:1\nX\tsomething new\nT\tp/app");
        assert_eq!(a.changes, [Change::Everything, Change::Everything]);
    }

    #[test]
    fn too_many_changes_are_announced_coarser_within_the_limit() {
        let many: Vec<Change> = (0..1000)
            .map(|i| tag("p/app", &format!("t{i:04}")))
            .collect();
        let a = Announcement {
            origin: "r:1".into(),
            changes: many,
        };
        let sent = a.encode();
        assert!(sent.len() <= MAX_PAYLOAD);
        assert_eq!(
            Announcement::decode(&sent).changes,
            [Change::Repo {
                repo: "p/app".into()
            }]
        );
        let repos: Vec<Change> = (0..400)
            .map(|i| Change::Repo {
                repo: format!("project/repository-{i:04}"),
            })
            .collect();
        let a = Announcement {
            origin: "r:2".into(),
            changes: repos,
        };
        assert_eq!(
            Announcement::decode(&a.encode()).changes,
            [Change::Everything]
        );
    }
}
