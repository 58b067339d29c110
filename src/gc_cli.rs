//! `berth gc`: a collection now (over the admin API, or `--offline` on the data
//! directory with the registry stopped), its status, and its history.
//!
//! Owns: the command's arguments and the admin API paths it calls. Must not
//! touch: what a collection keeps or sweeps (`berth_registry::gc`).

use anyhow::{anyhow, Context};
use berth_config::Config;
use berth_registry::gc::GcOptions;

use crate::cli::{print_json, send, Conn};

pub async fn gc(cfg: Config, dry_run: bool, offline: bool, conn: Conn) -> anyhow::Result<()> {
    if offline {
        let opts = GcOptions {
            grace: cfg.gc.grace,
            upload_ttl: cfg.gc.upload_ttl,
            delete_untagged: cfg.gc.delete_untagged,
            dry_run,
        };
        let app = crate::compose::open_registry(cfg).await?;
        let secrets = crate::compose::secret_box(&app.config)?;
        let store = crate::compose::controller_store(&app, secrets).await?;
        app.registry
            .add_gc_roots(std::sync::Arc::new(crate::compose::PublicationRoots {
                store,
            }));
        // Recorded in the history like any run; no audit entry (no account asked).
        let runner = berth_registry::gc_runner::GcRunner::new(
            app.registry.clone(),
            opts,
            app.config.gc.history as usize,
            Default::default(),
            None,
            &app.metrics,
        );
        let (_, report) = runner
            .run(
                berth_registry::gc_runner::Trigger::Offline,
                Some(("offline", None)),
                dry_run,
            )
            .await
            .map_err(|e| anyhow!("{e}"))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let path = if dry_run {
        "/api/v1/gc?dry_run=true"
    } else {
        "/api/v1/gc"
    };
    let report = send(conn.request(&cfg, reqwest::Method::POST, path))
        .await
        .context("cannot collect garbage")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `berth gc --status`: whether a collection runs now, and the last one's report.
pub async fn gc_status(cfg: &Config, conn: &Conn) -> anyhow::Result<()> {
    let v = send(conn.request(cfg, reqwest::Method::GET, "/api/v1/gc"))
        .await
        .context("cannot read the garbage collection status")?;
    print_json(&v);
    Ok(())
}

/// `berth gc --runs`: the history of collections, newest first.
pub async fn gc_runs(cfg: &Config, conn: &Conn, limit: Option<usize>) -> anyhow::Result<()> {
    let path = match limit {
        Some(n) => format!("/api/v1/gc/runs?limit={n}"),
        None => "/api/v1/gc/runs".to_string(),
    };
    let v = send(conn.request(cfg, reqwest::Method::GET, &path))
        .await
        .context("cannot read the garbage collection history")?;
    print_json(&v);
    Ok(())
}
