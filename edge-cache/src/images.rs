//! The cached-images API of an edge: which tagged images (and pinned ones)
//! it holds, and dropping pins or images on request. Listing and deleting go
//! through the local registry (`cached_images`, `resolve_image`) and
//! retention (`drop_blob`); pins are the edge's bookkeeping (`store.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_registry::oci::ImageRef;
use berth_registry::service::LocalRegistry;
use serde::{Deserialize, Serialize};

use crate::prefetch::PrefetchError;
use crate::retention::Retention;
use crate::store::EdgeStore;

#[derive(Deserialize)]
pub struct ImagesBody {
    pub images: Vec<String>,
}

#[derive(Serialize)]
pub struct CachedImage {
    pub image: String,
    pub digest: String,
    pub pinned: bool,
    pub cached_bytes: u64,
}

/// What the handlers need.
#[derive(Clone)]
pub struct Images {
    pub local: Arc<LocalRegistry>,
    pub store: Arc<EdgeStore>,
    pub retention: Arc<Retention>,
}

pub fn router(images: Images) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/images", axum::routing::get(list))
        .route("/api/v1/unpin", axum::routing::post(unpin))
        .route("/api/v1/images/delete", axum::routing::post(delete))
        .with_state(images)
}

fn internal(e: impl std::fmt::Display) -> PrefetchError {
    PrefetchError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn list(State(p): State<Images>) -> Result<Json<Vec<CachedImage>>, PrefetchError> {
    Ok(Json(cached(&p).await?))
}

/// The cached images, tagged ones and pinned ones (a pinned digest not
/// cached yet shows with no bytes).
pub async fn cached(p: &Images) -> Result<Vec<CachedImage>, PrefetchError> {
    let pins = p.store.pins().await.map_err(internal)?;
    let pinned_images: HashSet<String> = pins.values().flatten().cloned().collect();
    let mut out: Vec<CachedImage> = p
        .local
        .cached_images()
        .await
        .map_err(internal)?
        .into_iter()
        .map(|c| {
            let image = format!("{}:{}", c.repo, c.tag);
            let by_digest = format!("{}@{}", c.repo, c.digest);
            CachedImage {
                pinned: pinned_images.contains(&image) || pinned_images.contains(&by_digest),
                image,
                digest: c.digest,
                cached_bytes: c.recorded_bytes,
            }
        })
        .collect();
    for img in pinned_images {
        if !out.iter().any(|c| c.image == img) && img.contains('@') {
            let digest = img.split('@').nth(1).unwrap_or("").to_string();
            out.push(CachedImage {
                image: img,
                digest,
                pinned: true,
                cached_bytes: 0,
            });
        }
    }
    Ok(out)
}

async fn unpin(
    State(p): State<Images>,
    Json(b): Json<ImagesBody>,
) -> Result<Json<serde_json::Value>, PrefetchError> {
    let mut n = 0;
    for i in &b.images {
        n += p.store.unpin(i).await.map_err(internal)?;
    }
    p.retention.evict_if_needed().await;
    Ok(Json(serde_json::json!({"unpinned_blobs": n})))
}

async fn delete(
    State(p): State<Images>,
    Json(b): Json<ImagesBody>,
) -> Result<Json<serde_json::Value>, PrefetchError> {
    let mut deleted = 0u64;
    let pins_before = p.store.pins().await.unwrap_or_default();
    for i in &b.images {
        let _ = p.store.unpin(i).await;
        let Ok(r) = i.parse::<ImageRef>() else {
            continue;
        };
        let Some(resolved) = p.local.resolve_image(&r).await.ok().flatten() else {
            continue;
        };
        for b in resolved.blobs {
            let pinned_elsewhere = pins_before
                .get(&b.digest.to_string())
                .is_some_and(|imgs| imgs.iter().any(|x| x != i));
            if !pinned_elsewhere && p.retention.drop_blob(&b.digest).await {
                deleted += 1;
            }
        }
    }
    Ok(Json(serde_json::json!({"deleted_blobs": deleted})))
}
