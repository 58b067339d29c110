//! Replication policies (`replication_policies`, by name) and their
//! executions (`replication_executions`, by policy and id) on PostgreSQL;
//! and resealing the secrets the registry's tables keep (webhooks' and
//! replication policies').

use super::db::{begin_write, big, col, col_u64, commit, from_json, to_json, Cached, Ctx, PgMeta};
use crate::meta::{
    Execution, ExecutionStatus, ReplicationPolicy, Result, SealedSecret, REPLICATION_PASSWORDS,
    WEBHOOK_SECRETS,
};
use crate::sealing::{ResealCount, ResealReport, Sealer};

fn status(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::Running => "running",
        ExecutionStatus::Succeeded => "succeeded",
        ExecutionStatus::Failed => "failed",
    }
}

impl PgMeta {
    pub(super) async fn replication_put_q(&self, p: &ReplicationPolicy) -> Result<()> {
        let what = "saving a replication policy";
        let json = to_json(p, "encoding a replication policy")?;
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        tx.cexec(
            "INSERT INTO replication_policies (name, policy) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (name) DO UPDATE SET policy = EXCLUDED.policy",
            &[&p.name, &json],
        )
        .await
        .ctx(what)?;
        commit(tx, what).await
    }

    pub(super) async fn replication_get_q(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT policy::text FROM replication_policies WHERE name = $1",
                &[&name],
            )
            .await
            .ctx("reading a replication policy")?;
        row.map(|r| from_json(&col::<String>(&r, 0, "policy")?, "a replication policy"))
            .transpose()
    }

    pub(super) async fn replications_q(&self) -> Result<Vec<ReplicationPolicy>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT policy::text FROM replication_policies ORDER BY name",
            &[],
        )
        .await
        .ctx("reading the replication policies")?
        .iter()
        .map(|r| from_json(&col::<String>(r, 0, "policy")?, "a replication policy"))
        .collect()
    }

    /// Webhook secrets and replication passwords sealed again with
    /// `sealer`'s current key, in one transaction (rows locked as read).
    pub(super) async fn reseal_q(&self, sealer: &dyn Sealer) -> Result<ResealReport> {
        let what = "resealing webhook secrets and replication passwords";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let mut hooks = ResealCount::default();
        let rows = tx
            .cq(
                "SELECT id, secret::text, previous::text FROM webhooks ORDER BY id FOR UPDATE",
                &[],
            )
            .await
            .ctx(what)?;
        for r in rows {
            let id: String = col(&r, 0, "webhooks.id")?;
            let sealed: SealedSecret = from_json(
                &col::<String>(&r, 1, "webhooks.secret")?,
                "a webhook's sealed secret",
            )?;
            let place = crate::meta::webhook_secret_place(&id);
            if let Some(new) = hooks.one(sealer, &place, &sealed) {
                let json = to_json(&new, "encoding a webhook's sealed secret")?;
                tx.cexec(
                    "UPDATE webhooks SET secret = $2::text::jsonb WHERE id = $1",
                    &[&id, &json],
                )
                .await
                .ctx(what)?;
            }
            // A rotation's previous secret is sealed too, until its overlap ends.
            let previous: Option<String> = col(&r, 2, "webhooks.previous")?;
            let Some(previous) = previous else {
                continue;
            };
            let mut p: crate::meta::PreviousSecret =
                from_json(&previous, "a webhook's previous secret")?;
            let place = crate::meta::webhook_previous_secret_place(&id);
            if let Some(new) = hooks.one(sealer, &place, &p.secret) {
                p.secret = new;
                let json = to_json(&p, "encoding a webhook's previous secret")?;
                tx.cexec(
                    "UPDATE webhooks SET previous = $2::text::jsonb WHERE id = $1",
                    &[&id, &json],
                )
                .await
                .ctx(what)?;
            }
        }
        let mut passwords = ResealCount::default();
        let rows = tx
            .cq(
                "SELECT policy::text FROM replication_policies ORDER BY name FOR UPDATE",
                &[],
            )
            .await
            .ctx(what)?;
        for r in rows {
            let mut p: ReplicationPolicy =
                from_json(&col::<String>(&r, 0, "policy")?, "a replication policy")?;
            let place = crate::replication::password_place(&p.name);
            let Some(sealed) = p.remote.password_sealed.as_mut() else {
                continue;
            };
            if let Some(new) = passwords.one(sealer, &place, sealed) {
                *sealed = new;
                let json = to_json(&p, "encoding a replication policy")?;
                tx.cexec(
                    "UPDATE replication_policies SET policy = $2::text::jsonb WHERE name = $1",
                    &[&p.name, &json],
                )
                .await
                .ctx(what)?;
            }
        }
        commit(tx, what).await?;
        Ok([
            (WEBHOOK_SECRETS.to_string(), hooks),
            (REPLICATION_PASSWORDS.to_string(), passwords),
        ]
        .into())
    }

    pub(super) async fn replication_delete_q(&self, name: &str) -> Result<bool> {
        let what = "deleting a replication policy";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .cexec("DELETE FROM replication_policies WHERE name = $1", &[&name])
            .await
            .ctx(what)?;
        tx.cexec(
            "DELETE FROM replication_executions WHERE policy = $1",
            &[&name],
        )
        .await
        .ctx(what)?;
        commit(tx, what).await?;
        Ok(n > 0)
    }

    pub(super) async fn execution_create_q(&self, e: &Execution) -> Result<u64> {
        let what = "recording a replication execution";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let row = tx
            .cq_one(
                "SELECT COALESCE(max(id), 0) + 1 FROM replication_executions WHERE policy = $1",
                &[&e.policy],
            )
            .await
            .ctx(what)?;
        let mut e = e.clone();
        e.id = col_u64(&row, 0, "replication_executions.id")?;
        put(&tx, &e).await?;
        commit(tx, what).await?;
        Ok(e.id)
    }

    pub(super) async fn execution_put_q(&self, e: &Execution) -> Result<()> {
        let what = "saving a replication execution";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        put(&tx, e).await?;
        commit(tx, what).await
    }

    pub(super) async fn execution_get_q(&self, policy: &str, id: u64) -> Result<Option<Execution>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT execution::text FROM replication_executions WHERE policy = $1 AND id = $2",
                &[&policy, &big(id)],
            )
            .await
            .ctx("reading a replication execution")?;
        row.map(|r| from_json(&col::<String>(&r, 0, "execution")?, "an execution"))
            .transpose()
    }

    pub(super) async fn executions_q(
        &self,
        policy: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        let conn = self.conn().await?;
        // Of one policy (saved or not), or of every saved policy, by name;
        // each newest first.
        let rows = conn
            .cq(
                "SELECT execution::text FROM (
                   SELECT e.policy, e.id, e.execution,
                          row_number() OVER (PARTITION BY e.policy ORDER BY e.id DESC) AS n
                   FROM replication_executions e
                   WHERE ($1::text IS NOT NULL AND e.policy = $1)
                      OR ($1::text IS NULL
                          AND EXISTS (SELECT 1 FROM replication_policies p WHERE p.name = e.policy))
                 ) x WHERE x.n <= $2 ORDER BY x.policy, x.id DESC",
                &[&policy, &big(limit as u64)],
            )
            .await
            .ctx("reading replication executions")?;
        rows.iter()
            .map(|r| from_json(&col::<String>(r, 0, "execution")?, "an execution"))
            .collect()
    }
}

async fn put(tx: &deadpool_postgres::Transaction<'_>, e: &Execution) -> Result<()> {
    tx.cexec(
        "INSERT INTO replication_executions (policy, id, status, started_at, execution)
         VALUES ($1, $2, $3, $4, $5::text::jsonb)
         ON CONFLICT (policy, id) DO UPDATE SET status = EXCLUDED.status,
           started_at = EXCLUDED.started_at, execution = EXCLUDED.execution",
        &[
            &e.policy,
            &big(e.id),
            &status(e.status),
            &big(e.started_at),
            &to_json(e, "encoding an execution")?,
        ],
    )
    .await
    .ctx("saving a replication execution")?;
    Ok(())
}
