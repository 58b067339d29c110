//! The port through which deleting a project reaches what others keep for
//! it (the controller's apps, resources and publications, composed in by
//! `berth serve`). Without one, a project holds only its images.

use async_trait::async_trait;

/// Why a project cannot go, or what went wrong while taking its records down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupError {
    /// Without `force`, the project still holds these (`apps/web`, `configmaps/settings`).
    Holds(Vec<String>),
    Failed(String),
}

#[async_trait]
pub trait ProjectCleanup: Send + Sync {
    /// Called before the project's record goes. Without `force`, refuses
    /// with `Holds` while anything is left; with `force`, takes it all down.
    /// `actor` is who deletes, for the audit log.
    async fn project_deleted(
        &self,
        actor: &str,
        project: &str,
        force: bool,
    ) -> Result<(), CleanupError>;
}
