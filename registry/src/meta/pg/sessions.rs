//! Console sessions on PostgreSQL (`console_sessions`, a step of the
//! accounts' schema): what lets a browser signed in through one replica be
//! signed in on every other, and signed out everywhere at once. Rows are
//! keyed by the hash of the session id (never the id); deleting an account
//! deletes its rows (a foreign key). Expired rows go when their key is next
//! asked for, and with every sign-in.

use async_trait::async_trait;

use super::accounts::pg;
use super::Pool;
use crate::auth::sessions::{ms, SessionLimits, SessionStore, StoredSession};
use crate::auth::store::AccountError;

#[derive(Clone)]
pub struct PgSessions {
    pool: Pool,
}

impl PgSessions {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, AccountError> {
        self.pool
            .get()
            .await
            .map_err(|e| AccountError::Db(format!("connecting to PostgreSQL: {e}")))
    }
}

fn session_of(r: &tokio_postgres::Row) -> StoredSession {
    StoredSession {
        account: r.get(0),
        account_id: r.get(1),
        created_ms: r.get(2),
        last_seen_ms: r.get(3),
    }
}

#[async_trait]
impl SessionStore for PgSessions {
    async fn insert(
        &self,
        key: &str,
        s: &StoredSession,
        limits: &SessionLimits,
    ) -> Result<(), AccountError> {
        let (idle, life) = (ms(limits.idle), ms(limits.lifetime));
        let keep = i64::try_from(limits.per_account.max(1) - 1).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(pg("starting a session write"))?;
        let now = s.created_ms;
        tx.execute(
            "DELETE FROM console_sessions WHERE $1 - last_seen_ms >= $2 OR $1 - created_ms >= $3",
            &[&now, &idle, &life],
        )
        .await
        .map_err(pg("dropping expired sessions"))?;
        // The account's newest `keep` stay; this one makes the bound.
        tx.execute(
            "DELETE FROM console_sessions WHERE key IN (
                SELECT key FROM console_sessions WHERE account = $1
                ORDER BY last_seen_ms DESC OFFSET $2)",
            &[&s.account, &keep],
        )
        .await
        .map_err(pg("ending an account's oldest sessions"))?;
        tx.execute(
            "INSERT INTO console_sessions (key, account, account_id, created_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &key,
                &s.account,
                &s.account_id,
                &s.created_ms,
                &s.last_seen_ms,
            ],
        )
        .await
        .map_err(pg("storing a session"))?;
        tx.commit().await.map_err(pg("storing a session"))
    }

    async fn get(
        &self,
        key: &str,
        now_ms: i64,
        limits: &SessionLimits,
        touch: bool,
    ) -> Result<Option<StoredSession>, AccountError> {
        let (idle, life) = (ms(limits.idle), ms(limits.lifetime));
        let conn = self.conn().await?;
        let live = "$2 - last_seen_ms < $3 AND $2 - created_ms < $4";
        let sql = if touch {
            format!(
                "UPDATE console_sessions SET last_seen_ms = GREATEST(last_seen_ms, $2)
                 WHERE key = $1 AND {live}
                 RETURNING account, account_id, created_ms, last_seen_ms"
            )
        } else {
            format!(
                "SELECT account, account_id, created_ms, last_seen_ms FROM console_sessions
                 WHERE key = $1 AND {live}"
            )
        };
        let row = conn
            .query_opt(&sql, &[&key, &now_ms, &idle, &life])
            .await
            .map_err(pg("reading a session"))?;
        if let Some(r) = row {
            return Ok(Some(session_of(&r)));
        }
        // Expired (or never there): gone.
        conn.execute("DELETE FROM console_sessions WHERE key = $1", &[&key])
            .await
            .map_err(pg("dropping a session"))?;
        Ok(None)
    }

    async fn remove(&self, key: &str) -> Result<(), AccountError> {
        let conn = self.conn().await?;
        conn.execute("DELETE FROM console_sessions WHERE key = $1", &[&key])
            .await
            .map_err(pg("ending a session"))?;
        Ok(())
    }

    async fn remove_account(&self, account: &str) -> Result<usize, AccountError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "DELETE FROM console_sessions WHERE account = $1",
                &[&account],
            )
            .await
            .map_err(pg("ending an account's sessions"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::{AccountStore, User};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sessions_pass_the_suite_and_go_with_their_account() {
        let (pool, accounts) = super::super::accounts_tests::fresh().await;
        for name in ["ann", "bob", "cat"] {
            let user = User {
                name: name.into(),
                id: format!("{name}-id"),
                hash: "x".into(),
                admin: name == "ann",
                must_reset: false,
                created: 0,
            };
            accounts.create_user(&user).await.expect("user");
        }
        let store = PgSessions::new(pool);
        crate::auth::sessions::conformance::run(&store).await;
        // Deleting an account ends its sessions, on every replica at once.
        let limits = SessionLimits {
            idle: std::time::Duration::from_secs(60),
            lifetime: std::time::Duration::from_secs(60),
            per_account: 4,
        };
        let s = StoredSession {
            account: "bob".into(),
            account_id: "bob-id".into(),
            created_ms: 5,
            last_seen_ms: 5,
        };
        store.insert("k", &s, &limits).await.expect("insert");
        accounts.delete_user("bob").await.expect("delete bob");
        assert!(store
            .get("k", 6, &limits, true)
            .await
            .expect("get")
            .is_none());
    }
}
