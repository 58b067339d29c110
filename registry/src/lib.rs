//! berth's registry: the OCI distribution server and the shared core
//! (digests, names, the content store, metadata, the domain service, the /v2
//! router) that the edge cache reuses.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod content;
pub mod duties;
pub mod gc;
pub mod gc_runner;
pub mod meta;
pub mod net_policy;
pub mod oci;
pub mod openapi;
pub mod private;
pub mod project_cleanup;
pub mod proxy;
pub mod pulls;
pub mod replicas;
pub mod replication;
pub mod retention;
pub mod sealing;
pub mod server;
pub mod service;
pub mod signature;
pub mod transfer;
pub mod webhooks;
