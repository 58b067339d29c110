//! Media types berth understands, and which kind of manifest each is.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Docker's name for a non-distributable layer (Windows base layers).
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema2): config + layers.
    Image,
    /// An index (OCI image index or Docker manifest list): child manifests.
    Index,
}

pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// Whether `media_type` names a non-distributable layer: one whose publisher
/// may forbid copying it, so that images list where to fetch it (`urls`)
/// instead of pushing it. Whether a registry may then do without the blob is
/// decided per descriptor by [`Descriptor::fetched_from_urls`].
///
/// [`Descriptor::fetched_from_urls`]: super::Descriptor::fetched_from_urls
pub fn is_non_distributable(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_NONDISTRIBUTABLE
            | OCI_LAYER_NONDISTRIBUTABLE_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_ZSTD
            | DOCKER_FOREIGN_LAYER
    )
}

/// The media type part of a Content-Type header, without parameters, lower-cased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a manifest of `media_type` may be served to a client that sent `accept`
/// headers. Clients that send no Accept, or `*/*`, take anything. Old Docker clients
/// that list only schema1 still receive schema2 (as distribution does when it cannot
/// convert), so the check only ever narrows between image manifests and indexes.
/// Media types compare without regard to case; nothing is allocated (it runs on
/// every manifest GET).
pub fn acceptable<'a>(media_type: &str, accept: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any_manifest_type = false;
    for a in accept {
        for part in a.split(',') {
            let e = part.split(';').next().unwrap_or("").trim();
            if e == "*/*"
                || e.eq_ignore_ascii_case("application/*")
                || e.eq_ignore_ascii_case(media_type)
            {
                return true;
            }
            if [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST]
                .iter()
                .any(|m| e.eq_ignore_ascii_case(m))
            {
                any_manifest_type = true;
            }
        }
    }
    // The client named manifest types, none of them this one.
    !any_manifest_type
}
