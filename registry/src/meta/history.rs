//! GC's history as the metadata keeps it: one record per finished run
//! (what it freed, how long it took, what started it). `gc::runner` writes
//! them; `GET /api/v1/gc/runs` reads them.

use serde::{Deserialize, Serialize};

/// One garbage collection, as recorded when it finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GcRun {
    /// Assigned by the store when the run is recorded; increasing.
    pub id: u64,
    /// Unix seconds.
    pub started_at: u64,
    /// Unix seconds.
    pub finished_at: u64,
    pub duration_ms: u64,
    /// What started it: `schedule`, `api` or `offline`.
    pub trigger: String,
    /// Who started it (`api`, `offline`), or none (`schedule`).
    pub actor: Option<String>,
    pub dry_run: bool,
    /// `ok` or `failed`.
    pub outcome: String,
    /// Why it failed.
    pub error: Option<String>,
    pub manifests_deleted: u64,
    pub links_removed: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub uploads_purged: u64,
    pub orphans_deleted: u64,
}
