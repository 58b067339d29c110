use super::*;

const DAY: u64 = 86_400;
const NOW: u64 = 100 * DAY;

fn tag(repo: &str, tag: &str, digest: &str, pushed_days_ago: u64, pulled: Option<u64>) -> TagFacts {
    TagFacts {
        repository: repo.into(),
        tag: tag.into(),
        digest: digest.into(),
        pushed_at: NOW - pushed_days_ago * DAY,
        last_pulled_at: pulled.map(|d| NOW - d * DAY),
    }
}

fn rule(repositories: &str, tags: &str) -> RetentionRule {
    RetentionRule {
        repositories: repositories.into(),
        tags: tags.into(),
        keep_last: None,
        pulled_within_days: None,
        untagged_hours: None,
        include_immutable: false,
    }
}

fn names(d: &[TagDecision]) -> Vec<String> {
    d.iter()
        .map(|d| format!("{}:{}", d.repository, d.tag))
        .collect()
}

fn run(
    policy: &RetentionPolicy,
    immutable: &[&str],
    roots: &[(&str, &str)],
    tags: &[TagFacts],
) -> RetentionPlan {
    let immutable: Vec<String> = immutable.iter().map(|s| s.to_string()).collect();
    let roots: BTreeSet<(String, String)> = roots
        .iter()
        .map(|(r, d)| (r.to_string(), d.to_string()))
        .collect();
    plan(
        &PlanInputs {
            project: "team",
            policy,
            immutable: &immutable,
            roots: &roots,
            now: NOW,
        },
        tags,
    )
}

fn five() -> Vec<TagFacts> {
    vec![
        tag("team/app", "a1", "d1", 5, None),
        tag("team/app", "a2", "d2", 4, Some(30)),
        tag("team/app", "a3", "d3", 3, Some(2)),
        tag("team/app", "a4", "d4", 2, None),
        tag("team/app", "a5", "d5", 1, None),
    ]
}

#[test]
fn keeps_the_newest_and_the_recently_pulled() {
    let policy = RetentionPolicy {
        rules: vec![
            RetentionRule {
                keep_last: Some(2),
                ..rule("*", "*")
            },
            RetentionRule {
                pulled_within_days: Some(7),
                ..rule("app", "a*")
            },
        ],
    };
    let p = run(&policy, &[], &[], &five());
    assert_eq!(names(&p.delete), ["team/app:a1", "team/app:a2"]);
    assert_eq!(
        names(&p.keep),
        ["team/app:a3", "team/app:a4", "team/app:a5"]
    );
    assert_eq!(p.keep[0].reason, "kept: pulled within 7 days (rule 2)");
    assert_eq!(
        p.keep[1].reason,
        "kept: among the 2 most recently pushed (rule 1)"
    );
    assert_eq!(
        p.delete[0].reason,
        "goes: not among the 2 most recently pushed (rule 1); not pulled within 7 days (rule 2)"
    );
}

#[test]
fn keep_last_counts_per_repository_and_only_covered_tags() {
    let mut tags = five();
    tags.push(tag("team/other", "o1", "e1", 9, None));
    tags.push(tag("team/app", "latest", "d5", 0, None));
    let policy = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(1),
            ..rule("*", "a*")
        }],
    };
    let p = run(&policy, &[], &[], &tags);
    // `latest` is covered by no rule: untouched, in neither list.
    assert_eq!(names(&p.keep), ["team/app:a5"]);
    assert_eq!(
        names(&p.delete),
        ["team/app:a1", "team/app:a2", "team/app:a3", "team/app:a4"]
    );
    let policy = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(1),
            ..rule("*", "*")
        }],
    };
    let p = run(&policy, &[], &[], &tags);
    assert!(
        names(&p.keep).contains(&"team/other:o1".to_string()),
        "{p:?}"
    );
    assert!(
        names(&p.keep).contains(&"team/app:latest".to_string()),
        "{p:?}"
    );
}

#[test]
fn roots_and_immutable_tags_are_kept_unless_the_rule_says_so() {
    let policy = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(1),
            ..rule("app", "*")
        }],
    };
    let p = run(&policy, &["a2", "a1"], &[("team/app", "d3")], &five());
    assert_eq!(names(&p.delete), ["team/app:a4"]);
    let reasons: Vec<&str> = p.keep.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "kept: immutable rule a1",
            "kept: immutable rule a2",
            "kept: deployed by a publication or pinned by an edge prefetch",
            "kept: among the 1 most recently pushed (rule 1)",
        ]
    );
    let policy = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(1),
            include_immutable: true,
            ..rule("app", "*")
        }],
    };
    let p = run(&policy, &["a*"], &[("team/app", "d3")], &five());
    assert_eq!(
        names(&p.delete),
        ["team/app:a1", "team/app:a2", "team/app:a4"]
    );
    assert!(p.delete.iter().all(|d| d.overrides_immutable));
    assert!(
        p.delete[0].reason.contains("immutable rule a* overridden"),
        "{}",
        p.delete[0].reason
    );
    // A publication's image stays even when the rule overrides immutability.
    assert_eq!(names(&p.keep), ["team/app:a3", "team/app:a5"]);
}

#[test]
fn untagged_rules_judge_no_tags_and_set_the_hold() {
    let policy = RetentionPolicy {
        rules: vec![
            RetentionRule {
                untagged_hours: Some(24),
                ..rule("app", "*")
            },
            RetentionRule {
                untagged_hours: Some(48),
                ..rule("a*", "*")
            },
        ],
    };
    assert_eq!(run(&policy, &[], &[], &five()), RetentionPlan::default());
    assert_eq!(untagged_hold("team", &policy, "team/app"), Some(48 * 3600));
    assert_eq!(untagged_hold("team", &policy, "team/bin"), None);
}

#[test]
fn policies_are_checked() {
    let ok = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(3),
            ..rule("apps/*", "v*")
        }],
    };
    assert!(check(&ok).is_ok());
    let none = RetentionPolicy {
        rules: vec![rule("*", "*")],
    };
    assert!(check(&none)
        .expect_err("nothing kept")
        .contains("keeps nothing"));
    let bad = RetentionPolicy {
        rules: vec![RetentionRule {
            keep_last: Some(3),
            ..rule("Apps", "*")
        }],
    };
    assert!(check(&bad)
        .expect_err("capitals")
        .starts_with("rule 1: repositories"));
    let json = r#"{"rules":[{"tags":"v*","keep_last":2,"frobnicate":1}]}"#;
    assert!(serde_json::from_str::<RetentionPolicy>(json).is_err());
    let json = r#"{"rules":[{"keep_last":2}]}"#;
    let p: RetentionPolicy = serde_json::from_str(json).expect("defaults");
    assert_eq!(p.rules[0].repositories, "*");
    assert_eq!(p.rules[0].tags, "*");
}
