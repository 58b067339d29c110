//! Blob records and the bytes behind them: the drop of records no repository links, the deletion of
//! their objects, and the objects nothing recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};

use super::{
    Fingerprints, GcError, GcReport, Sweep, DROP_BATCH, ORPHAN_PAGE, RECORD_PAGE, STORE_BATCH,
    STORE_BATCHES_IN_FLIGHT,
};
use crate::content::ContentStore;
use crate::meta::{BlobRecord, DeleteStep, MetaStore, StoreStep};
use crate::oci::Digest;

impl Sweep<'_> {
    /// Drops the records of blobs no repository links any more, paging
    /// through the records and dropping in batches, and deletes the bytes
    /// of each batch once its drop is committed (so nothing of the size of
    /// the store is held in memory).
    pub(super) async fn blob_records(
        &self,
        content: &ContentStore,
        still_linked: &Fingerprints,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .blob_records_page(after.as_ref(), RECORD_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let candidates: Vec<BlobRecord> = page
                .into_iter()
                .filter(|r| r.recorded_at <= self.cutoff && !still_linked.contains(&r.digest))
                .collect();
            if self.opts.dry_run {
                report.blobs_deleted += candidates.len() as u64;
                report.bytes_freed += candidates.iter().map(|r| r.size).sum::<u64>();
                continue;
            }
            for batch in candidates.chunks(DROP_BATCH) {
                let digests: Vec<Digest> = batch.iter().map(|r| r.digest.clone()).collect();
                let dropped = self.meta.gc_drop_blobs(&digests, self.cutoff).await?;
                report.blobs_deleted += dropped.len() as u64;
                report.bytes_freed += dropped.iter().map(|r| r.size).sum::<u64>();
                let doomed: Vec<Digest> = dropped.into_iter().map(|r| r.digest).collect();
                sweep_store(self.meta, content, &doomed, self.opts.grace).await?;
            }
        }
        Ok(())
    }
}

/// Deletes the objects in the store that have no record (and are older
/// than the grace window), looked up as the listing streams, a page at a
/// time (a store of a million objects is never held in memory). How many
/// went.
pub(super) async fn sweep_orphans(
    meta: &dyn MetaStore,
    content: &ContentStore,
    grace: Duration,
) -> Result<u64, GcError> {
    let mut pages = content.list_digests().chunks(ORPHAN_PAGE);
    let mut deleted = 0;
    while let Some(page) = pages.next().await {
        let listed: Vec<Digest> = page.into_iter().collect::<Result<_, _>>()?;
        let orphans = meta.unrecorded(&listed).await?;
        if !orphans.is_empty() {
            // The step checks the age of each (most objects have a record,
            // so none is asked its age before its record is looked up).
            deleted += sweep_store(meta, content, &orphans, grace).await?;
        }
    }
    Ok(deleted)
}

/// How much earlier than its write an object's time may read: object stores
/// give it to the whole second (S3's `Last-Modified`). An object counts as
/// fresh until the grace window and this have passed since that time, so
/// that one placed within the window is kept whatever the store rounds.
const MTIME_RESOLUTION: Duration = Duration::from_secs(1);

/// Deletes objects whose records are gone, each re-checked against the
/// metadata (`MetaStore::delete_unrecorded`: a digest recorded meanwhile
/// stays), and skipped if placed within the grace window (by an upload that
/// has not recorded it yet, on a backend that cannot place under the
/// lock). How many went.
async fn sweep_store(
    meta: &dyn MetaStore,
    content: &ContentStore,
    doomed: &[Digest],
    grace: Duration,
) -> Result<u64, GcError> {
    let content = content.clone();
    let deleted = Arc::new(AtomicU64::new(0));
    let counted = deleted.clone();
    let delete: DeleteStep = Arc::new(move |d: Digest| -> StoreStep {
        let (content, counted) = (content.clone(), counted.clone());
        Box::pin(async move {
            let modified = content.modified(&d).await.map_err(|e| e.to_string())?;
            let fresh = modified
                .map(|m| {
                    SystemTime::now().duration_since(m).unwrap_or_default()
                        <= grace + MTIME_RESOLUTION
                })
                .unwrap_or(false);
            if modified.is_none() || (fresh && !grace.is_zero()) {
                return Ok(());
            }
            content.delete(&d).await.map_err(|e| e.to_string())?;
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    });
    // A backend that deletes under its write lock holds it for one small
    // batch at a time; several batches are in flight, so one that checks
    // under the lock and deletes outside it (redb) keeps the store busy.
    let batches: Vec<Vec<Digest>> = doomed.chunks(STORE_BATCH).map(<[_]>::to_vec).collect();
    let calls = batches.into_iter().map(|batch| {
        let delete = delete.clone();
        async move { meta.delete_unrecorded(&batch, delete).await }
    });
    futures::stream::iter(calls)
        .buffer_unordered(STORE_BATCHES_IN_FLIGHT)
        .try_collect::<Vec<u64>>()
        .await?;
    Ok(deleted.load(Ordering::Relaxed))
}
