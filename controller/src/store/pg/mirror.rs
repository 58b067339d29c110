//! The embedded store's transactions run over PostgreSQL rows: a write
//! loads the controller's rows inside a PostgreSQL transaction that holds
//! the controller's write lock, runs the embedded store's method on a copy
//! in an in-memory redb database (its rules, refusals and outbox records
//! unchanged), and writes back exactly the rows that method changed, in the
//! same transaction. A read runs on a copy loaded in one snapshot.
//!
//! This is how the rule-heavy calls (publish, resources and their rules,
//! purges, bindings, EIP claims) keep one implementation for both backends;
//! the reads and compare-and-swap writes the reconciler makes all the time
//! are plain SQL (`native`). The price: each such call loads every
//! controller row, which suits the controller's size (records of apps,
//! nodes and resources, not of images) and the rate of API requests.
//!
//! Owns: loading rows and writing back the difference. Must not touch:
//! what the rows mean.

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::schema::{names, Column, KEYS};
use super::{db, Result};
use crate::store::rows::{Key, Part, Rows, Table};
use crate::store::StoreError;

/// Every controller row, as `tx` sees them.
pub(super) async fn load(tx: &Transaction<'_>) -> Result<Rows> {
    let mut rows = Rows::default();
    let meta = tx
        .query("SELECT name, value FROM ctl_meta", &[])
        .await
        .map_err(db("reading ctl_meta"))?;
    for r in meta {
        let value: i64 = r.get(1);
        rows.meta
            .insert(r.get(0), u64::try_from(value).unwrap_or(0));
    }
    for (table, columns) in KEYS {
        let sql = format!("SELECT {}, doc FROM {table}", names(columns));
        let found = tx.query(&sql, &[]).await.map_err(db(table))?;
        let mut out = Table::new();
        for r in found {
            let key = columns
                .iter()
                .enumerate()
                .map(|(i, c)| match c {
                    Column::Text(_) => Part::Text(r.get(i)),
                    Column::Int4(_) => Part::Number(i64::from(r.get::<_, i32>(i))),
                    Column::Int8(_) => Part::Number(r.get(i)),
                })
                .collect();
            out.insert(key, r.get(columns.len()));
        }
        rows.tables.insert(table, out);
    }
    Ok(rows)
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The key's parts as parameters for `columns`.
fn key_params(table: &str, columns: &[Column], key: &Key) -> Result<Vec<Param>> {
    let bad = || StoreError::Db(format!("a key of {table} does not fit its columns"));
    if key.len() != columns.len() {
        return Err(bad());
    }
    columns
        .iter()
        .zip(key)
        .map(|(c, part)| -> Result<Param> {
            Ok(match (c, part) {
                (Column::Text(_), Part::Text(s)) => Box::new(s.clone()),
                (Column::Int4(_), Part::Number(n)) => {
                    Box::new(i32::try_from(*n).map_err(|_| bad())?)
                }
                (Column::Int8(_), Part::Number(n)) => Box::new(*n),
                _ => return Err(bad()),
            })
        })
        .collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// `a = $1 AND b = $2`.
fn matching(columns: &[Column]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ${}", c.name(), i + 1))
        .collect();
    parts.join(" AND ")
}

async fn write_table(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[Column],
    before: Option<&Table>,
    after: Option<&Table>,
) -> Result<()> {
    let empty = Table::new();
    let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
    let n = columns.len();
    let upsert = format!(
        "INSERT INTO {table} ({cols}, doc) VALUES ({values}, ${doc}) \
         ON CONFLICT ({cols}) DO UPDATE SET doc = EXCLUDED.doc",
        cols = names(columns),
        values = (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
        doc = n + 1,
    );
    let delete = format!("DELETE FROM {table} WHERE {}", matching(columns));
    for (key, doc) in after {
        if before.get(key) == Some(doc) {
            continue;
        }
        let mut params = key_params(table, columns, key)?;
        params.push(Box::new(doc.clone()));
        tx.execute(&upsert, &refs(&params))
            .await
            .map_err(db(table))?;
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        let params = key_params(table, columns, key)?;
        tx.execute(&delete, &refs(&params))
            .await
            .map_err(db(table))?;
    }
    Ok(())
}

/// Writes the rows that differ between `before` and `after` (upserts and deletes).
pub(super) async fn write_back(tx: &Transaction<'_>, before: &Rows, after: &Rows) -> Result<()> {
    for (name, value) in &after.meta {
        if before.meta.get(name) == Some(value) {
            continue;
        }
        let value = i64::try_from(*value).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO ctl_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[name, &value],
        )
        .await
        .map_err(db("ctl_meta"))?;
    }
    for name in before.meta.keys().filter(|k| !after.meta.contains_key(*k)) {
        tx.execute("DELETE FROM ctl_meta WHERE name = $1", &[name])
            .await
            .map_err(db("ctl_meta"))?;
    }
    for (table, columns) in KEYS {
        let (b, a) = (before.tables.get(table), after.tables.get(table));
        write_table(tx, table, columns, b, a).await?;
    }
    Ok(())
}
