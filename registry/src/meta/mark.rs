//! GC's mark, pure: which manifests of one repository live.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::oci::ManifestSummary;

/// Given a repository's manifests (digest → what it references) and roots,
/// the manifests that live: the roots, the children of live indexes, and
/// the referrers of live manifests, transitively.
pub fn mark(
    manifests: &BTreeMap<String, Option<ManifestSummary>>,
    roots: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = roots
        .iter()
        .filter(|r| manifests.contains_key(*r))
        .cloned()
        .collect();
    // subject -> referrers, so that referrers of live manifests become live.
    let mut referrers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (d, s) in manifests {
        if let Some(subj) = s.as_ref().and_then(|s| s.subject.as_ref()) {
            referrers
                .entry(subj.digest.to_string())
                .or_default()
                .push(d.clone());
        }
    }
    while let Some(d) = stack.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        if let Some(Some(s)) = manifests.get(&d) {
            for child in &s.manifests {
                let c = child.digest.to_string();
                if manifests.contains_key(&c) && !live.contains(&c) {
                    stack.push(c);
                }
            }
        }
        if let Some(rs) = referrers.get(&d) {
            stack.extend(rs.iter().filter(|r| !live.contains(*r)).cloned());
        }
    }
    live
}

/// What a sweep must keep of `batch` (manifests GC saw dead, by digest, with
/// what each references) when `survivors` of it turned out live: what they
/// reach in the batch, as the mark would, and the blobs those reference.
pub fn kept_in_sweep(
    batch: &BTreeMap<String, Option<ManifestSummary>>,
    survivors: &BTreeSet<String>,
) -> (BTreeSet<String>, HashSet<String>) {
    let keep = mark(batch, survivors);
    let blobs = keep
        .iter()
        .filter_map(|k| batch.get(k)?.as_ref())
        .flat_map(|s| s.blobs.iter().map(|b| b.digest.to_string()))
        .collect();
    (keep, blobs)
}
