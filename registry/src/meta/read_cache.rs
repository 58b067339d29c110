//! A cache of the metadata's hot reads: manifests by (repository, digest),
//! tags, and blob links (`linked_blob`). It owns no I/O: a backend asks it
//! before reading and offers it what the read found.
//!
//! - On PostgreSQL (`pg::PgMeta`) it is a replica's: the change feed
//!   (`pg/change_feed.rs`) tells it what other replicas removed or moved
//!   (`pg/changes.rs`), and when its connection is lost or back.
//! - On the embedded file (`RedbMeta`) this process is the only writer:
//!   every write drops everything once it has committed, before it is
//!   acknowledged (`forget_all`), so a pull never waits on the database's
//!   table lookups for what was read since the last write.
//!
//! What it guarantees (on PostgreSQL; the embedded backend's writes drop
//! everything and it serves from the start, with no feed to wait for):
//! - It holds only what exists, never that something is missing: a push,
//!   a new tag or a new link is seen by every replica at once.
//! - A removal or a tag move is announced in the writing transaction; each
//!   replica drops the entries it touches when the announcement arrives.
//!   The writer drops its own at once after its commit, and acknowledges
//!   the write only once its own listener has heard the announcement (at
//!   most `ECHO_WAIT`): the database hands it to every listener at the
//!   same moment, so by then the other replicas have it too, short of a
//!   stalled process.
//! - A read that started before an announcement arrived does not fill the
//!   cache with what it found (`generation`): what it read may be older.
//! - While the listener is not connected, nothing is served from the cache
//!   or put into it; when the connection is lost, everything is dropped, and
//!   serving resumes only once LISTEN is in place again. So an announcement
//!   missed meanwhile cannot leave a stale entry behind.
//! - Every entry is dropped `ttl` after it was read from the database,
//!   whatever happens: the bound for a listener connection that died
//!   without a word (noticed only by TCP keepalives, about a minute).
//!
//! Its size is bounded by a byte budget (manifest bytes plus a fixed cost
//! per entry); past it, the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::pg::changes::{Announcement, Change};
use crate::meta::StoredManifest;
use crate::oci::Digest;

/// How long a write waits for its own listener to hear its announcement.
pub const ECHO_WAIT: Duration = Duration::from_secs(1);

/// What each entry costs beside its manifest bytes and names.
const ENTRY_COST: u64 = 96;

/// A cache's limits.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub budget: u64,
    pub ttl: Duration,
}

/// A lookup's answer: the value, or a ticket to offer what the database
/// says (`None`: not serving, offer nothing).
#[derive(Debug)]
pub enum Lookup<V> {
    Hit(V),
    Miss(Option<Ticket>),
}

/// The generation a read started in.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Tag,
    Link,
}

struct Entry<V> {
    value: V,
    at: Instant,
    cost: u64,
    seq: u64,
}

#[derive(Default)]
struct RepoEntries {
    manifests: HashMap<String, Entry<StoredManifest>>,
    tags: HashMap<String, Entry<Digest>>,
    links: HashMap<String, Entry<u64>>,
}

impl RepoEntries {
    fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.tags.is_empty() && self.links.is_empty()
    }
    fn cost(&self) -> u64 {
        self.manifests.values().map(|e| e.cost).sum::<u64>()
            + self.tags.values().map(|e| e.cost).sum::<u64>()
            + self.links.values().map(|e| e.cost).sum::<u64>()
    }
}

#[derive(Default)]
struct State {
    serving: bool,
    generation: u64,
    repos: HashMap<String, RepoEntries>,
    /// Insertion order, for the budget: (kind, repo, key, seq); an item
    /// whose entry is gone or newer is skipped.
    order: VecDeque<(Kind, String, String, u64)>,
    entries: usize,
    used: u64,
    next_seq: u64,
}

/// The cache, shared by a `PgMeta`'s clones and its change feed.
pub struct ReadCache {
    limits: CacheLimits,
    state: Mutex<State>,
    /// This replica's name in announcements, and its writes' numbers.
    replica: String,
    next_write: AtomicU64,
    /// Writes waiting for their own announcement, by number.
    echoes: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl ReadCache {
    /// An empty cache, not serving until the feed says it listens.
    pub fn new(limits: CacheLimits) -> ReadCache {
        ReadCache {
            limits,
            state: Mutex::new(State::default()),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            next_write: AtomicU64::new(1),
            echoes: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn manifest(&self, repo: &str, digest: &Digest) -> Lookup<StoredManifest> {
        let key = digest.to_string();
        self.lookup(repo, &key, Kind::Manifest, |r| {
            r.manifests.get(&key).map(|e| (e.at, e.value.clone()))
        })
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Lookup<Digest> {
        self.lookup(repo, tag, Kind::Tag, |r| {
            r.tags.get(tag).map(|e| (e.at, e.value.clone()))
        })
    }

    pub fn link(&self, repo: &str, digest: &Digest) -> Lookup<u64> {
        let key = digest.to_string();
        self.lookup(repo, &key, Kind::Link, |r| {
            r.links.get(&key).map(|e| (e.at, e.value))
        })
    }

    fn lookup<V>(
        &self,
        repo: &str,
        key: &str,
        kind: Kind,
        get: impl FnOnce(&RepoEntries) -> Option<(Instant, V)>,
    ) -> Lookup<V> {
        let mut st = self.state();
        if !st.serving {
            return Lookup::Miss(None);
        }
        let ticket = Some(Ticket(st.generation));
        match st.repos.get(repo).and_then(get) {
            Some((at, v)) if at.elapsed() < self.limits.ttl => Lookup::Hit(v),
            Some(_) => {
                st.remove(kind, repo, key);
                Lookup::Miss(ticket)
            }
            None => Lookup::Miss(ticket),
        }
    }

    pub fn put_manifest(&self, ticket: Ticket, repo: &str, m: &StoredManifest) {
        let key = m.digest.to_string();
        let cost = m.bytes.len() as u64 + m.media_type.len() as u64;
        self.put(ticket, Kind::Manifest, repo, key, cost, |r, k, e| {
            r.manifests.insert(k, e.with(m.clone())).map(|o| o.cost)
        });
    }

    pub fn put_tag(&self, ticket: Ticket, repo: &str, tag: &str, digest: &Digest) {
        self.put(ticket, Kind::Tag, repo, tag.to_string(), 0, |r, k, e| {
            r.tags.insert(k, e.with(digest.clone())).map(|o| o.cost)
        });
    }

    pub fn put_link(&self, ticket: Ticket, repo: &str, digest: &Digest, size: u64) {
        self.put(
            ticket,
            Kind::Link,
            repo,
            digest.to_string(),
            0,
            |r, k, e| r.links.insert(k, e.with(size)).map(|o| o.cost),
        );
    }

    /// Inserts unless an announcement arrived (or the feed was lost) since
    /// the ticket was taken; then keeps within the budget.
    fn put(
        &self,
        ticket: Ticket,
        kind: Kind,
        repo: &str,
        key: String,
        extra: u64,
        insert: impl FnOnce(&mut RepoEntries, String, Stamp) -> Option<u64>,
    ) {
        let cost = ENTRY_COST + repo.len() as u64 + key.len() as u64 + extra;
        if cost > self.limits.budget {
            return;
        }
        let mut st = self.state();
        if !st.serving || st.generation != ticket.0 {
            return;
        }
        st.next_seq += 1;
        let seq = st.next_seq;
        let stamp = Stamp {
            at: Instant::now(),
            cost,
            seq,
        };
        let replaced = insert(
            st.repos.entry(repo.to_string()).or_default(),
            key.clone(),
            stamp,
        );
        match replaced {
            Some(old) => st.used = st.used.saturating_sub(old),
            None => st.entries += 1,
        }
        st.used += cost;
        st.order.push_back((kind, repo.to_string(), key, seq));
        st.keep_within(self.limits.budget);
    }

    /// The feed listens (again): serve from now on.
    pub fn resume(&self) {
        let mut st = self.state();
        st.serving = true;
        st.generation += 1;
    }

    /// The feed's connection is gone: drop everything and stop serving
    /// until it listens again; writes waiting for their echo go on.
    pub fn suspend(&self) {
        {
            let mut st = self.state();
            let dropped = st.entries;
            *st = State {
                generation: st.generation + 1,
                next_seq: st.next_seq,
                ..State::default()
            };
            if dropped > 0 {
                tracing::info!(dropped, "metadata cache dropped: its change feed is lost");
            }
        }
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Drops everything: a write of this process may have removed or
    /// moved anything (the embedded backend's writes).
    pub fn forget_all(&self) {
        self.forget(&[Change::Everything]);
    }

    /// Drops what `changes` touch.
    pub fn forget(&self, changes: &[Change]) {
        let mut st = self.state();
        st.generation += 1;
        for c in changes {
            st.forget(c);
        }
    }

    /// An announcement the feed heard: drops what it touches, and releases
    /// the write that sent it if it is this replica's.
    pub fn heard(&self, payload: &str) {
        let a = Announcement::decode(payload);
        self.forget(&a.changes);
        let mine = a
            .origin
            .split_once(':')
            .filter(|(replica, _)| *replica == self.replica)
            .and_then(|(_, n)| n.parse::<u64>().ok());
        if let Some(n) = mine {
            let waiter = self
                .echoes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&n);
            if let Some(w) = waiter {
                let _ = w.send(());
            }
        }
    }

    /// An announcement of `changes` by this replica, and what to wait on
    /// for its echo (None when the feed is not listening: nothing to wait
    /// for, and nothing is served from the cache meanwhile).
    pub fn announcement(&self, changes: Vec<Change>) -> (Announcement, Option<Echo>) {
        let n = self.next_write.fetch_add(1, Ordering::Relaxed);
        let origin = format!("{}:{n}", self.replica);
        let echo = if self.state().serving {
            let (tx, rx) = oneshot::channel();
            self.echoes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(n, tx);
            Some(Echo { n, rx })
        } else {
            None
        };
        (Announcement { origin, changes }, echo)
    }

    /// Waits (at most `ECHO_WAIT`) until the listener heard `echo`'s write.
    pub async fn wait_echo(&self, echo: Echo) {
        let n = echo.n;
        if tokio::time::timeout(ECHO_WAIT, echo.rx).await.is_err() {
            tracing::debug!("a metadata change was not heard back within {ECHO_WAIT:?}");
        }
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n);
    }

    /// Forgets a write that did not commit.
    pub fn abandon(&self, echo: Echo) {
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&echo.n);
    }

    /// Whether it serves (its change feed is listening).
    pub fn serving(&self) -> bool {
        self.state().serving
    }

    #[cfg(test)]
    fn used(&self) -> (usize, u64, usize) {
        let st = self.state();
        (st.entries, st.used, st.order.len())
    }
}

/// A write waiting for its announcement to come back.
#[derive(Debug)]
pub struct Echo {
    n: u64,
    rx: oneshot::Receiver<()>,
}

#[derive(Clone, Copy)]
struct Stamp {
    at: Instant,
    cost: u64,
    seq: u64,
}

impl Stamp {
    fn with<V>(self, value: V) -> Entry<V> {
        Entry {
            value,
            at: self.at,
            cost: self.cost,
            seq: self.seq,
        }
    }
}

impl State {
    fn forget(&mut self, c: &Change) {
        match c {
            Change::Tag { repo, tag } => self.remove(Kind::Tag, repo, tag),
            Change::Link { repo, digest } => self.remove(Kind::Link, repo, digest),
            Change::Manifest { repo, digest } => {
                self.remove(Kind::Manifest, repo, digest);
                // Its tags went with it.
                let tags: Vec<String> = self
                    .repos
                    .get(repo.as_str())
                    .map(|r| {
                        r.tags
                            .iter()
                            .filter(|(_, e)| e.value.to_string() == *digest)
                            .map(|(t, _)| t.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for t in tags {
                    self.remove(Kind::Tag, repo, &t);
                }
            }
            Change::Blob { digest } => {
                let repos: Vec<String> = self
                    .repos
                    .iter()
                    .filter(|(_, r)| r.links.contains_key(digest.as_str()))
                    .map(|(name, _)| name.clone())
                    .collect();
                for r in repos {
                    self.remove(Kind::Link, &r, digest);
                }
            }
            Change::Repo { repo } => {
                if let Some(r) = self.repos.remove(repo.as_str()) {
                    self.entries -= r.manifests.len() + r.tags.len() + r.links.len();
                    self.used = self.used.saturating_sub(r.cost());
                }
            }
            Change::Everything => {
                *self = State {
                    serving: self.serving,
                    generation: self.generation,
                    next_seq: self.next_seq,
                    ..State::default()
                };
            }
        }
    }

    fn remove(&mut self, kind: Kind, repo: &str, key: &str) {
        self.remove_if(kind, repo, key, None);
    }

    /// Removes an entry (only the one numbered `seq`, if given).
    fn remove_if(&mut self, kind: Kind, repo: &str, key: &str, seq: Option<u64>) {
        let Some(r) = self.repos.get_mut(repo) else {
            return;
        };
        fn take<V>(m: &mut HashMap<String, Entry<V>>, key: &str, seq: Option<u64>) -> Option<u64> {
            match m.get(key) {
                Some(e) if seq.is_none_or(|s| s == e.seq) => m.remove(key).map(|e| e.cost),
                _ => None,
            }
        }
        let cost = match kind {
            Kind::Manifest => take(&mut r.manifests, key, seq),
            Kind::Tag => take(&mut r.tags, key, seq),
            Kind::Link => take(&mut r.links, key, seq),
        };
        let empty = r.is_empty();
        if let Some(cost) = cost {
            self.entries -= 1;
            self.used = self.used.saturating_sub(cost);
        }
        if empty {
            self.repos.remove(repo);
        }
    }

    /// Drops the oldest entries past `budget`, and the order's items for
    /// entries gone meanwhile once they outnumber the live ones.
    fn keep_within(&mut self, budget: u64) {
        while self.used > budget {
            let Some((kind, repo, key, seq)) = self.order.pop_front() else {
                break;
            };
            self.remove_if(kind, &repo, &key, Some(seq));
        }
        if self.order.len() > 2 * self.entries + 64 {
            let order = std::mem::take(&mut self.order);
            self.order = order
                .into_iter()
                .filter(|(kind, repo, key, seq)| self.holds(*kind, repo, key, *seq))
                .collect();
        }
    }

    fn holds(&self, kind: Kind, repo: &str, key: &str, seq: u64) -> bool {
        let Some(r) = self.repos.get(repo) else {
            return false;
        };
        match kind {
            Kind::Manifest => r.manifests.get(key).is_some_and(|e| e.seq == seq),
            Kind::Tag => r.tags.get(key).is_some_and(|e| e.seq == seq),
            Kind::Link => r.links.get(key).is_some_and(|e| e.seq == seq),
        }
    }
}

#[cfg(test)]
#[path = "read_cache_tests.rs"]
mod tests;
