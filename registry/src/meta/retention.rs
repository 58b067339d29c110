//! Retention rules as the metadata keeps them, and the pure decision of
//! which tags they let go (`plan`). Nothing here does I/O: the runner
//! (`crate::retention`) gathers the inputs and deletes what the plan says.
//!
//! A rule covers the tags whose repository (its path inside the project)
//! and tag match its patterns; a tag no rule with a tag criterion covers is
//! left alone. A covered tag is kept when any rule covering it keeps it
//! (among the `keep_last` most recently pushed of that rule's tags in the
//! repository, or pulled within `pulled_within_days`); otherwise it goes,
//! unless a GC root holds its manifest (a publication deploys it, an edge
//! pins it through a prefetch) or an immutable-tag rule protects it and no
//! rule covering it says `include_immutable`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::quota;

/// A project's retention rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// A tag is kept if any rule keeps it.
    #[serde(default)]
    pub rules: Vec<RetentionRule>,
}

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repositories it covers, by their path inside the project (`*`: any
    /// run of characters, `/` included; `?`: any one).
    #[serde(default = "any")]
    pub repositories: String,
    /// Tags it covers (`*`, `?` as above).
    #[serde(default = "any")]
    pub tags: String,
    /// Keep the N most recently pushed of the covered tags of each repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the covered tags whose manifest was pulled (here or through an
    /// edge) within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_within_days: Option<u32>,
    /// Keep untagged manifests of the covered repositories for this many
    /// hours after their push (GC removes them afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged_hours: Option<u32>,
    /// Let this rule delete tags that immutable-tag rules protect.
    #[serde(default)]
    pub include_immutable: bool,
}

fn any() -> String {
    "*".into()
}

impl RetentionRule {
    /// Whether this rule decides about tags at all (an `untagged_hours`
    /// rule alone does not).
    fn judges_tags(&self) -> bool {
        self.keep_last.is_some() || self.pulled_within_days.is_some()
    }

    fn covers(&self, path: &str, tag: &str) -> bool {
        self.judges_tags()
            && quota::matches(&self.repositories, path)
            && quota::matches(&self.tags, tag)
    }
}

/// Checks a policy's rules; the first problem in words.
pub fn check(policy: &RetentionPolicy) -> Result<(), String> {
    if policy.rules.len() > 64 {
        return Err("a project has at most 64 retention rules".into());
    }
    for (i, r) in policy.rules.iter().enumerate() {
        let n = i + 1;
        quota::check_pattern(&r.tags).map_err(|e| format!("rule {n}: tags: {e}"))?;
        check_repo_pattern(&r.repositories).map_err(|e| format!("rule {n}: repositories: {e}"))?;
        if !r.judges_tags() && r.untagged_hours.is_none() {
            return Err(format!(
                "rule {n} keeps nothing: give keep_last, pulled_within_days or untagged_hours"
            ));
        }
    }
    Ok(())
}

fn check_repo_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 255 {
        return Err("a repository pattern has 1 to 255 characters".into());
    }
    match p
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-/*?".contains(*c)))
    {
        Some(c) => Err(format!(
            "repository pattern {p:?} has {c:?}; use repository characters (a-z, 0-9, _ . - /) \
             with * and ? as wildcards"
        )),
        None => Ok(()),
    }
}

/// One tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFacts {
    /// The repository's full name (`project/path`).
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// Unix seconds.
    pub pushed_at: u64,
    /// Unix seconds of the manifest's last pull, if it was pulled.
    pub last_pulled_at: Option<u64>,
}

/// What a run decided about one tag, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TagDecision {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// Unix seconds.
    pub pushed_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pulled_at: Option<u64>,
    /// Why, e.g. "kept: among the 3 most recently pushed (rule 1)",
    /// "kept: immutable rule v*", "goes: not among the 3 most recently pushed (rule 1)".
    pub reason: String,
    /// An immutable-tag rule protects it and a rule with `include_immutable` lets it go.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overrides_immutable: bool,
}

/// Which tags go and which stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RetentionPlan {
    pub delete: Vec<TagDecision>,
    pub keep: Vec<TagDecision>,
}

/// What the plan needs besides the tags.
pub struct PlanInputs<'a> {
    pub project: &'a str,
    pub policy: &'a RetentionPolicy,
    /// The project's immutable-tag patterns.
    pub immutable: &'a [String],
    /// `(repository, manifest digest)` held by publications and edge pins.
    pub roots: &'a BTreeSet<(String, String)>,
    /// Unix seconds.
    pub now: u64,
}

/// Decides about every tag of `tags` (pure).
pub fn plan(inputs: &PlanInputs<'_>, tags: &[TagFacts]) -> RetentionPlan {
    let kept_by_count = keep_last_sets(inputs, tags);
    let mut out = RetentionPlan::default();
    for t in tags {
        let path = path_in(inputs.project, &t.repository);
        let covering: Vec<(usize, &RetentionRule)> = inputs
            .policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.covers(path, &t.tag))
            .collect();
        if covering.is_empty() {
            continue;
        }
        let decision = |reason: String, overrides_immutable: bool| TagDecision {
            repository: t.repository.clone(),
            tag: t.tag.clone(),
            digest: t.digest.clone(),
            pushed_at: t.pushed_at,
            last_pulled_at: t.last_pulled_at,
            reason,
            overrides_immutable,
        };
        if let Some(why) = kept_by_rule(inputs, t, &covering, &kept_by_count) {
            out.keep.push(decision(format!("kept: {why}"), false));
            continue;
        }
        if inputs
            .roots
            .contains(&(t.repository.clone(), t.digest.clone()))
        {
            out.keep.push(decision(
                "kept: deployed by a publication or pinned by an edge prefetch".into(),
                false,
            ));
            continue;
        }
        let protected = quota::protecting(inputs.immutable, &t.tag);
        let overrides = covering.iter().any(|(_, r)| r.include_immutable);
        match protected {
            Some(rule) if !overrides => {
                out.keep
                    .push(decision(format!("kept: immutable rule {rule}"), false));
            }
            _ => {
                let mut why = why_not(&covering).join("; ");
                if let Some(rule) = protected {
                    why.push_str(&format!(
                        "; immutable rule {rule} overridden by include_immutable"
                    ));
                }
                out.delete
                    .push(decision(format!("goes: {why}"), protected.is_some()));
            }
        }
    }
    out
}

fn path_in<'a>(project: &str, repository: &'a str) -> &'a str {
    repository
        .strip_prefix(project)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(repository)
}

/// For each rule with `keep_last`, the `(repository, tag)` it keeps: the
/// N most recently pushed of its tags in each repository (ties: by tag).
fn keep_last_sets(
    inputs: &PlanInputs<'_>,
    tags: &[TagFacts],
) -> BTreeMap<usize, BTreeSet<(String, String)>> {
    let mut out = BTreeMap::new();
    for (i, rule) in inputs.policy.rules.iter().enumerate() {
        let Some(n) = rule.keep_last else { continue };
        let mut by_repo: BTreeMap<&str, Vec<&TagFacts>> = BTreeMap::new();
        for t in tags
            .iter()
            .filter(|t| rule.covers(path_in(inputs.project, &t.repository), &t.tag))
        {
            by_repo.entry(&t.repository).or_default().push(t);
        }
        let set: &mut BTreeSet<(String, String)> = out.entry(i).or_default();
        for (_, mut ts) in by_repo {
            ts.sort_by(|a, b| {
                b.pushed_at
                    .cmp(&a.pushed_at)
                    .then_with(|| b.tag.cmp(&a.tag))
            });
            for t in ts.into_iter().take(n as usize) {
                set.insert((t.repository.clone(), t.tag.clone()));
            }
        }
    }
    out
}

fn kept_by_rule(
    inputs: &PlanInputs<'_>,
    t: &TagFacts,
    covering: &[(usize, &RetentionRule)],
    kept_by_count: &BTreeMap<usize, BTreeSet<(String, String)>>,
) -> Option<String> {
    for (i, r) in covering {
        let n = i + 1;
        if let Some(k) = r.keep_last {
            let key = (t.repository.clone(), t.tag.clone());
            if kept_by_count.get(i).is_some_and(|s| s.contains(&key)) {
                return Some(format!("among the {k} most recently pushed (rule {n})"));
            }
        }
        if let (Some(d), Some(at)) = (r.pulled_within_days, t.last_pulled_at) {
            if at >= inputs.now.saturating_sub(u64::from(d) * 86_400) {
                return Some(format!("pulled within {d} days (rule {n})"));
            }
        }
    }
    None
}

fn why_not(covering: &[(usize, &RetentionRule)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in covering {
        let n = i + 1;
        if let Some(k) = r.keep_last {
            out.push(format!("not among the {k} most recently pushed (rule {n})"));
        }
        if let Some(d) = r.pulled_within_days {
            out.push(format!("not pulled within {d} days (rule {n})"));
        }
    }
    out
}

/// How long the untagged manifests of `repository` are kept after their
/// push, in seconds: the longest `untagged_hours` of the rules covering it.
pub fn untagged_hold(project: &str, policy: &RetentionPolicy, repository: &str) -> Option<u64> {
    let path = path_in(project, repository);
    policy
        .rules
        .iter()
        .filter(|r| quota::matches(&r.repositories, path))
        .filter_map(|r| r.untagged_hours)
        .max()
        .map(|h| u64::from(h) * 3600)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
