//! The controller's records as plain rows, to carry them between redb and
//! another backend: `Rows` is every `ctl_` table as key -> stored bytes,
//! exactly as the embedded store writes them (JSON documents, cluster and
//! node credentials sealed).
//!
//! The PostgreSQL store uses it to run this module's transactions, rules
//! and all, over a copy of its rows in an in-memory database, and to write
//! back what changed (`store::pg::mirror`).
//!
//! Owns: each table's name and key shape. Must not touch: what the records
//! mean (the other modules here decide that).

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{Result, StoreError, META};

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    Text(String),
    Number(i64),
}

/// A key, its parts in order.
pub(crate) type Key = Vec<Part>;
/// One table: key -> stored bytes.
pub(crate) type Table = BTreeMap<Key, Vec<u8>>;

/// Every controller record: `ctl_meta`'s counters and every other table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    pub(crate) meta: BTreeMap<String, u64>,
    pub(crate) tables: BTreeMap<&'static str, Table>,
}

/// How a table is keyed: its parts, text unless named a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Text1,
    Text2,
    Text2Number,
    Text3,
    Text4,
    Number,
}

/// The tables of JSON records (every table but `ctl_meta`), with their shapes.
pub(crate) const TABLES: [(&str, Shape); 11] = [
    ("ctl_clusters", Shape::Text1),
    ("ctl_nodes", Shape::Text1),
    ("ctl_apps", Shape::Text2),
    ("ctl_app_versions", Shape::Text2Number),
    ("ctl_publications", Shape::Text3),
    ("ctl_resources", Shape::Text3),
    ("ctl_bindings", Shape::Text4),
    ("ctl_resource_publications", Shape::Text4),
    ("ctl_eip_addresses", Shape::Text2),
    ("ctl_forced", Shape::Text3),
    ("ctl_publication_events", Shape::Number),
];

type Bytes = &'static [u8];

fn corrupt(table: &str, message: &str) -> StoreError {
    StoreError::Db(format!("row of {table}: {message}"))
}

fn text<'k>(table: &str, k: &'k Key, i: usize) -> Result<&'k str> {
    match k.get(i) {
        Some(Part::Text(s)) => Ok(s),
        _ => Err(corrupt(table, &format!("key part {i} is not text"))),
    }
}

fn number(table: &str, k: &Key, i: usize) -> Result<i64> {
    match k.get(i) {
        Some(Part::Number(n)) => Ok(*n),
        _ => Err(corrupt(table, &format!("key part {i} is not a number"))),
    }
}

fn t(s: &str) -> Part {
    Part::Text(s.to_string())
}

/// Collects a table's rows, each key made into parts by `$key`.
macro_rules! dump {
    ($txn:expr, $name:expr, $k:ty, $key:expr) => {{
        let table = $txn.open_table(TableDefinition::<$k, Bytes>::new($name))?;
        let mut out = Table::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.insert($key(k.value()), v.value().to_vec());
        }
        out
    }};
}

fn dump_table(txn: &ReadTransaction, name: &'static str, shape: Shape) -> Result<Table> {
    Ok(match shape {
        Shape::Text1 => dump!(txn, name, &str, |a: &str| vec![t(a)]),
        Shape::Text2 => dump!(txn, name, (&str, &str), |(a, b): (&str, &str)| vec![
            t(a),
            t(b)
        ]),
        Shape::Text2Number => dump!(txn, name, (&str, &str, u32), |(a, b, n): (
            &str,
            &str,
            u32
        )| vec![
            t(a),
            t(b),
            Part::Number(i64::from(n))
        ]),
        Shape::Text3 => dump!(txn, name, (&str, &str, &str), |(a, b, c): (
            &str,
            &str,
            &str
        )| vec![
            t(a),
            t(b),
            t(c)
        ]),
        Shape::Text4 => dump!(txn, name, (&str, &str, &str, &str), |(a, b, c, d): (
            &str,
            &str,
            &str,
            &str
        )| vec![
            t(a),
            t(b),
            t(c),
            t(d)
        ]),
        Shape::Number => dump!(txn, name, u64, |n: u64| vec![Part::Number(
            i64::try_from(n).unwrap_or(i64::MAX)
        )]),
    })
}

fn fill_table(
    txn: &WriteTransaction,
    name: &'static str,
    shape: Shape,
    rows: &Table,
) -> Result<()> {
    match shape {
        Shape::Text1 => {
            let mut table = txn.open_table(TableDefinition::<&str, Bytes>::new(name))?;
            for (k, v) in rows {
                table.insert(text(name, k, 0)?, v.as_slice())?;
            }
        }
        Shape::Text2 => {
            let mut table = txn.open_table(TableDefinition::<(&str, &str), Bytes>::new(name))?;
            for (k, v) in rows {
                table.insert((text(name, k, 0)?, text(name, k, 1)?), v.as_slice())?;
            }
        }
        Shape::Text2Number => {
            let def = TableDefinition::<(&str, &str, u32), Bytes>::new(name);
            let mut table = txn.open_table(def)?;
            for (k, v) in rows {
                let n = u32::try_from(number(name, k, 2)?)
                    .map_err(|_| corrupt(name, "version out of range"))?;
                table.insert((text(name, k, 0)?, text(name, k, 1)?, n), v.as_slice())?;
            }
        }
        Shape::Text3 => {
            let def = TableDefinition::<(&str, &str, &str), Bytes>::new(name);
            let mut table = txn.open_table(def)?;
            for (k, v) in rows {
                let key = (text(name, k, 0)?, text(name, k, 1)?, text(name, k, 2)?);
                table.insert(key, v.as_slice())?;
            }
        }
        Shape::Text4 => {
            let def = TableDefinition::<(&str, &str, &str, &str), Bytes>::new(name);
            let mut table = txn.open_table(def)?;
            for (k, v) in rows {
                let key = (
                    text(name, k, 0)?,
                    text(name, k, 1)?,
                    text(name, k, 2)?,
                    text(name, k, 3)?,
                );
                table.insert(key, v.as_slice())?;
            }
        }
        Shape::Number => {
            let mut table = txn.open_table(TableDefinition::<u64, Bytes>::new(name))?;
            for (k, v) in rows {
                let n = u64::try_from(number(name, k, 0)?)
                    .map_err(|_| corrupt(name, "negative sequence number"))?;
                table.insert(n, v.as_slice())?;
            }
        }
    }
    Ok(())
}

/// A new in-memory database holding `rows`, every controller table made.
pub(crate) fn database_of(rows: &Rows) -> Result<Arc<Database>> {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| StoreError::Db(e.to_string()))?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        for (k, v) in &rows.meta {
            meta.insert(k.as_str(), *v)?;
        }
    }
    let empty = Table::new();
    for (name, shape) in TABLES {
        fill_table(&txn, name, shape, rows.tables.get(name).unwrap_or(&empty))?;
    }
    txn.commit()?;
    Ok(Arc::new(db))
}

/// Every controller row `db` holds.
pub(crate) fn rows_of(db: &Database) -> Result<Rows> {
    let txn = db.begin_read()?;
    let mut rows = Rows::default();
    {
        let meta = txn.open_table(META)?;
        for item in meta.iter()? {
            let (k, v) = item?;
            rows.meta.insert(k.value().to_string(), v.value());
        }
    }
    for (name, shape) in TABLES {
        rows.tables.insert(name, dump_table(&txn, name, shape)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::fixtures::*;

    /// Rows copied into a database and out again are the rows.
    #[test]
    fn rows_survive_the_round_trip() {
        let (_dir, s) = temp_store();
        s.create_cluster(&crate::model::Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            eip_pool: None,
            created_at: 1,
        })
        .expect("cluster");
        s.create_node(&mut node("n1")).expect("node");
        s.create_app("shop", "web", &spec("shop/web:1"), "a", None, 1)
            .expect("app");
        s.publish("shop", "web", None, &["n1".into()], 2)
            .expect("publish");
        let rows = rows_of(&s.db).expect("rows");
        assert_eq!(rows.tables["ctl_app_versions"].len(), 1);
        assert_eq!(rows.tables["ctl_publication_events"].len(), 1);
        let copy = database_of(&rows).expect("copy");
        assert_eq!(rows_of(&copy).expect("rows again"), rows);
    }
}
