//! Property tests of the pure OCI layer: the name grammar, digests, references
//! and manifest decoding never panic on any input, accept everything the
//! grammar generates, and print what they parsed so that it parses back the same.

use berth_registry::oci::manifest::decode;
use berth_registry::oci::{Digest, ImageRef, Reference, RepoName, Tag};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}"
}

fn repo_name() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..5).prop_map(|c| c.join("/"))
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

fn tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
}

/// Strings near the grammar: its alphabet plus the characters that break it.
fn near_miss() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:/@ -]{0,80}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn digests_round_trip(d in digest()) {
        let parsed: Digest = d.parse().expect("generated digest parses");
        prop_assert_eq!(parsed.to_string(), d.clone());
        prop_assert_eq!(parsed.to_string().parse::<Digest>().expect("again"), parsed);
    }

    #[test]
    fn any_digest_text_is_refused_or_canonical(s in prop_oneof![any::<String>(), near_miss()]) {
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s);
        }
    }

    #[test]
    fn repo_names_of_the_grammar_parse(name in repo_name()) {
        let parsed = name.parse::<RepoName>();
        if name.len() <= berth_registry::oci::MAX_REPO_NAME {
            let parsed = parsed.expect("grammar name parses");
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(parsed.project(), name.split('/').next().unwrap_or_default());
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn any_repo_name_is_refused_or_round_trips(s in prop_oneof![any::<String>(), near_miss()]) {
        if let Ok(n) = s.parse::<RepoName>() {
            prop_assert_eq!(n.to_string(), s.clone());
            prop_assert!(!s.is_empty() && s.len() <= berth_registry::oci::MAX_REPO_NAME);
            prop_assert!(!s.chars().any(|c| c.is_ascii_uppercase() || c == ':' || c == '@'));
        }
    }

    #[test]
    fn tags_of_the_grammar_parse(t in tag()) {
        let parsed: Tag = t.parse().expect("grammar tag parses");
        prop_assert_eq!(parsed.as_str(), t.as_str());
    }

    #[test]
    fn any_reference_is_refused_or_round_trips(s in prop_oneof![any::<String>(), near_miss(), digest(), tag()]) {
        if let Ok(r) = s.parse::<Reference>() {
            prop_assert_eq!(r.to_string(), s.clone());
            prop_assert_eq!(r.to_string().parse::<Reference>().expect("again"), r);
        }
    }

    #[test]
    fn image_refs_print_and_parse_back(
        name in repo_name(),
        r in prop_oneof![tag().prop_map(|t| format!(":{t}")), digest().prop_map(|d| format!("@{d}")), Just(String::new())],
    ) {
        prop_assume!(name.len() <= berth_registry::oci::MAX_REPO_NAME);
        let text = format!("{name}{r}");
        let parsed: ImageRef = text.parse().expect("generated reference parses");
        let printed = parsed.to_string();
        if r.is_empty() {
            prop_assert_eq!(printed.clone(), format!("{name}:latest"));
        } else {
            prop_assert_eq!(printed.clone(), text);
        }
        prop_assert_eq!(printed.parse::<ImageRef>().expect("again"), parsed);
    }

    #[test]
    fn any_image_ref_text_is_refused_or_round_trips(s in prop_oneof![any::<String>(), near_miss()]) {
        if let Ok(r) = s.parse::<ImageRef>() {
            prop_assert_eq!(r.to_string().parse::<ImageRef>().expect("printed form parses"), r);
        }
    }

    #[test]
    fn manifest_decoding_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512), ct in content_type()) {
        let _ = decode(&ct, &body);
    }

    #[test]
    fn manifest_decoding_never_panics_on_manifest_shapes(v in manifest_shape(), ct in content_type()) {
        let body = serde_json::to_vec(&v).expect("json");
        if let Ok(summary) = decode(&ct, &body) {
            // Whatever it accepted names only well-formed digests, and decodes the same again.
            let again = decode(&ct, &body).expect("deterministic");
            prop_assert_eq!(format!("{summary:?}"), format!("{again:?}"));
        }
    }
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("application/vnd.oci.image.manifest.v1+json".to_string()),
        Just("application/vnd.oci.image.index.v1+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.v2+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.v1+prettyjws".to_string()),
        Just("application/json; charset=utf-8".to_string()),
        "[a-z/.+-]{0,40}",
    ]
}

/// A JSON value that may or may not be a manifest: the right keys with values of
/// every kind, so decoding reaches past its first checks.
fn descriptor_shape() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!("application/vnd.oci.image.layer.v1.tar+gzip")),
            Just(json!(
                "application/vnd.oci.image.layer.nondistributable.v1.tar"
            )),
            Just(json!("application/vnd.oci.image.manifest.v1+json")),
            any::<String>().prop_map(Value::from),
            Just(Value::Null),
        ],
        prop_oneof![
            digest().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
        ],
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(json!("12")),
        ],
        prop::option::of(prop::collection::vec(
            any::<String>().prop_map(Value::from),
            0..3,
        )),
    )
        .prop_map(|(mt, d, size, urls)| {
            let mut v = json!({"mediaType": mt, "digest": d, "size": size});
            if let Some(u) = urls {
                v["urls"] = Value::Array(u);
            }
            v
        })
}

fn manifest_shape() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!(2)),
            Just(json!(1)),
            any::<i64>().prop_map(Value::from),
            Just(json!("2"))
        ],
        prop::option::of(content_type().prop_map(Value::from)),
        prop::option::of(descriptor_shape()),
        prop::option::of(prop::collection::vec(descriptor_shape(), 0..4)),
        prop::option::of(prop::collection::vec(descriptor_shape(), 0..4)),
        prop::option::of(descriptor_shape()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
    )
        .prop_map(|(sv, mt, config, layers, manifests, subject, fs)| {
            let mut v = json!({"schemaVersion": sv});
            let mut set = |k: &str, x: Option<Value>| {
                if let Some(x) = x {
                    v[k] = x;
                }
            };
            set("mediaType", mt);
            set("config", config);
            set("layers", layers.map(Value::Array));
            set("manifests", manifests.map(Value::Array));
            set("subject", subject);
            set("fsLayers", fs.map(|b| json!(b)));
            v
        })
}
