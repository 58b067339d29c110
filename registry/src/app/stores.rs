//! Opening what the registry keeps, as the configuration names it: the content store, the embedded metadata (with the uploads a crash interrupted recovered) and the token keys.

use std::sync::Arc;

use berth_config::{Config, StorageBackend};

use super::{Metadata, StartError};
use crate::auth::accounts::Accounts;
use crate::auth::token_keys::{TokenKeyStore, TokenKeys};
use crate::content::ContentStore;
use crate::meta::RedbMeta;
use crate::service::{metrics::Metrics, LocalRegistry};

/// Opens the content store the configuration describes.
pub fn open_content(cfg: &Config, root: &std::path::Path) -> Result<ContentStore, StartError> {
    let ingest = root.join("uploads");
    Ok(match cfg.storage.backend {
        StorageBackend::Local => ContentStore::local(root, &ingest)?,
        StorageBackend::Memory => ContentStore::memory(&ingest)?,
        StorageBackend::S3 => {
            std::fs::create_dir_all(&ingest).map_err(|source| StartError::DataDir {
                path: ingest.display().to_string(),
                source,
            })?;
            let s = &cfg.storage;
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s.bucket)
                .with_region(&s.region)
                .with_allow_http(s.allow_http);
            if !s.endpoint.is_empty() {
                b = b.with_endpoint(&s.endpoint);
            }
            if !s.access_key_id.is_empty() {
                b = b
                    .with_access_key_id(&s.access_key_id)
                    .with_secret_access_key(&s.secret_access_key);
            }
            let bucket = Arc::new(b.build()?);
            // Uploads live in the bucket too, so that every process sharing
            // it can continue one (`ingest` stays unused for them).
            let store = ContentStore::in_bucket(bucket.clone(), s.part_size.0, &ingest);
            if s.redirect {
                store.with_redirects(bucket, s.redirect_expiry)
            } else {
                store
            }
        }
    })
}

impl LocalRegistry {
    /// Opens a registry in `dir`: the metadata database `dir/<database>` and
    /// the content store the configuration's storage section names (blobs
    /// under `dir` on the local backend, ingests in `dir/uploads`). Run
    /// `recover_at_start` next, before serving.
    pub fn open(
        config: &Config,
        dir: &std::path::Path,
        database: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let meta = open_metadata(dir, database)?.with_read_cache(config.meta.cache_size.0);
        Self::open_over(config, dir, meta, metrics)
    }

    /// As `open`, over metadata opened already (`open_metadata`), whose
    /// file also holds what others keep (the accounts).
    pub fn open_over(
        config: &Config,
        dir: &std::path::Path,
        meta: RedbMeta,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let content = open_content(config, dir)?;
        Ok(LocalRegistry::embedded(meta, content, metrics))
    }
}

/// Opens (or creates) the metadata database `dir/<database>`, making `dir`
/// private first.
pub fn open_metadata(dir: &std::path::Path, database: &str) -> Result<RedbMeta, StartError> {
    crate::private::private_dir(dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(RedbMeta::open(&dir.join(database))?)
}

/// The registry and accounts over the embedded file, uploads a crash
/// interrupted recovered (opening the file succeeded, so no other process
/// uses this data directory).
pub(super) async fn open_embedded(
    config: &Config,
    meta: &RedbMeta,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<LocalRegistry>, Arc<Accounts>), StartError> {
    let data = &config.server.data_dir;
    let account_store = meta
        .accounts()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let registry = Arc::new(LocalRegistry::open_over(
        config,
        data,
        meta.clone(),
        metrics.clone(),
    )?);
    // Uploads a crash caught between placing their blob and recording it
    // are recorded now; then spools of uploads that never acknowledged a
    // byte are garbage. Unrecorded blob files are GC's, after its grace
    // window.
    let recovery = registry
        .recover_at_start(false)
        .await
        .map_err(|e| StartError::Other(format!("recovering uploads: {e}")))?;
    log_recovery(&recovery);
    let accounts = Arc::new(
        Accounts::open(Arc::new(account_store), config.auth.bcrypt_cost)
            .await
            .map_err(|e| StartError::Other(e.to_string()))?,
    );
    Ok((registry, accounts))
}

/// The token keys where the metadata is, re-read every
/// `auth.token_key_refresh`. With PostgreSQL a rotated key signs six of
/// those later (every replica has read it by then); in the embedded file,
/// one process holds the keys, so it signs at once.
pub(super) async fn open_token_keys(
    config: &Config,
    metadata: &Metadata,
) -> Result<Arc<TokenKeys>, StartError> {
    let refresh = config.auth.token_key_refresh;
    let (store, publish): (Arc<dyn TokenKeyStore>, _) = match metadata {
        Metadata::Redb(meta) => {
            let legacy = config.server.data_dir.join("token.key");
            let store = meta
                .token_keys(&legacy)
                .map_err(|e| StartError::Other(e.to_string()))?;
            (Arc::new(store), std::time::Duration::ZERO)
        }
        Metadata::Postgres(pool) => (
            Arc::new(crate::meta::pg::PgTokenKeys::new(pool.clone())),
            refresh * 6,
        ),
    };
    let keys = TokenKeys::open(store, config.auth.token_ttl, publish)
        .await
        .map_err(|e| StartError::Other(format!("token keys: {e}")))?;
    let keys = Arc::new(keys);
    // The task ends when the registry (the last holder) is dropped.
    drop(keys.follow(refresh));
    Ok(keys)
}

/// Logs what `LocalRegistry::recover_at_start` found, if anything.
fn log_recovery(r: &crate::service::Recovery) {
    if r.recorded > 0 {
        tracing::info!(
            recovered = r.recorded,
            "recorded blobs of uploads that finished just before a crash"
        );
    }
    if r.discarded > 0 {
        tracing::info!(
            discarded = r.discarded,
            "discarded uploads cut off before their first acknowledged byte"
        );
    }
    if r.swept > 0 {
        tracing::info!(
            deleted = r.swept,
            "deleted blob files that no record counts"
        );
    }
}
