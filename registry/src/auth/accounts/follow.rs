//! Following a shared store: changes other replicas make (a project
//! created, a password reset, a robot revoked, a member removed) reach this
//! replica's snapshot by `reload`, which the store's announcements
//! (`StoreSignal`) trigger, with a periodic reload as the backstop while
//! announcements are down and, rarely, while they are up (a connection
//! that died without anyone noticing yet).
//!
//! A reload compares the new records with the snapshot it replaces and
//! does what a local change would have done: credentials changed or gone
//! bump the credentials epoch (so every login cache verifies again), and
//! projects someone lost access to are announced (`access_removed`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{AccountError, Accounts, Credential, Snapshot, StoreSignal};

/// How often the snapshot is reloaded while the store's announcements are
/// down, and while they are up.
#[derive(Debug, Clone, Copy)]
pub struct Backstop {
    pub while_lost: Duration,
    pub while_listening: Duration,
}

impl Default for Backstop {
    fn default() -> Self {
        Self {
            while_lost: Duration::from_secs(2),
            while_listening: Duration::from_secs(60),
        }
    }
}

impl Accounts {
    /// Replaces the snapshot with the store's records, as one change (so a
    /// local change is never overwritten by an older load).
    pub async fn reload(&self) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        let new: Snapshot = self.store.load().await?.into();
        let (credentials, lost) = compare(&self.read(), &new);
        *self.write() = new;
        if credentials {
            self.credentials_changed();
        }
        for project in lost {
            let _ = self.access_removed.send(project);
        }
        Ok(())
    }

    /// Keeps the snapshot up to date with changes other replicas make, as
    /// `signals` announces them, until this `Accounts` is dropped.
    pub fn follow(
        self: &Arc<Self>,
        signals: mpsc::Receiver<StoreSignal>,
        backstop: Backstop,
    ) -> tokio::task::JoinHandle<()> {
        self.shared.store(true, Ordering::Release);
        let this = Arc::downgrade(self);
        tokio::spawn(follow(this, signals, backstop))
    }

    /// Before refusing `name`'s secret or token on a shared store, checked
    /// against the snapshot of `generation`: whether to check again. The
    /// store may hold another record for `name` than the snapshot (another
    /// replica created it, changed its password, made a robot of its name
    /// again, and this replica has not heard yet): the snapshot is then
    /// reloaded first. Else only if the snapshot changed since the check.
    /// One row read; nothing on the embedded store, whose snapshot is the
    /// store.
    pub async fn refresh_for(&self, name: &str, generation: u64) -> bool {
        if !self.shared.load(Ordering::Acquire) {
            return false;
        }
        let stored = match self.store.credential(name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an account record; deciding on the snapshot");
                return false;
            }
        };
        let same = {
            let snap = self.read();
            match &stored {
                None => !snap.users.contains_key(name) && !snap.robots.contains_key(name),
                Some(Credential::User(n)) => snap.users.get(name).is_some_and(|u| {
                    (&n.id, &n.hash, n.must_reset, n.admin)
                        == (&u.id, &u.hash, u.must_reset, u.admin)
                }),
                Some(Credential::Robot(n)) => snap.robots.get(name).is_some_and(|r| {
                    (&n.id, &n.hash, n.revoked, n.expires_at)
                        == (&r.id, &r.hash, r.revoked, r.expires_at)
                }),
            }
        };
        if same {
            return self.generation() != generation;
        }
        match self.reload().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the accounts; deciding on the snapshot");
                false
            }
        }
    }
}

async fn follow(this: Weak<Accounts>, mut signals: mpsc::Receiver<StoreSignal>, b: Backstop) {
    let mut listening = false;
    let mut open = true;
    loop {
        let wait = if listening {
            b.while_listening
        } else {
            b.while_lost
        };
        let signal = tokio::select! {
            s = signals.recv(), if open => s,
            () = tokio::time::sleep(wait) => Some(StoreSignal::Changed),
        };
        match signal {
            Some(StoreSignal::Listening) => listening = true,
            Some(StoreSignal::Lost) => listening = false,
            Some(StoreSignal::Changed) => {}
            None => (open, listening) = (false, false),
        }
        // A burst of changes is one reload.
        while let Ok(s) = signals.try_recv() {
            match s {
                StoreSignal::Listening => listening = true,
                StoreSignal::Lost => listening = false,
                StoreSignal::Changed => {}
            }
        }
        let Some(accounts) = this.upgrade() else {
            return;
        };
        if let Err(e) = accounts.reload().await {
            tracing::warn!(error = %e, "cannot reload the accounts; retrying");
            listening = false;
        }
    }
}

/// Whether any credential changed or went away between `old` and `new`,
/// and the projects someone lost access to (the project gone, a member
/// removed or given another role).
fn compare(old: &Snapshot, new: &Snapshot) -> (bool, BTreeSet<String>) {
    let users = old.users.iter().any(|(name, u)| {
        new.users.get(name).is_none_or(|n| {
            (&n.id, &n.hash, n.must_reset, n.admin) != (&u.id, &u.hash, u.must_reset, u.admin)
        })
    });
    let robots = old.robots.iter().any(|(name, r)| {
        new.robots.get(name).is_none_or(|n| {
            (&n.id, &n.hash, n.revoked, n.expires_at, n.push, &n.system)
                != (&r.id, &r.hash, r.revoked, r.expires_at, r.push, &r.system)
        })
    });
    let mut lost: BTreeSet<String> = old
        .projects
        .keys()
        .filter(|p| !new.projects.contains_key(*p))
        .cloned()
        .collect();
    for ((project, user), role) in &old.members {
        if new.members.get(&(project.clone(), user.clone())) != Some(role) {
            lost.insert(project.clone());
        }
    }
    (users || robots, lost)
}
