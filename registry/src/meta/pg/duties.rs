//! `Duties` on PostgreSQL: each duty is a session advisory lock
//! (`pg_try_advisory_lock`) held on one connection of this process's own,
//! outside the pool. The lock lives as long as that connection: a replica
//! killed, partitioned or stopped frees its duties as soon as the server
//! sees the connection end (TCP keepalives bound that), and another
//! replica takes each one at its next check. A process that finds its
//! connection gone holds nothing until it has connected again and taken
//! the lock anew.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::duties::{Duties, Duty};

pub struct PgDuties {
    config: tokio_postgres::Config,
    state: Mutex<Option<(Client, HashSet<Duty>)>>,
}

impl PgDuties {
    /// Duties taken through the database at `url`; nothing connects until
    /// the first check.
    pub fn new(url: &str) -> Result<Self, crate::meta::MetaError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            crate::meta::MetaError::Db(format!("meta.url is not a PostgreSQL URL: {e}"))
        })?;
        config
            .application_name("berth-duties")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(10));
        Ok(Self {
            config,
            state: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Option<Client> {
        match self.config.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "the connection that holds this replica's duties ended");
                    }
                });
                Some(client)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to PostgreSQL to take background duties");
                None
            }
        }
    }
}

#[async_trait]
impl Duties for PgDuties {
    async fn hold(&self, duty: Duty) -> bool {
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|(c, held)| {
            if c.is_closed() && !held.is_empty() {
                tracing::warn!(duties = ?held, "lost the database connection: this replica holds no duties until it takes them again");
            }
            c.is_closed()
        }) {
            *state = None;
        }
        if state.is_none() {
            *state = self.connect().await.map(|c| (c, HashSet::new()));
        }
        let Some((client, held)) = state.as_mut() else {
            return false;
        };
        if held.contains(&duty) {
            return true;
        }
        match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&duty.lock_key()])
            .await
        {
            Ok(row) if row.try_get::<_, bool>(0).unwrap_or(false) => {
                tracing::info!(duty = duty.as_str(), "this replica took a background duty");
                held.insert(duty);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, duty = duty.as_str(), "cannot take a background duty");
                *state = None;
                false
            }
        }
    }

    async fn release(&self, duty: Duty) {
        let mut state = self.state.lock().await;
        let Some((client, held)) = state.as_mut() else {
            return;
        };
        if !held.remove(&duty) {
            return;
        }
        if let Err(e) = client
            .query_one("SELECT pg_advisory_unlock($1)", &[&duty.lock_key()])
            .await
        {
            tracing::warn!(error = %e, duty = duty.as_str(), "cannot give up a background duty");
            // The lock goes with the connection.
            *state = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use berth_testkit::postgres::Postgres;

    use super::*;

    #[tokio::test]
    async fn a_duty_is_held_by_one_replica_and_taken_over_when_it_goes() {
        let url = Postgres::shared().database();
        let a = PgDuties::new(&url).expect("a");
        let b = PgDuties::new(&url).expect("b");
        assert!(a.hold(Duty::GcSchedule).await, "free: a takes it");
        assert!(a.hold(Duty::GcSchedule).await, "a keeps it");
        assert!(!b.hold(Duty::GcSchedule).await, "held by a");
        assert!(b.hold(Duty::WebhookDelivery).await, "another duty is free");
        // Released, it is b's at its next check.
        a.release(Duty::GcSchedule).await;
        assert!(b.hold(Duty::GcSchedule).await);
        assert!(!a.hold(Duty::GcSchedule).await);
        // b goes away (its connection with it): a takes both over.
        drop(b);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(a.hold(Duty::GcSchedule).await && a.hold(Duty::WebhookDelivery).await) {
            assert!(Instant::now() < deadline, "a never took b's duties over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn no_database_holds_no_duty() {
        let pg = Postgres::start();
        let url = pg.database();
        let a = PgDuties::new(&url).expect("a");
        assert!(a.hold(Duty::Gc).await);
        pg.kill();
        // The connection is gone: nothing is held, nothing panics.
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.hold(Duty::Gc).await {
            assert!(
                Instant::now() < deadline,
                "still holding with the database gone"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pg.restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !a.hold(Duty::Gc).await {
            assert!(Instant::now() < deadline, "never took the duty again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
