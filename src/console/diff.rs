//! A line diff of two texts (two template versions written as YAML), by the
//! longest common subsequence: small inputs only (a template is tens of
//! lines; past `MAX_LINES` a side is shown whole as removed and added).

/// What happened to a line going from the old text to the new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    Removed,
    Added,
}

/// Beyond this many lines on either side, no alignment is attempted.
const MAX_LINES: usize = 2000;

/// The lines of `old` and `new` in order, each marked.
pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<(Change, &'a str)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return a
            .iter()
            .map(|l| (Change::Removed, *l))
            .chain(b.iter().map(|l| (Change::Added, *l)))
            .collect();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push((Change::Same, a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push((Change::Removed, a[i]));
            i += 1;
        } else {
            out.push((Change::Added, b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| (Change::Removed, *l)));
    out.extend(b[j..].iter().map(|l| (Change::Added, *l)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_reads_as_removed_then_added_among_the_same() {
        let old = "kind: Deployment\nimage: web:1\nreplicas: 1\n";
        let new = "kind: Deployment\nimage: web:2\nreplicas: 1\nenv: x\n";
        assert_eq!(
            lines(old, new),
            vec![
                (Change::Same, "kind: Deployment"),
                (Change::Removed, "image: web:1"),
                (Change::Added, "image: web:2"),
                (Change::Same, "replicas: 1"),
                (Change::Added, "env: x"),
            ]
        );
        assert!(lines(old, old).iter().all(|(c, _)| *c == Change::Same));
        assert_eq!(lines("", "a"), vec![(Change::Added, "a")]);
    }
}
