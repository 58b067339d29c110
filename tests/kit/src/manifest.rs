//! Manifests as bytes over blobs held in memory, for protocol tests that push
//! every blob and manifest themselves, one request at a time, and choose the
//! bytes: a layer here is any bytes (a registry does not look inside), and a
//! manifest may name blobs nobody pushed. Written by the same serializers as
//! the [`fixtures`](crate::fixtures) builders; tests that need an image a
//! client can run use those instead.
//!
//! A deliberately malformed manifest is best written out in the test itself,
//! where the reader sees what is wrong with it.

use std::collections::BTreeMap;

use crate::fixtures::media_types::{
    OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use crate::fixtures::{Descriptor, IndexJson, ManifestJson, Platform};

/// A small image config (linux/amd64, no layers) whose labels name `repo`
/// and `tag`, so that images pushed under different names differ.
pub fn config_for(repo: &str, tag: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"repo": repo, "tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .expect("config json")
}

/// The descriptor of `bytes` as JSON, for manifests a test writes out itself.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::to_value(Descriptor::of(media_type, bytes)).expect("descriptor json")
}

/// An OCI image manifest over `config` and `layers` (listed as gzip layers).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| Descriptor::of(OCI_LAYER_GZIP, l))
        .collect();
    manifest(
        None,
        &Descriptor::of(OCI_CONFIG, config),
        &layers,
        None,
        &BTreeMap::new(),
    )
}

/// An OCI image index listing `manifests` (OCI image manifests), each as linux/amd64.
pub fn index_of(manifests: &[&[u8]]) -> Vec<u8> {
    let manifests = manifests
        .iter()
        .map(|m| {
            let mut d = Descriptor::of(OCI_MANIFEST, m);
            d.platform = Some(Platform::linux_amd64());
            d
        })
        .collect();
    serde_json::to_vec(&IndexJson {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_owned()),
        manifests,
        annotations: BTreeMap::new(),
    })
    .expect("index json")
}

/// An OCI 1.1 artifact manifest about `subject` (a manifest of
/// `subject_media_type`): the empty config, `blob` as its one layer
/// (`application/json`), and `annotation` as `org.example.note`.
pub fn artifact_manifest(
    artifact_type: &str,
    subject: &[u8],
    subject_media_type: &str,
    blob: &[u8],
    annotation: &str,
) -> Vec<u8> {
    let annotations = BTreeMap::from([("org.example.note".to_owned(), annotation.to_owned())]);
    manifest(
        Some(artifact_type),
        &Descriptor::of(OCI_EMPTY, b"{}"),
        &[Descriptor::of("application/json", blob)],
        Some(&Descriptor::of(subject_media_type, subject)),
        &annotations,
    )
}

fn manifest(
    artifact_type: Option<&str>,
    config: &Descriptor,
    layers: &[Descriptor],
    subject: Option<&Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    serde_json::to_vec(&ManifestJson {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type,
        config,
        layers,
        subject,
        annotations,
    })
    .expect("manifest json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::digest_of;

    #[test]
    fn manifests_name_their_blobs_by_digest_and_size() {
        let config = config_for("pub/app", "v1");
        let m = image_manifest(&config, &[b"layer"]);
        let v: serde_json::Value = serde_json::from_slice(&m).expect("json");
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["config"]["digest"], digest_of(&config));
        assert_eq!(v["layers"][0]["size"], 5);
        let i: serde_json::Value = serde_json::from_slice(&index_of(&[&m])).expect("json");
        assert_eq!(i["manifests"][0]["digest"], digest_of(&m));
        assert_eq!(i["manifests"][0]["platform"]["os"], "linux");
        let a = artifact_manifest("application/x", &m, OCI_MANIFEST, b"{}", "n");
        let a: serde_json::Value = serde_json::from_slice(&a).expect("json");
        assert_eq!(a["subject"]["digest"], digest_of(&m));
        assert_eq!(a["artifactType"], "application/x");
        assert_eq!(a["annotations"]["org.example.note"], "n");
    }
}
