//! The filters' glob: `*` matches within one path component, `**` across
//! components, `?` one character that is not `/`; everything else matches
//! itself. Pure.

/// Whether `name` matches `pattern` as a whole.
pub fn matches(pattern: &str, name: &str) -> bool {
    glob(pattern.as_bytes(), name.as_bytes())
}

/// What makes a pattern unusable, in words; None when it is fine.
pub fn invalid(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("an empty pattern matches nothing; use ** for everything".into());
    }
    if pattern.contains("***") {
        return Some(format!("{pattern:?}: *** means nothing more than **"));
    }
    pattern
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
        .map(|c| format!("{pattern:?} contains {c:?}, which no name has"))
}

fn glob(p: &[u8], n: &[u8]) -> bool {
    match p {
        [] => n.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `**/` also matches no component at all: `a/**/b` matches `a/b`.
            if let [b'/', after @ ..] = rest {
                if glob(after, n) {
                    return true;
                }
            }
            (0..=n.len()).any(|i| glob(rest, &n[i..]))
        }
        [b'*', rest @ ..] => {
            let stop = n.iter().position(|&c| c == b'/').unwrap_or(n.len());
            (0..=stop).any(|i| glob(rest, &n[i..]))
        }
        [b'?', rest @ ..] => matches!(n, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [c, rest @ ..] => matches!(n, [d, tail @ ..] if d == c && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_stay_in_their_component_double_stars_cross() {
        assert!(matches("team-a/**", "team-a/app"));
        assert!(matches("team-a/**", "team-a/tools/cli"));
        assert!(!matches("team-a/**", "team-ab/app"));
        assert!(!matches("team-a/**", "team-a"));
        assert!(matches("team-a/*", "team-a/app"));
        assert!(!matches("team-a/*", "team-a/tools/cli"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("*/app", "x/app"));
        assert!(!matches("*/app", "x/y/app"));
        assert!(matches("a/**/app", "a/app"));
        assert!(matches("a/**/app", "a/x/y/app"));
        assert!(matches("v*", "v1.2.3"));
        assert!(!matches("v*", "latest"));
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v10"));
        assert!(matches("latest", "latest"));
        assert!(!matches("latest", "latest2"));
    }

    #[test]
    fn unusable_patterns_are_named() {
        assert!(invalid("").is_some());
        assert!(invalid("a b").is_some());
        assert!(invalid("a/***").is_some());
        assert_eq!(invalid("team-a/**"), None);
    }
}
