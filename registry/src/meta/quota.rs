//! Storage quotas and immutable tags as the metadata keeps and enforces
//! them: the types of their settings and refusals, and the pure rules
//! (a project's effective limit, tag pattern matching, sizes in words).
//!
//! Usage is what a project holds: each blob linked to any of its
//! repositories and each manifest in any of them, counted once per project
//! by digest however many repositories and tags use it (and in each
//! project that holds it). A backend keeps it as a counter, changed in the
//! same transaction as the links and manifests it counts, and checks a
//! push against the limit there, so that concurrent pushes cannot pass it
//! together. Nothing here does I/O.

use serde::{Deserialize, Serialize};

/// A project's own storage setting; without one the registry default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaSetting {
    /// At most this many bytes.
    Bytes(u64),
    /// No limit, whatever the registry default is.
    Unlimited,
}

/// A project's usage and the limits that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProjectQuota {
    /// Bytes the project holds now.
    pub usage: u64,
    /// The project's own setting, if any.
    pub own: Option<QuotaSetting>,
    /// The registry-wide default, if any.
    pub default: Option<u64>,
}

impl ProjectQuota {
    /// The limit that applies: the project's own, else the default.
    pub fn limit(&self) -> Option<u64> {
        effective_limit(self.own, self.default)
    }
}

/// The limit that applies given a project's own setting and the default.
pub fn effective_limit(own: Option<QuotaSetting>, default: Option<u64>) -> Option<u64> {
    match own {
        Some(QuotaSetting::Bytes(n)) => Some(n),
        Some(QuotaSetting::Unlimited) => None,
        None => default,
    }
}

/// A push refused because the project would hold more than its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub project: String,
    pub limit: u64,
    pub usage: u64,
    /// What the push would have added.
    pub adding: u64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "project {} is over its storage quota: the limit is {}, {} is used, and this push \
             would add {}; delete images and run GC, or ask an administrator to raise the quota",
            self.project,
            human(self.limit),
            human(self.usage),
            human(self.adding)
        )
    }
}

/// A change refused because an immutable-tag rule protects the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableTag {
    pub repo: String,
    pub tag: String,
    /// The rule's pattern.
    pub rule: String,
    /// What was refused, in words ("pushing a different manifest to", "deleting").
    pub doing: &'static str,
}

impl std::fmt::Display for ImmutableTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} is refused: the tag is immutable under project rule {:?}; push a new tag \
             instead, or ask a project admin to remove the rule",
            self.doing, self.repo, self.tag, self.rule
        )
    }
}

/// A project's immutable-tag rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImmutableRule {
    /// Tags it protects: `*` matches any run of characters, `?` any one.
    pub pattern: String,
    /// Unix seconds when it was added.
    pub created: u64,
}

/// What recounting a project's usage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Recount {
    /// The counter before.
    pub counted: u64,
    /// What the project holds, recounted from its links and manifests (the counter now).
    pub recounted: u64,
}

/// Checks a tag pattern: tag characters (`[A-Za-z0-9_.-]`) and the
/// wildcards `*` and `?`, at most 128 characters.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 128 {
        return Err("a tag pattern has 1 to 128 characters".into());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-*?".contains(*c)))
    {
        return Err(format!(
            "tag pattern {pattern:?} has {c:?}; use tag characters (letters, digits, _ . -) \
             with * and ? as wildcards"
        ));
    }
    Ok(())
}

/// Whether `tag` matches `pattern` (`*`: any run, `?`: any one character).
pub fn matches(pattern: &str, tag: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), tag.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the tag position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The first rule of `rules` that protects `tag`.
pub fn protecting<'a>(rules: &'a [String], tag: &str) -> Option<&'a str> {
    rules.iter().find(|r| matches(r, tag)).map(String::as_str)
}

/// A size in words: `812 B`, `1.5 KiB`, `50 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            let text = format!("{v:.1}");
            let text = text.strip_suffix(".0").unwrap_or(&text);
            return format!("{text} {name}");
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_globs() {
        for (p, t) in [
            ("v*", "v1"),
            ("v*", "v"),
            ("release-*", "release-2024.1"),
            ("*", "latest"),
            ("v?.*", "v1.2"),
            ("*-rc*", "1.0-rc2"),
            ("latest", "latest"),
            ("a*b*c", "aXbYbZc"),
        ] {
            assert!(matches(p, t), "{p} should match {t}");
        }
        for (p, t) in [
            ("v*", "latest"),
            ("release-*", "release"),
            ("v?", "v10"),
            ("latest", "latest2"),
            ("a*b*c", "aXbYbZ"),
        ] {
            assert!(!matches(p, t), "{p} should not match {t}");
        }
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("v*").is_ok());
        assert!(check_pattern("release-?.*").is_ok());
        assert!(check_pattern("").is_err());
        assert!(check_pattern("v/*").is_err());
        assert!(check_pattern(&"a".repeat(129)).is_err());
    }

    #[test]
    fn limits_and_sizes() {
        assert_eq!(effective_limit(None, Some(5)), Some(5));
        assert_eq!(
            effective_limit(Some(QuotaSetting::Bytes(3)), Some(5)),
            Some(3)
        );
        assert_eq!(
            effective_limit(Some(QuotaSetting::Unlimited), Some(5)),
            None
        );
        assert_eq!(effective_limit(None, None), None);
        assert_eq!(human(812), "812 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(50 << 30), "50 GiB");
        let e = QuotaExceeded {
            project: "team".into(),
            limit: 1 << 20,
            usage: 1000,
            adding: 2 << 20,
        };
        let m = e.to_string();
        assert!(
            m.contains("the limit is 1 MiB") && m.contains("1000 B is used"),
            "{m}"
        );
    }
}
