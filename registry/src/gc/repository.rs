//! The sweep of one repository's metadata: its roots, the mark, dead manifests (parents and
//! subjects first) and dead links, and small repositories' sweeps sharing a transaction.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use super::{mark, Fingerprints, GcError, GcReport, Sweep, BATCH, LINK_BATCH, SWEEP_BUDGET};
use crate::meta::retention::untagged_hold;
use crate::meta::{RepoGcView, RepoSweep, Seen};
use crate::oci::{Digest, ManifestSummary, RepoName};

impl Sweep<'_> {
    /// Marks one repository and sweeps its dead manifests, then its dead
    /// links; a small repository's sweep joins `group`, swept with others
    /// in one transaction. Adds the blobs it keeps linked to `still_linked`
    /// (a hint for the drop of records, which re-checks every link).
    pub(super) async fn repository(
        &self,
        repo: &RepoName,
        report: &mut GcReport,
        still_linked: &mut Fingerprints,
        group: &mut Group,
    ) -> Result<(), GcError> {
        let view = self.meta.gc_view(repo).await?;
        let summaries: BTreeMap<String, Option<ManifestSummary>> = view
            .manifests
            .iter()
            .map(|(d, (_, s))| (d.to_string(), s.clone()))
            .collect();
        let mut live = mark(&summaries, &self.roots(repo, &view));
        let dead: Vec<Seen> = parents_first(&summaries, &live)
            .into_iter()
            .filter_map(|d| {
                let digest: Digest = d.parse().ok()?;
                let at = view.manifests.get(&digest)?.0;
                Some(Seen { digest, at })
            })
            .collect();
        if self.opts.dry_run {
            report.manifests_deleted += dead.len() as u64;
        } else if dead.len() + view.links.len() <= SWEEP_BUDGET {
            // Small: manifests and links in one sweep, shared with others
            // up to the budget.
            let links = self.dead_links(&view, &live, &summaries, still_linked);
            let records = dead.len() + links.len();
            if group.records + records > SWEEP_BUDGET {
                self.flush(group, report).await?;
            }
            group.records += records;
            group.sweeps.push(RepoSweep {
                repo: repo.clone(),
                manifests: dead,
                links,
            });
            return Ok(());
        } else {
            let kept = self.sweep_manifests(repo, dead, &summaries, report).await?;
            live.extend(kept);
        }
        let dead_links = self.dead_links(&view, &live, &summaries, still_linked);
        if self.opts.dry_run {
            report.links_removed += dead_links.len() as u64;
            return Ok(());
        }
        for batch in dead_links.chunks(LINK_BATCH) {
            report.links_removed += self.meta.gc_sweep_links(repo, batch, self.seen_at).await?;
        }
        Ok(())
    }

    /// The links of `view` neither used by a manifest of `live` nor younger
    /// than the grace window; adds the others to `still_linked`.
    fn dead_links(
        &self,
        view: &RepoGcView,
        live: &BTreeSet<String>,
        summaries: &BTreeMap<String, Option<ManifestSummary>>,
        still_linked: &mut Fingerprints,
    ) -> Vec<Seen> {
        let live_blobs: HashSet<Digest> = live
            .iter()
            .filter_map(|d| summaries.get(d).cloned().flatten())
            .flat_map(|s| s.blobs.into_iter().map(|b| b.digest))
            .collect();
        let mut dead_links = Vec::new();
        for (d, at) in &view.links {
            if live_blobs.contains(d) || *at > self.cutoff {
                still_linked.insert(d);
            } else {
                dead_links.push(Seen {
                    digest: d.clone(),
                    at: *at,
                });
            }
        }
        dead_links
    }

    /// Sweeps the repositories gathered in `group`, in one transaction.
    pub(super) async fn flush(
        &self,
        group: &mut Group,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        if group.sweeps.is_empty() {
            return Ok(());
        }
        let sweeps = std::mem::take(&mut group.sweeps);
        group.records = 0;
        for swept in self.meta.gc_sweep_repos(&sweeps, self.seen_at).await? {
            report.manifests_deleted += swept.manifests.len() as u64;
            report.links_removed += swept.links;
        }
        Ok(())
    }

    fn roots(&self, repo: &RepoName, view: &RepoGcView) -> BTreeSet<String> {
        let mut roots: BTreeSet<String> = view.tagged.iter().map(|d| d.to_string()).collect();
        if let Some(extra) = self.extra_roots.get(repo.as_str()) {
            roots.extend(extra.iter().cloned());
        }
        let hold = self
            .retention
            .get(repo.project())
            .and_then(|p| untagged_hold(repo.project(), p, repo.as_str()));
        let cutoff = match hold {
            Some(h) => self.cutoff.min(self.seen_at.saturating_sub(h)),
            None => self.cutoff,
        };
        for (d, (pushed, _)) in &view.manifests {
            if !self.opts.delete_untagged || *pushed > cutoff {
                roots.insert(d.to_string());
            }
        }
        roots
    }

    /// Sweeps dead manifests in batches; returns those a batch kept (pushed
    /// or tagged since the snapshot) and everything they reach.
    async fn sweep_manifests(
        &self,
        repo: &RepoName,
        dead: Vec<Seen>,
        summaries: &BTreeMap<String, Option<ManifestSummary>>,
        report: &mut GcReport,
    ) -> Result<BTreeSet<String>, GcError> {
        let mut kept = BTreeSet::new();
        let mut pending: VecDeque<Seen> = dead.into();
        while !pending.is_empty() {
            let batch: Vec<Seen> = pending.drain(..pending.len().min(BATCH)).collect();
            let removed: HashSet<Digest> = self
                .meta
                .gc_sweep_manifests(repo, &batch, self.seen_at)
                .await?
                .into_iter()
                .collect();
            report.manifests_deleted += removed.len() as u64;
            let survivors: BTreeSet<String> = batch
                .iter()
                .filter(|s| !removed.contains(&s.digest))
                .map(|s| s.digest.to_string())
                .collect();
            if !survivors.is_empty() {
                let reach = mark(summaries, &survivors);
                pending.retain(|s| !reach.contains(&s.digest.to_string()));
                kept.extend(reach);
            }
        }
        Ok(kept)
    }
}

/// Small repositories' sweeps waiting to share a transaction.
#[derive(Default)]
pub(super) struct Group {
    sweeps: Vec<RepoSweep>,
    /// Dead manifests and links in `sweeps`.
    records: usize,
}

/// The dead manifests (those not in `live`) in an order where each comes
/// after every dead manifest that reaches it (as an index its child, as a
/// subject its referrer): a batch never removes what a later survivor needs.
pub(super) fn parents_first(
    summaries: &BTreeMap<String, Option<ManifestSummary>>,
    live: &BTreeSet<String>,
) -> Vec<String> {
    let dead: BTreeSet<&str> = summaries
        .keys()
        .map(String::as_str)
        .filter(|d| !live.contains(*d))
        .collect();
    let mut reaches: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (d, s) in summaries.iter().filter(|(d, _)| dead.contains(d.as_str())) {
        let Some(s) = s else { continue };
        for c in &s.manifests {
            reaches
                .entry(d.as_str())
                .or_default()
                .push(c.digest.to_string());
        }
        if let Some(subject) = &s.subject {
            let subject = subject.digest.to_string();
            if let Some(subject) = dead.get(subject.as_str()) {
                reaches.entry(subject).or_default().push(d.clone());
            }
        }
    }
    // Depth-first post-order, reversed.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut order: Vec<String> = Vec::new();
    for start in &dead {
        let mut stack: Vec<(&str, bool)> = vec![(start, false)];
        while let Some((d, done)) = stack.pop() {
            if done {
                order.push(d.to_string());
                continue;
            }
            if !seen.insert(d) {
                continue;
            }
            stack.push((d, true));
            for next in reaches.get(d).into_iter().flatten() {
                if let Some(next) = dead.get(next.as_str()) {
                    if !seen.contains(next) {
                        stack.push((next, false));
                    }
                }
            }
        }
    }
    order.reverse();
    order
}
