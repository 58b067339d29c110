//! Edges report finished prefetch jobs: the controller learns of a job's end
//! when it happens instead of at the next poll.
//!
//! Owns: the report target handed to an edge with each prefetch (a URL of the
//! controller's report endpoint for that one publication, and a token), the
//! check of that token, and the inbox of reported job states that the next
//! reconcile of the publication reads instead of asking the edge.
//!
//! Why reports, and not a long poll or a stream: a node's job runs for
//! seconds to hours, and a long poll (`GET .../jobs/{id}?wait=30s`) or a
//! stream holds one connection per node for all that time — 10,000 sockets,
//! their buffers and a task each, held by the controller for the whole
//! publish, and reopened every `wait`. A report costs one short request per
//! job, made by the edge when the job ends, and nothing while it runs; the
//! controller keeps no connection to a node between the submit and the end
//! (its pool closes idle ones after 5 s). It also needs no more requests per
//! node than polling: the report carries the job's final state, so the
//! reconcile it wakes does not ask the edge again.
//!
//! Level-triggered still: a report only stores what the edge said and wakes
//! the publication's reconcile, which reads the stored publication and does
//! the next thing, exactly as after a poll. A report that is lost (edge
//! restarted, controller unreachable, inbox full) changes nothing but the
//! delay: the reconcile still polls, every `report_fallback` for a job the
//! edge said it would report and `poll_interval` for one it did not (an
//! older edge). A report for a job the publication no longer follows is
//! never read and expires.
//!
//! The token is an HMAC-SHA256, under a key derived from the controller's
//! secret key, of the publication (project, app, node): only the edge that
//! was given the job can post about it, the controller stores nothing per
//! token, and a controller restarted with the same key still takes reports
//! of jobs submitted before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::PublicationKey;
use crate::ports::{JobStatus, ReportTarget};

type HmacSha256 = Hmac<Sha256>;

/// Reported jobs kept at most; beyond this a report is dropped (the
/// fallback poll then finds the job's end).
const INBOX_CAP: usize = 100_000;
/// A report nobody read in this long is dropped.
const INBOX_TTL: Duration = Duration::from_secs(600);

/// The report endpoint's path for a publication, below the controller's URL.
pub fn report_path(project: &str, app: &str, node: &str) -> String {
    format!("/api/v1/projects/{project}/apps/{app}/publications/{node}/prefetch-report")
}

/// Report targets, their tokens, and the jobs reported and not yet read.
pub struct EdgeReports {
    /// The controller's URL as edges reach it (no trailing `/`); `None`:
    /// edges are not asked to report, the controller polls.
    base_url: Option<String>,
    key: [u8; 32],
    /// Keys derived from previous secret keys: tokens handed out before a
    /// rotation of the secret key still verify.
    previous: Vec<[u8; 32]>,
    /// (node, job id) -> what the edge reported, and when.
    inbox: Mutex<HashMap<(String, String), (JobStatus, Instant)>>,
}

impl EdgeReports {
    /// Reports to `base_url` (the registry's external URL), tokens under a
    /// key derived from `secret` (a random one without: reports of jobs
    /// submitted before a restart are then refused, and polled). Tokens
    /// under keys derived from `previous` (earlier secret keys) verify too.
    pub fn new(base_url: Option<String>, secret: Option<&[u8; 32]>, previous: &[[u8; 32]]) -> Self {
        let derive = |s: &[u8; 32]| -> [u8; 32] {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(s).expect("HMAC takes any key");
            mac.update(b"berth prefetch reports");
            mac.finalize().into_bytes().into()
        };
        let key = match secret {
            Some(s) => derive(s),
            None => rand::random(),
        };
        EdgeReports {
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            key,
            previous: previous.iter().map(derive).collect(),
            inbox: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, project: &str, app: &str, node: &str) -> HmacSha256 {
        Self::mac_with(&self.key, project, app, node)
    }

    fn mac_with(key: &[u8; 32], project: &str, app: &str, node: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key");
        for part in [project, app, node] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// Where the edge of `key.node` reports the job of this publication.
    pub fn target(&self, key: &PublicationKey) -> Option<ReportTarget> {
        let base = self.base_url.as_ref()?;
        let token = hex::encode(
            self.mac(&key.project, &key.app, &key.node)
                .finalize()
                .into_bytes(),
        );
        Some(ReportTarget {
            url: format!("{base}{}", report_path(&key.project, &key.app, &key.node)),
            token,
        })
    }

    /// Whether `token` is the one handed out for this publication (in
    /// constant time).
    pub fn verify(&self, project: &str, app: &str, node: &str, token: &str) -> bool {
        match hex::decode(token.trim()) {
            Ok(raw) => std::iter::once(&self.key).chain(&self.previous).any(|k| {
                Self::mac_with(k, project, app, node)
                    .verify_slice(&raw)
                    .is_ok()
            }),
            Err(_) => false,
        }
    }

    /// Keeps what the edge of `node` reported about job `id`, for the next
    /// reconcile of the publication following it. False when the inbox is
    /// full (the report is dropped; the fallback poll finds the job).
    pub fn deliver(&self, node: &str, id: &str, status: JobStatus) -> bool {
        let Ok(mut inbox) = self.inbox.lock() else {
            return false;
        };
        if inbox.len() >= INBOX_CAP {
            inbox.retain(|_, (_, at)| at.elapsed() < INBOX_TTL);
            if inbox.len() >= INBOX_CAP {
                return false;
            }
        }
        inbox.insert((node.to_string(), id.to_string()), (status, Instant::now()));
        true
    }

    /// What the edge of `node` reported about job `id`, once.
    pub fn take(&self, node: &str, id: &str) -> Option<JobStatus> {
        let mut inbox = self.inbox.lock().ok()?;
        let (status, at) = inbox.remove(&(node.to_string(), id.to_string()))?;
        (at.elapsed() < INBOX_TTL).then_some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::JobState;

    fn key() -> PublicationKey {
        PublicationKey {
            project: "acme".into(),
            app: "web".into(),
            node: "n1".into(),
        }
    }

    fn done() -> JobStatus {
        JobStatus::Known {
            state: JobState::Done,
            bytes_done: 1,
            bytes_total: 1,
            error: None,
            images: vec![],
        }
    }

    #[test]
    fn a_token_is_good_for_its_publication_only() {
        let r = EdgeReports::new(Some("http://reg:5000/".into()), Some(&[7; 32]), &[]);
        let t = r.target(&key()).expect("target");
        assert_eq!(
            t.url,
            "http://reg:5000/api/v1/projects/acme/apps/web/publications/n1/prefetch-report"
        );
        assert!(r.verify("acme", "web", "n1", &t.token));
        assert!(!r.verify("acme", "web", "n2", &t.token));
        assert!(!r.verify("acme", "web2", "n1", &t.token));
        assert!(!r.verify("acme", "web", "n1", "not hex"));
        assert!(!r.verify("acme", "web", "n1", ""));
        // The same secret after a restart: the same token.
        let again = EdgeReports::new(Some("http://reg:5000".into()), Some(&[7; 32]), &[]);
        assert!(again.verify("acme", "web", "n1", &t.token));
        let other = EdgeReports::new(Some("http://reg:5000".into()), Some(&[8; 32]), &[]);
        assert!(!other.verify("acme", "web", "n1", &t.token));
        // A rotated secret key: tokens handed out before still verify.
        let rotated = EdgeReports::new(Some("http://reg:5000".into()), Some(&[8; 32]), &[[7; 32]]);
        assert!(rotated.verify("acme", "web", "n1", &t.token));
    }

    #[test]
    fn without_a_url_edges_are_polled() {
        let r = EdgeReports::new(None, Some(&[7; 32]), &[]);
        assert!(r.target(&key()).is_none());
    }

    #[test]
    fn a_report_is_read_once_by_node_and_job() {
        let r = EdgeReports::new(None, None, &[]);
        assert!(r.deliver("n1", "j1", done()));
        assert_eq!(r.take("n2", "j1"), None);
        assert_eq!(r.take("n1", "j2"), None);
        assert_eq!(r.take("n1", "j1"), Some(done()));
        assert_eq!(r.take("n1", "j1"), None);
    }
}
