//! Replication policies, one JSON record per name, and their executions,
//! one JSON record per (name, id); and resealing the secrets the registry's
//! tables keep (webhooks' and replication policies').

use ::redb::ReadableTable;

use super::{corrupt, RedbMeta, REPLICATIONS, REPLICATION_RUNS, WEBHOOKS};
use crate::meta::{
    Execution, ReplicationPolicy, Result, Webhook, REPLICATION_PASSWORDS, WEBHOOK_SECRETS,
};
use crate::sealing::{ResealCount, ResealReport, Sealer};

impl RedbMeta {
    /// Webhook secrets and replication passwords sealed again with
    /// `sealer`'s current key, in one transaction.
    pub(super) fn reseal_now(&self, sealer: &dyn Sealer) -> Result<ResealReport> {
        let tx = self.db().begin_write()?;
        let mut hooks = ResealCount::default();
        let mut changed = Vec::new();
        for r in tx.open_table(WEBHOOKS)?.iter()? {
            let mut w: Webhook = serde_json::from_slice(r?.1.value()).map_err(corrupt)?;
            let place = crate::meta::webhook_secret_place(&w.id);
            let mut resealed = false;
            if let Some(new) = hooks.one(sealer, &place, &w.secret) {
                w.secret = new;
                resealed = true;
            }
            // A rotation's previous secret is sealed too, until its overlap ends.
            let place = crate::meta::webhook_previous_secret_place(&w.id);
            if let Some(p) = w.previous.as_mut() {
                if let Some(new) = hooks.one(sealer, &place, &p.secret) {
                    p.secret = new;
                    resealed = true;
                }
            }
            if resealed {
                changed.push((w.id.clone(), serde_json::to_vec(&w).map_err(corrupt)?));
            }
        }
        let mut t = tx.open_table(WEBHOOKS)?;
        for (id, bytes) in changed {
            t.insert(id.as_str(), bytes.as_slice())?;
        }
        drop(t);
        let mut passwords = ResealCount::default();
        let mut changed = Vec::new();
        for r in tx.open_table(REPLICATIONS)?.iter()? {
            let mut p: ReplicationPolicy = serde_json::from_slice(r?.1.value()).map_err(corrupt)?;
            let place = crate::replication::password_place(&p.name);
            let Some(sealed) = p.remote.password_sealed.as_mut() else {
                continue;
            };
            if let Some(new) = passwords.one(sealer, &place, sealed) {
                *sealed = new;
                changed.push((p.name.clone(), serde_json::to_vec(&p).map_err(corrupt)?));
            }
        }
        let mut t = tx.open_table(REPLICATIONS)?;
        for (name, bytes) in changed {
            t.insert(name.as_str(), bytes.as_slice())?;
        }
        drop(t);
        tx.commit()?;
        Ok([
            (WEBHOOK_SECRETS.to_string(), hooks),
            (REPLICATION_PASSWORDS.to_string(), passwords),
        ]
        .into())
    }

    pub(super) fn replication_put_now(&self, p: &ReplicationPolicy) -> Result<()> {
        let bytes = serde_json::to_vec(p).map_err(corrupt)?;
        let tx = self.db().begin_write()?;
        tx.open_table(REPLICATIONS)?
            .insert(p.name.as_str(), bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn replication_get_now(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPLICATIONS)?;
        let v = t.get(name)?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
            .transpose()
    }

    pub(super) fn replications_now(&self) -> Result<Vec<ReplicationPolicy>> {
        let tx = self.db().begin_read()?;
        let mut out = Vec::new();
        for r in tx.open_table(REPLICATIONS)?.iter()? {
            out.push(serde_json::from_slice(r?.1.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    pub(super) fn replication_delete_now(&self, name: &str) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let existed = tx.open_table(REPLICATIONS)?.remove(name)?.is_some();
        tx.open_table(REPLICATION_RUNS)?
            .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        tx.commit()?;
        Ok(existed)
    }

    pub(super) fn execution_create_now(&self, e: &Execution) -> Result<u64> {
        let tx = self.db().begin_write()?;
        let id = {
            let mut t = tx.open_table(REPLICATION_RUNS)?;
            let name = e.policy.as_str();
            let last = t
                .range((name, 0)..=(name, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1);
            let mut e = e.clone();
            e.id = last + 1;
            let bytes = serde_json::to_vec(&e).map_err(corrupt)?;
            t.insert((name, e.id), bytes.as_slice())?;
            e.id
        };
        tx.commit()?;
        Ok(id)
    }

    pub(super) fn execution_put_now(&self, e: &Execution) -> Result<()> {
        let bytes = serde_json::to_vec(e).map_err(corrupt)?;
        let tx = self.db().begin_write()?;
        tx.open_table(REPLICATION_RUNS)?
            .insert((e.policy.as_str(), e.id), bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn execution_get_now(&self, policy: &str, id: u64) -> Result<Option<Execution>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPLICATION_RUNS)?;
        let v = t.get((policy, id))?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
            .transpose()
    }

    pub(super) fn executions_now(
        &self,
        policy: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPLICATION_RUNS)?;
        let names: Vec<String> = match policy {
            Some(p) => vec![p.to_string()],
            None => {
                let mut names = Vec::new();
                for r in tx.open_table(REPLICATIONS)?.iter()? {
                    names.push(r?.0.value().to_string());
                }
                names
            }
        };
        let mut out = Vec::new();
        for name in &names {
            let n = name.as_str();
            for r in t.range((n, 0)..=(n, u64::MAX))?.rev().take(limit) {
                out.push(serde_json::from_slice(r?.1.value()).map_err(corrupt)?);
            }
        }
        Ok(out)
    }
}
