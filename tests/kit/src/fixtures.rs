//! Offline OCI image fixtures.
//!
//! Owns writing an [OCI image layout] directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) with real images in it: gzip-compressed tar layers that
//! podman and containerd can unpack, a config whose `rootfs.diff_ids` are the
//! digests of the uncompressed tars, manifests, multi-arch indexes, OCI 1.1
//! artifacts with a `subject`, and the same in Docker schema2 media types.
//! Nothing here talks to a registry: tests copy the layout with skopeo or podman
//! (`oci:DIR:TAG`) or read the raw bytes from the returned values.
//!
//! Layers are stream-written (tar -> hash -> gzip -> hash -> file), so a 64 MiB
//! random layer never exists in memory; its bytes are read back from
//! [`Layer::path`] on demand.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::write::GzEncoder;
use flate2::Compression;
use ring::digest::{Context as Sha256, SHA256};
use serde::{Deserialize, Serialize};

/// Media types used by the fixtures.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// The OCI 1.1 empty descriptor's media type (content `{}`).
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Non-distributable layers: listed with `urls`, fetched from there.
    pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// Annotation key that names a manifest in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Fixed timestamp for configs and tar entries, so builds with the same input are reproducible.
const FIXED_CREATED: &str = "2024-01-01T00:00:00Z";
const FIXED_MTIME: u64 = 1_704_067_200;

/// Lowercase hex SHA-256 of `bytes`.
///
/// Hashing uses `ring` (assembly, SHA-NI where present) because the test
/// profile is unoptimized and a pure-Rust SHA-256 there hashes ~30 MB/s, too
/// slow for 64 MiB layers.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&SHA256, bytes))
}

/// `sha256:<hex>` digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// `sha512:<hex>` digest of `bytes`, the other algorithm registries accept.
pub fn sha512_digest_of(bytes: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA512, bytes);
    format!("sha512:{}", hex::encode(hash))
}

/// Which family of media types a manifest and its blobs use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2 and manifest list.
    Docker,
}

impl Flavor {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_MANIFEST,
            Flavor::Docker => media_types::DOCKER_MANIFEST,
        }
    }
    pub fn index_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_INDEX,
            Flavor::Docker => media_types::DOCKER_MANIFEST_LIST,
        }
    }
    pub fn config_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_CONFIG,
            Flavor::Docker => media_types::DOCKER_CONFIG,
        }
    }
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_LAYER_GZIP,
            Flavor::Docker => media_types::DOCKER_LAYER_GZIP,
        }
    }
}

/// `os`/`architecture`/`variant` of an image, as in configs and index entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            variant: None,
        }
    }
    pub fn with_variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.to_owned());
        self
    }
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64")
    }
    pub fn linux_arm64() -> Self {
        Self::new("linux", "arm64").with_variant("v8")
    }
    pub fn linux_arm_v7() -> Self {
        Self::new("linux", "arm").with_variant("v7")
    }
    /// `linux/arm64/v8` style, as podman's and skopeo's `--platform` take it.
    pub fn to_slash_string(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where a non-distributable layer is fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: String, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        }
    }
    /// The descriptor of `bytes` with `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self::new(media_type, digest_of(bytes), bytes.len() as u64)
    }
    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// A small blob kept in memory: a manifest, an index, a config or an artifact blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn digest(&self) -> &str {
        &self.descriptor.digest
    }
    pub fn size(&self) -> u64 {
        self.descriptor.size
    }
    pub fn media_type(&self) -> &str {
        &self.descriptor.media_type
    }
    /// The bytes parsed as JSON (manifests, indexes and configs are JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("fixture blob is JSON")
    }
}

/// A compressed layer blob written to the layout. Its bytes stay on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Descriptor of the gzip blob (what a manifest lists).
    pub descriptor: Descriptor,
    /// `sha256:` of the uncompressed tar (what the config's `rootfs.diff_ids` lists).
    pub diff_id: String,
    pub uncompressed_size: u64,
    /// Where the blob lives inside the layout.
    pub path: PathBuf,
    /// Regular files in the tar, in order (relative paths, no leading `/`).
    pub files: Vec<String>,
}

impl Layer {
    pub fn digest(&self) -> &str {
        &self.descriptor.digest
    }
    pub fn size(&self) -> u64 {
        self.descriptor.size
    }
    /// Reads the compressed blob from disk. Mind the size of random layers.
    pub fn read(&self) -> Vec<u8> {
        fs::read(&self.path)
            .unwrap_or_else(|e| panic!("reading layer {}: {e}", self.path.display()))
    }
}

/// An image written by [`ImageBuilder::build`].
#[derive(Clone, Debug)]
pub struct Image {
    pub flavor: Flavor,
    pub platform: Platform,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Layer>,
    /// The `org.opencontainers.image.ref.name` it was recorded under, if any.
    pub tag: Option<String>,
}

impl Image {
    pub fn digest(&self) -> &str {
        self.manifest.digest()
    }
    /// The manifest's descriptor with `platform` set, as an index lists it.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = self.manifest.descriptor.clone();
        d.platform = Some(self.platform.clone());
        d
    }
    /// Every blob a registry must hold for this image (config first), as
    /// `(digest, size)`: all but the non-distributable layers with URLs.
    pub fn pushed_blob_digests(&self) -> Vec<(String, u64)> {
        let mut all = self.blob_digests();
        all.retain(|(d, _)| {
            !self
                .layers
                .iter()
                .any(|l| l.digest() == d && !l.descriptor.urls.is_empty())
        });
        all
    }

    /// Every blob the manifest references (config first), as `(digest, size)`.
    pub fn blob_digests(&self) -> Vec<(String, u64)> {
        std::iter::once((self.config.digest().to_owned(), self.config.size()))
            .chain(
                self.layers
                    .iter()
                    .map(|l| (l.digest().to_owned(), l.size())),
            )
            .collect()
    }
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Clone, Debug)]
pub struct Index {
    pub flavor: Flavor,
    pub manifest: Blob,
    /// The entries of `manifests`, in order.
    pub manifests: Vec<Descriptor>,
    pub tag: Option<String>,
}

impl Index {
    pub fn digest(&self) -> &str {
        self.manifest.digest()
    }
    pub fn descriptor(&self) -> Descriptor {
        self.manifest.descriptor.clone()
    }
}

/// An OCI 1.1 artifact manifest written by [`ArtifactBuilder::build`].
#[derive(Clone, Debug)]
pub struct Artifact {
    pub manifest: Blob,
    /// The config: the empty descriptor `{}` unless one was given.
    pub config: Blob,
    pub blobs: Vec<Blob>,
    pub artifact_type: String,
    pub subject: Option<Descriptor>,
    pub tag: Option<String>,
}

impl Artifact {
    pub fn digest(&self) -> &str {
        self.manifest.digest()
    }
    /// The descriptor a referrers response lists for this artifact.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = self.manifest.descriptor.clone();
        d.artifact_type = Some(self.artifact_type.clone());
        d
    }
}

/// An OCI image layout directory.
///
/// `index.json` is rewritten on every [`OciLayout::record`]; the in-memory list
/// is behind a mutex so one layout can be shared by reference.
#[derive(Debug)]
pub struct OciLayout {
    root: PathBuf,
    index: Mutex<Vec<Descriptor>>,
}

/// An image index as JSON (also `index.json` of a layout).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexJson {
    pub(crate) schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    pub(crate) manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl OciLayout {
    /// Creates (or resets the index of) a layout at `dir`, creating the directory.
    pub fn create(dir: impl AsRef<Path>) -> Self {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(root.join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("creating layout {}: {e}", root.display()));
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("writing oci-layout");
        let layout = OciLayout {
            root,
            index: Mutex::new(Vec::new()),
        };
        layout.write_index(&[]);
        layout
    }

    /// Opens an existing layout, e.g. one that skopeo wrote.
    pub fn open(dir: impl AsRef<Path>) -> Self {
        let root = dir.as_ref().to_path_buf();
        let bytes = fs::read(root.join("index.json"))
            .unwrap_or_else(|e| panic!("reading {}/index.json: {e}", root.display()));
        let index: IndexJson = serde_json::from_slice(&bytes).expect("index.json is an OCI index");
        OciLayout {
            root,
            index: Mutex::new(index.manifests),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `oci:<dir>:<tag>`, the containers/image transport reference skopeo and podman take.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.root.display())
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        let path = self.blob_path(digest);
        fs::read(&path).unwrap_or_else(|e| panic!("reading blob {}: {e}", path.display()))
    }

    /// Writes `bytes` as a blob and returns it with its descriptor.
    pub fn write_blob(&self, media_type: &str, bytes: Vec<u8>) -> Blob {
        let descriptor = Descriptor::of(media_type, &bytes);
        let path = self.blob_path(&descriptor.digest);
        if !path.exists() {
            let tmp = self.temp_blob_path();
            fs::write(&tmp, &bytes).expect("writing blob");
            fs::rename(&tmp, &path).expect("renaming blob into place");
        }
        Blob { descriptor, bytes }
    }

    /// Writes the manifest (or index) named by `tag_or_digest`, its child
    /// manifests and all their blobs as a containers/image `dir:` directory at
    /// `dest` and returns `dir:<dest>` for skopeo.
    ///
    /// skopeo 1.9's `oci:` transport only resolves `index.json` entries with
    /// OCI media types ("no descriptor found for reference"), so Docker-flavor
    /// images and manifest lists are copied from here instead; `skopeo copy
    /// --all dir:... docker://...` keeps every digest. Blobs are hard-linked
    /// when possible.
    pub fn dir_transport(&self, tag_or_digest: &str, dest: impl AsRef<Path>) -> String {
        let dest = dest.as_ref();
        let root = if tag_or_digest.starts_with("sha256:") {
            tag_or_digest.to_owned()
        } else {
            self.resolve(tag_or_digest)
                .unwrap_or_else(|| panic!("no {tag_or_digest} in {}", self.root.display()))
                .digest
        };
        fs::create_dir_all(dest).unwrap_or_else(|e| panic!("creating {}: {e}", dest.display()));
        fs::write(dest.join("version"), "Directory Transport Version: 1.1\n")
            .expect("writing dir transport version");
        let top = self.read_blob(&root);
        fs::write(dest.join("manifest.json"), &top).expect("writing manifest.json");
        let top_json: serde_json::Value = serde_json::from_slice(&top).expect("manifest is JSON");
        let link = |digest: &str| {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            let target = dest.join(hex);
            if !target.exists() && fs::hard_link(self.blob_path(digest), &target).is_err() {
                fs::copy(self.blob_path(digest), &target).expect("copying blob");
            }
        };
        let blobs_of = |manifest: &serde_json::Value| {
            let config = manifest["config"]["digest"].as_str().map(str::to_owned);
            let layers = manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str().map(str::to_owned));
            config.into_iter().chain(layers).collect::<Vec<String>>()
        };
        match top_json["manifests"].as_array() {
            Some(children) => {
                for child in children {
                    let digest = child["digest"].as_str().expect("child digest");
                    let bytes = self.read_blob(digest);
                    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                    fs::write(dest.join(format!("{hex}.manifest.json")), &bytes)
                        .expect("writing child manifest");
                    let child_json: serde_json::Value =
                        serde_json::from_slice(&bytes).expect("child manifest is JSON");
                    blobs_of(&child_json).iter().for_each(|d| link(d));
                }
            }
            None => blobs_of(&top_json).iter().for_each(|d| link(d)),
        }
        format!("dir:{}", dest.display())
    }

    /// A copy of the whole layout at `dest`, blobs hard-linked where possible.
    pub fn link_copy(&self, dest: impl AsRef<Path>) -> OciLayout {
        let dest = dest.as_ref();
        let blobs = dest.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("creating {}: {e}", blobs.display()));
        for name in ["oci-layout", "index.json"] {
            fs::copy(self.root.join(name), dest.join(name)).expect("copying layout file");
        }
        let entries = fs::read_dir(self.root.join("blobs/sha256")).expect("listing blobs");
        for entry in entries {
            let entry = entry.expect("blob entry");
            let target = blobs.join(entry.file_name());
            if fs::hard_link(entry.path(), &target).is_err() {
                fs::copy(entry.path(), &target).expect("copying blob");
            }
        }
        OciLayout::open(dest)
    }

    /// The entries of `index.json`.
    pub fn entries(&self) -> Vec<Descriptor> {
        self.index.lock().expect("index lock").clone()
    }

    /// The entry recorded under `ref_name`.
    pub fn resolve(&self, ref_name: &str) -> Option<Descriptor> {
        self.entries()
            .into_iter()
            .find(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(ref_name))
    }

    /// Adds `descriptor` to `index.json`, named `ref_name` if given. An entry with
    /// the same name is replaced (the name moves, like a tag), an identical
    /// unnamed entry is not duplicated.
    pub fn record(&self, descriptor: &Descriptor, ref_name: Option<&str>) {
        let mut entry = descriptor.clone();
        if let Some(name) = ref_name {
            entry
                .annotations
                .insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
        }
        let mut index = self.index.lock().expect("index lock");
        index.retain(|d| match ref_name {
            Some(name) => d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) != Some(name),
            None => *d != entry,
        });
        index.push(entry);
        self.write_index(&index);
    }

    fn write_index(&self, manifests: &[Descriptor]) {
        let index = IndexJson {
            schema_version: 2,
            media_type: Some(media_types::OCI_INDEX.to_owned()),
            manifests: manifests.to_vec(),
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&index).expect("serializing index.json");
        let tmp = self.temp_blob_path();
        fs::write(&tmp, bytes).expect("writing index.json");
        fs::rename(&tmp, self.root.join("index.json")).expect("renaming index.json");
    }

    fn temp_blob_path(&self) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!(".tmp-{:016x}", rand::random::<u64>()))
    }
}

/// What goes into one layer.
#[derive(Clone, Debug)]
enum LayerSpec {
    Files(Vec<(String, Vec<u8>)>),
    /// One file `random/<seed>.bin` of `size` pseudo-random bytes from `seed`.
    Random {
        size: u64,
        seed: u64,
    },
}

/// Builds an image (layers, config, manifest) into an [`OciLayout`].
///
/// ```no_run
/// # use berth_testkit::fixtures::*;
/// let dir = tempfile::tempdir().unwrap();
/// let layout = OciLayout::create(dir.path().join("layout"));
/// let image = ImageBuilder::new()
///     .layer_file("etc/motd", b"hello\n".to_vec())
///     .layer_random(64 << 20)
///     .platform(Platform::linux_arm64())
///     .tag("v1")
///     .build(&layout);
/// assert_eq!(image.layers.len(), 2);
/// ```
/// How a layer is listed: an ordinary one, or a non-distributable one.
#[derive(Clone, Debug)]
struct Listing {
    spec: LayerSpec,
    /// `(media type, urls)` of a non-distributable layer.
    external: Option<(String, Vec<String>)>,
}

#[derive(Clone, Debug)]
pub struct ImageBuilder {
    flavor: Flavor,
    platform: Platform,
    layers: Vec<Listing>,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    tag: Option<String>,
    record: bool,
    compression: Option<u32>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An OCI linux/amd64 image with no layers yet (one small unique layer is
    /// added at build time if none is given).
    pub fn new() -> Self {
        ImageBuilder {
            flavor: Flavor::Oci,
            platform: Platform::linux_amd64(),
            layers: Vec::new(),
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            tag: None,
            record: true,
            compression: None,
        }
    }

    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Docker schema2 media types instead of OCI ones.
    pub fn docker(self) -> Self {
        self.flavor(Flavor::Docker)
    }

    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// A layer with these regular files (parent directories are added to the tar).
    pub fn layer_files<I, P, B>(mut self, files: I) -> Self
    where
        I: IntoIterator<Item = (P, B)>,
        P: Into<String>,
        B: Into<Vec<u8>>,
    {
        let files = files
            .into_iter()
            .map(|(p, b)| (p.into(), b.into()))
            .collect();
        self.layers.push(Listing {
            spec: LayerSpec::Files(files),
            external: None,
        });
        self
    }

    /// A non-distributable layer holding one file, listed with `media_type`
    /// (`media_types::OCI_LAYER_NONDISTRIBUTABLE*` or `DOCKER_FOREIGN_LAYER`)
    /// and `urls`. Its blob is written to the layout like any layer's (it is
    /// what the URLs would serve); a `…v1.tar` media type gets an
    /// uncompressed tar. Registries need not hold it: see
    /// [`Image::pushed_blob_digests`].
    pub fn layer_non_distributable(
        mut self,
        media_type: &str,
        urls: &[&str],
        path: impl Into<String>,
        content: impl Into<Vec<u8>>,
    ) -> Self {
        self.layers.push(Listing {
            spec: LayerSpec::Files(vec![(path.into(), content.into())]),
            external: Some((
                media_type.to_owned(),
                urls.iter().map(|u| (*u).to_owned()).collect(),
            )),
        });
        self
    }

    /// A layer with one file.
    pub fn layer_file(self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        self.layer_files([(path.into(), content.into())])
    }

    /// A layer holding one file of `size` random bytes; unique per call.
    pub fn layer_random(self, size: u64) -> Self {
        self.layer_random_seeded(size, rand::random())
    }

    /// Like [`layer_random`](Self::layer_random) but reproducible: the same seed
    /// and size give the same layer digest.
    pub fn layer_random_seeded(mut self, size: u64, seed: u64) -> Self {
        self.layers.push(Listing {
            spec: LayerSpec::Random { size, seed },
            external: None,
        });
        self
    }

    /// A manifest annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A config label (`config.Labels`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Records the manifest in `index.json` under this `org.opencontainers.image.ref.name`.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_owned());
        self
    }

    /// Do not add the manifest to `index.json` (e.g. for children of an index).
    /// By default an untagged image is still recorded, without a name.
    pub fn unrecorded(mut self) -> Self {
        self.record = false;
        self
    }

    /// gzip level 0..=9 for every layer. By default random layers are stored
    /// (level 0: random data does not compress, and deflate in an unoptimized
    /// test build runs at a few MB/s) and file layers use level 6.
    pub fn compression(mut self, level: u32) -> Self {
        self.compression = Some(level.min(9));
        self
    }

    /// Writes layers, config and manifest into `layout`.
    pub fn build(self, layout: &OciLayout) -> Image {
        let mut specs = self.layers;
        if specs.is_empty() {
            specs.push(Listing {
                spec: LayerSpec::Files(vec![(
                    "etc/berth-fixture".to_owned(),
                    format!("{:032x}\n", rand::random::<u128>()).into_bytes(),
                )]),
                external: None,
            });
        }
        let layers: Vec<Layer> = specs
            .iter()
            .map(|listing| {
                let spec = &listing.spec;
                let level = self.compression.unwrap_or(match spec {
                    LayerSpec::Files(_) => 6,
                    LayerSpec::Random { .. } => 0,
                });
                let (media_type, urls) = match &listing.external {
                    Some((m, u)) => (m.as_str(), u.clone()),
                    None => (self.flavor.layer_media_type(), Vec::new()),
                };
                // Only the plain `…tar` media types are uncompressed.
                let level = (!media_type.ends_with(".tar")).then_some(level);
                let mut layer =
                    write_layer(layout, spec, media_type, level).expect("writing layer");
                layer.descriptor.urls = urls;
                layer
            })
            .collect();

        let config = layout.write_blob(
            self.flavor.config_media_type(),
            image_config(&self.platform, &layers, &self.labels),
        );

        let layer_descriptors: Vec<Descriptor> =
            layers.iter().map(|l| l.descriptor.clone()).collect();
        let annotations = match self.flavor {
            Flavor::Oci => self.annotations,
            // Docker schema2 has no annotations.
            Flavor::Docker => BTreeMap::new(),
        };
        let manifest_bytes = serde_json::to_vec(&ManifestJson {
            schema_version: 2,
            media_type: self.flavor.manifest_media_type(),
            artifact_type: None,
            config: &config.descriptor,
            layers: &layer_descriptors,
            subject: None,
            annotations: &annotations,
        })
        .expect("serializing manifest");
        let manifest = layout.write_blob(self.flavor.manifest_media_type(), manifest_bytes);

        let image = Image {
            flavor: self.flavor,
            platform: self.platform,
            manifest,
            config,
            layers,
            tag: self.tag,
        };
        if self.record {
            layout.record(&image.descriptor(), image.tag.as_deref());
        }
        image
    }
}

/// An image manifest as JSON: images, and artifacts (with `artifactType`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestJson<'a> {
    pub(crate) schema_version: u32,
    pub(crate) media_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_type: Option<&'a str>,
    pub(crate) config: &'a Descriptor,
    pub(crate) layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<&'a Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: &'a BTreeMap<String, String>,
}

fn image_config(
    platform: &Platform,
    layers: &[Layer],
    labels: &BTreeMap<String, String>,
) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({
                "created": FIXED_CREATED,
                "created_by": format!("berth-testkit layer {i}: {}", l.files.join(" ")),
            })
        })
        .collect();
    let mut config = serde_json::json!({
        "created": FIXED_CREATED,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = serde_json::Value::String(variant.clone());
    }
    serde_json::to_vec(&config).expect("serializing config")
}

/// Counts and hashes what passes through to `inner`.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(&SHA256),
            count: 0,
        }
    }
    fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finish())),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A gzip stream: deflate through flate2, or stored blocks written here; or
/// no compression at all (uncompressed layers).
enum GzipWriter<W: Write> {
    Deflate(GzEncoder<W>),
    Stored(StoredGzip<W>),
    Plain(W),
}

impl<W: Write> GzipWriter<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            GzipWriter::Deflate(gz) => gz.finish(),
            GzipWriter::Stored(gz) => gz.finish(),
            GzipWriter::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            GzipWriter::Deflate(gz) => gz.write(buf),
            GzipWriter::Stored(gz) => gz.write(buf),
            GzipWriter::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            GzipWriter::Deflate(gz) => gz.flush(),
            GzipWriter::Stored(gz) => gz.flush(),
            GzipWriter::Plain(w) => w.flush(),
        }
    }
}

/// gzip with deflate "stored" (uncompressed) blocks (RFC 1951 3.2.4): a valid
/// gzip stream every client unpacks, produced at memcpy speed even in a debug
/// build, where flate2's level 0 still runs the deflate machinery.
struct StoredGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    crc: flate2::Crc,
}

const STORED_BLOCK_MAX: usize = 65_535;

impl<W: Write> StoredGzip<W> {
    fn new(mut inner: W) -> io::Result<Self> {
        // magic, CM=deflate, no flags, mtime 0, no extra flags, OS unknown.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(StoredGzip {
            inner,
            block: Vec::with_capacity(STORED_BLOCK_MAX),
            crc: flate2::Crc::new(),
        })
    }

    fn write_block(&mut self, last: bool) -> io::Result<()> {
        let len = self.block.len() as u16;
        let mut header = [0u8; 5];
        header[0] = u8::from(last); // BFINAL, BTYPE=00
        header[1..3].copy_from_slice(&len.to_le_bytes());
        header[3..5].copy_from_slice(&(!len).to_le_bytes());
        self.inner.write_all(&header)?;
        self.inner.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.write_block(true)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StoredGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(STORED_BLOCK_MAX - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.block.len() == STORED_BLOCK_MAX {
            self.write_block(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// splitmix64 stream: fast even in debug builds, reproducible from a seed.
struct PseudoRandom {
    state: u64,
    remaining: u64,
}

impl Read for PseudoRandom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn file_header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Appends directory entries for every parent of `path` not yet in `dirs`.
fn append_parents<W: Write>(
    tar: &mut tar::Builder<W>,
    dirs: &mut Vec<String>,
    path: &str,
) -> io::Result<()> {
    let parts: Vec<&str> = path.split('/').collect();
    for depth in 1..parts.len() {
        let dir = format!("{}/", parts[..depth].join("/"));
        if !dirs.contains(&dir) {
            let mut header = file_header(0, 0o755, tar::EntryType::Directory);
            tar.append_data(&mut header, &dir, io::empty())?;
            dirs.push(dir);
        }
    }
    Ok(())
}

/// Streams one layer: tar -> diff_id hash -> gzip -> digest hash -> temp file,
/// then renames the temp file to its digest.
/// `level` None writes the tar uncompressed (digest and diff_id agree).
fn write_layer(
    layout: &OciLayout,
    spec: &LayerSpec,
    media_type: &str,
    level: Option<u32>,
) -> io::Result<Layer> {
    let tmp = layout.temp_blob_path();
    let file = File::create(&tmp)?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = match level {
        None => GzipWriter::Plain(compressed),
        Some(0) => GzipWriter::Stored(StoredGzip::new(compressed)?),
        Some(level) => GzipWriter::Deflate(GzEncoder::new(compressed, Compression::new(level))),
    };
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    tar.mode(tar::HeaderMode::Deterministic);

    let mut dirs = Vec::new();
    let mut files = Vec::new();
    match spec {
        LayerSpec::Files(entries) => {
            for (path, content) in entries {
                let path = path.trim_start_matches('/');
                append_parents(&mut tar, &mut dirs, path)?;
                let mut header = file_header(content.len() as u64, 0o644, tar::EntryType::Regular);
                tar.append_data(&mut header, path, content.as_slice())?;
                files.push(path.to_owned());
            }
        }
        LayerSpec::Random { size, seed } => {
            let path = format!("random/{seed:016x}.bin");
            append_parents(&mut tar, &mut dirs, &path)?;
            let mut header = file_header(*size, 0o644, tar::EntryType::Regular);
            let data = PseudoRandom {
                state: *seed,
                remaining: *size,
            };
            tar.append_data(
                &mut header,
                &path,
                io::BufReader::with_capacity(1 << 20, data),
            )?;
            files.push(path);
        }
    }

    let uncompressed = tar.into_inner()?;
    let (diff_id, uncompressed_size, gzip) = uncompressed.finish();
    let compressed = gzip.finish()?;
    let (digest, size, mut file) = compressed.finish();
    file.flush()?;
    drop(file);

    let descriptor = Descriptor::new(media_type, digest, size);
    let path = layout.blob_path(&descriptor.digest);
    fs::rename(&tmp, &path)?;
    Ok(Layer {
        descriptor,
        diff_id,
        uncompressed_size,
        path,
        files,
    })
}

/// Builds a multi-platform index over images already in the layout.
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    flavor: Flavor,
    manifests: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
    tag: Option<String>,
    unrecorded: bool,
}

impl IndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }
    /// A Docker manifest list instead of an OCI image index.
    pub fn docker(self) -> Self {
        self.flavor(Flavor::Docker)
    }
    /// Lists `image` with its platform.
    pub fn image(self, image: &Image) -> Self {
        self.descriptor(image.descriptor())
    }
    /// Lists any descriptor (a nested index, an artifact, a foreign manifest).
    pub fn descriptor(mut self, descriptor: Descriptor) -> Self {
        self.manifests.push(descriptor);
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_owned());
        self
    }
    pub fn unrecorded(mut self) -> Self {
        self.unrecorded = true;
        self
    }

    pub fn build(self, layout: &OciLayout) -> Index {
        let media_type = self.flavor.index_media_type();
        let annotations = match self.flavor {
            Flavor::Oci => self.annotations,
            Flavor::Docker => BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&IndexJson {
            schema_version: 2,
            media_type: Some(media_type.to_owned()),
            manifests: self.manifests.clone(),
            annotations,
        })
        .expect("serializing index");
        let manifest = layout.write_blob(media_type, bytes);
        if !self.unrecorded {
            layout.record(&manifest.descriptor, self.tag.as_deref());
        }
        Index {
            flavor: self.flavor,
            manifest,
            manifests: self.manifests,
            tag: self.tag,
        }
    }
}

/// Builds one small image per platform (unrecorded) and an index over them
/// recorded as `tag`. Each image has a files layer naming its platform and a
/// random layer of `random_layer_size` bytes (none if 0).
pub fn multi_arch_image(
    layout: &OciLayout,
    flavor: Flavor,
    platforms: &[Platform],
    random_layer_size: u64,
    tag: &str,
) -> (Index, Vec<Image>) {
    let images: Vec<Image> = platforms
        .iter()
        .map(|p| {
            let mut builder = ImageBuilder::new()
                .flavor(flavor)
                .platform(p.clone())
                .layer_file("etc/platform", format!("{}\n", p.to_slash_string()))
                .unrecorded();
            if random_layer_size > 0 {
                builder = builder.layer_random(random_layer_size);
            }
            builder.build(layout)
        })
        .collect();
    let index = images
        .iter()
        .fold(IndexBuilder::new().flavor(flavor).tag(tag), |b, img| {
            b.image(img)
        })
        .build(layout);
    (index, images)
}

/// Builds an OCI 1.1 artifact: an image manifest with `artifactType`, an
/// (empty by default) config, blobs as layers and an optional `subject`.
#[derive(Clone, Debug)]
pub struct ArtifactBuilder {
    artifact_type: String,
    config: Option<(String, Vec<u8>)>,
    blobs: Vec<(String, Vec<u8>)>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
    tag: Option<String>,
    record: bool,
}

impl ArtifactBuilder {
    pub fn new(artifact_type: &str) -> Self {
        ArtifactBuilder {
            artifact_type: artifact_type.to_owned(),
            config: None,
            blobs: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
            tag: None,
            record: true,
        }
    }
    /// The manifest this artifact refers to (e.g. `image.descriptor()`); the
    /// `platform` of the descriptor is dropped, as a subject carries none.
    pub fn subject(mut self, descriptor: &Descriptor) -> Self {
        self.subject = Some(Descriptor::new(
            &descriptor.media_type,
            descriptor.digest.clone(),
            descriptor.size,
        ));
        self
    }
    /// A blob listed in `layers`.
    pub fn blob(mut self, media_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.blobs.push((media_type.to_owned(), bytes.into()));
        self
    }
    /// A real config instead of the empty descriptor.
    pub fn config(mut self, media_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.config = Some((media_type.to_owned(), bytes.into()));
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_owned());
        self
    }
    pub fn unrecorded(mut self) -> Self {
        self.record = false;
        self
    }

    pub fn build(self, layout: &OciLayout) -> Artifact {
        let config = match self.config {
            Some((media_type, bytes)) => layout.write_blob(&media_type, bytes),
            None => layout.write_blob(media_types::OCI_EMPTY, b"{}".to_vec()),
        };
        let mut blobs: Vec<Blob> = self
            .blobs
            .into_iter()
            .map(|(media_type, bytes)| layout.write_blob(&media_type, bytes))
            .collect();
        // OCI 1.1: an artifact without content lists the empty descriptor once.
        if blobs.is_empty() {
            blobs.push(layout.write_blob(media_types::OCI_EMPTY, b"{}".to_vec()));
        }
        let layer_descriptors: Vec<Descriptor> =
            blobs.iter().map(|b| b.descriptor.clone()).collect();
        let bytes = serde_json::to_vec(&ManifestJson {
            schema_version: 2,
            media_type: media_types::OCI_MANIFEST,
            artifact_type: Some(&self.artifact_type),
            config: &config.descriptor,
            layers: &layer_descriptors,
            subject: self.subject.as_ref(),
            annotations: &self.annotations,
        })
        .expect("serializing artifact manifest");
        let manifest = layout.write_blob(media_types::OCI_MANIFEST, bytes);
        let artifact = Artifact {
            manifest,
            config,
            blobs,
            artifact_type: self.artifact_type,
            subject: self.subject,
            tag: self.tag,
        };
        if self.record {
            let mut entry = artifact.descriptor();
            entry.annotations = self.annotations;
            layout.record(&entry, artifact.tag.as_deref());
        }
        artifact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    #[test]
    fn digests_are_sha256_of_bytes() {
        assert_eq!(
            digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"{}"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn image_blobs_match_their_descriptors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = OciLayout::create(dir.path());
        let image = ImageBuilder::new()
            .layer_files([("etc/a", b"a".to_vec()), ("usr/share/b/c", b"bc".to_vec())])
            .layer_random(300_000)
            .annotation("org.example", "x")
            .tag("v1")
            .build(&layout);

        let manifest = image.manifest.json();
        assert_eq!(manifest["mediaType"], media_types::OCI_MANIFEST);
        assert_eq!(manifest["config"]["digest"], image.config.digest());
        assert_eq!(manifest["annotations"]["org.example"], "x");
        assert_eq!(layout.read_blob(image.digest()), image.manifest.bytes);

        let config = image.config.json();
        for (i, layer) in image.layers.iter().enumerate() {
            let bytes = layer.read();
            assert_eq!(digest_of(&bytes), layer.descriptor.digest);
            assert_eq!(bytes.len() as u64, layer.descriptor.size);
            let mut tar = Vec::new();
            GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut tar)
                .expect("gunzip");
            assert_eq!(digest_of(&tar), layer.diff_id);
            assert_eq!(tar.len() as u64, layer.uncompressed_size);
            assert_eq!(config["rootfs"]["diff_ids"][i], layer.diff_id.as_str());
            let names: Vec<String> = tar::Archive::new(tar.as_slice())
                .entries()
                .expect("tar entries")
                .map(|e| {
                    e.expect("entry")
                        .path()
                        .expect("path")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            for file in &layer.files {
                assert!(names.contains(file), "{file} in {names:?}");
            }
        }
        assert_eq!(
            layout.resolve("v1"),
            Some({
                let mut d = image.descriptor();
                d.annotations
                    .insert(REF_NAME_ANNOTATION.to_owned(), "v1".to_owned());
                d
            })
        );
    }

    #[test]
    fn seeded_layers_are_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = OciLayout::create(dir.path());
        let a = ImageBuilder::new()
            .layer_random_seeded(10_000, 7)
            .build(&layout);
        let b = ImageBuilder::new()
            .layer_random_seeded(10_000, 7)
            .build(&layout);
        let c = ImageBuilder::new()
            .layer_random_seeded(10_000, 8)
            .build(&layout);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.layers[0].digest(), c.layers[0].digest());
        // The same unnamed manifest is not recorded twice.
        assert_eq!(layout.entries().len(), 2);
    }

    #[test]
    fn docker_flavor_uses_schema2_media_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = OciLayout::create(dir.path());
        let (index, images) = multi_arch_image(
            &layout,
            Flavor::Docker,
            &[Platform::linux_amd64(), Platform::linux_arm64()],
            0,
            "list",
        );
        let list = index.manifest.json();
        assert_eq!(list["mediaType"], media_types::DOCKER_MANIFEST_LIST);
        assert_eq!(list["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(list["manifests"][1]["digest"], images[1].digest());
        let manifest = images[0].manifest.json();
        assert_eq!(manifest["mediaType"], media_types::DOCKER_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], media_types::DOCKER_CONFIG);
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            media_types::DOCKER_LAYER_GZIP
        );
        assert_eq!(layout.entries().len(), 1);
    }

    #[test]
    fn artifact_has_type_subject_and_empty_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = OciLayout::create(dir.path());
        let image = ImageBuilder::new().tag("app").build(&layout);
        let sbom = ArtifactBuilder::new("application/vnd.example.sbom")
            .subject(&image.descriptor())
            .blob("application/json", br#"{"sbom":true}"#.to_vec())
            .build(&layout);
        let m = sbom.manifest.json();
        assert_eq!(m["artifactType"], "application/vnd.example.sbom");
        assert_eq!(m["subject"]["digest"], image.digest());
        assert!(m["subject"].get("platform").is_none());
        assert_eq!(m["config"]["mediaType"], media_types::OCI_EMPTY);
        assert_eq!(m["config"]["digest"], digest_of(b"{}"));
        assert_eq!(
            layout.read_blob(sbom.blobs[0].digest()),
            br#"{"sbom":true}"#
        );
    }
}
