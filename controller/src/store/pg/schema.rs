//! The controller's tables on PostgreSQL: the SQL that makes them, in
//! versioned steps, and each table's key columns.
//!
//! The tables are those of the embedded store (`store::redb`), one row per
//! record: the key's parts as columns (text in the "C" collation, so that
//! key order is byte order, as in redb), the record in `doc` as the same
//! JSON document the embedded store writes, byte for byte (cluster and node
//! credentials sealed). `doc` is bytea rather than jsonb so that any record
//! the embedded store accepts is accepted here too (jsonb refuses `\u0000`);
//! `convert_from(doc, 'UTF8')::jsonb` reads one in psql.

/// One component's schema: SQL steps applied in order, each once. The same
/// fields as `berth_registry::meta::pg::Migrations`, which the composition
/// root builds from this (the controller does not link the registry).
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub component: &'static str,
    pub steps: &'static [&'static str],
}

/// The controller's schema (component "controller").
pub const MIGRATIONS: Migrations = Migrations {
    component: "controller",
    steps: &[STEP_1],
};

const STEP_1: &str = r#"
CREATE TABLE ctl_meta (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
CREATE TABLE ctl_clusters (
    name text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);
CREATE TABLE ctl_nodes (
    name text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);
CREATE TABLE ctl_apps (
    project text COLLATE "C", app text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, app)
);
CREATE TABLE ctl_app_versions (
    project text COLLATE "C", app text COLLATE "C", version integer,
    doc bytea NOT NULL,
    PRIMARY KEY (project, app, version)
);
CREATE TABLE ctl_publications (
    project text COLLATE "C", app text COLLATE "C", node text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, app, node)
);
CREATE TABLE ctl_resources (
    project text COLLATE "C", kind text COLLATE "C", name text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, kind, name)
);
CREATE TABLE ctl_bindings (
    project text COLLATE "C", node text COLLATE "C", kind text COLLATE "C",
    name text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, node, kind, name)
);
CREATE TABLE ctl_resource_publications (
    project text COLLATE "C", kind text COLLATE "C", name text COLLATE "C",
    node text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, kind, name, node)
);
CREATE TABLE ctl_eip_addresses (
    cluster text COLLATE "C", address text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (cluster, address)
);
CREATE TABLE ctl_forced (
    project text COLLATE "C", app text COLLATE "C", node text COLLATE "C",
    doc bytea NOT NULL,
    PRIMARY KEY (project, app, node)
);
CREATE TABLE ctl_publication_events (
    seq bigint PRIMARY KEY,
    doc bytea NOT NULL
);
"#;

/// A key column and its SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Column {
    Text(&'static str),
    Int4(&'static str),
    Int8(&'static str),
}

impl Column {
    pub(super) fn name(self) -> &'static str {
        match self {
            Column::Text(n) | Column::Int4(n) | Column::Int8(n) => n,
        }
    }
}

use Column::{Int4, Int8, Text};

/// Each table's key columns, in key order (the order of `rows::TABLES`).
pub(super) const KEYS: [(&str, &[Column]); 11] = [
    ("ctl_clusters", &[Text("name")]),
    ("ctl_nodes", &[Text("name")]),
    ("ctl_apps", &[Text("project"), Text("app")]),
    (
        "ctl_app_versions",
        &[Text("project"), Text("app"), Int4("version")],
    ),
    (
        "ctl_publications",
        &[Text("project"), Text("app"), Text("node")],
    ),
    (
        "ctl_resources",
        &[Text("project"), Text("kind"), Text("name")],
    ),
    (
        "ctl_bindings",
        &[Text("project"), Text("node"), Text("kind"), Text("name")],
    ),
    (
        "ctl_resource_publications",
        &[Text("project"), Text("kind"), Text("name"), Text("node")],
    ),
    ("ctl_eip_addresses", &[Text("cluster"), Text("address")]),
    ("ctl_forced", &[Text("project"), Text("app"), Text("node")]),
    ("ctl_publication_events", &[Int8("seq")]),
];

/// `a, b, c`.
pub(super) fn names(columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::{Shape, TABLES};

    /// Every table the embedded store has is here, keyed the same way.
    #[test]
    fn the_columns_match_the_embedded_tables() {
        for ((name, shape), (table, columns)) in TABLES.iter().zip(KEYS.iter()) {
            assert_eq!(name, table);
            assert!(STEP_1.contains(&format!("CREATE TABLE {table} (")));
            let numbers: Vec<bool> = columns.iter().map(|c| !matches!(c, Text(_))).collect();
            let expected: &[bool] = match shape {
                Shape::Text1 => &[false],
                Shape::Text2 => &[false, false],
                Shape::Text2Number => &[false, false, true],
                Shape::Text3 => &[false, false, false],
                Shape::Text4 => &[false, false, false, false],
                Shape::Number => &[true],
            };
            assert_eq!(numbers, expected, "{table}");
        }
    }
}
