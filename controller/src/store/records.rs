//! The records the store's interface carries besides the `model` and
//! `resources` types: what no single domain type says (an EIP address held,
//! a force-unpublish's tombstone, what a project holds and what its purge
//! dropped).

use serde::{Deserialize, Serialize};

use crate::model::PublicationKey;
use crate::ports::PublicationChange;
use crate::resources::ResourceKind;

/// Who holds an address in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipClaim {
    pub project: String,
    pub eip: String,
    pub node: String,
    /// Allocated from the pool (freed back to it), or the EIP's static address.
    pub pool: bool,
}

/// What a force-unpublish left on a node, to take off when it comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedRemoval {
    pub project: String,
    pub app: String,
    pub node: String,
    /// Images (`repo@digest`) the publication had pinned on the node's edge.
    pub pins: Vec<String>,
    /// Resources whose records were dropped with it.
    pub resources: Vec<(ResourceKind, String)>,
    pub at: u64,
}

impl ForcedRemoval {
    pub fn key(&self) -> PublicationKey {
        PublicationKey {
            project: self.project.clone(),
            app: self.app.clone(),
            node: self.node.clone(),
        }
    }
}

/// What a project holds in the controller, as `kind/name` (apps as `apps/name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectHoldings {
    pub apps: Vec<String>,
    pub resources: Vec<(ResourceKind, String)>,
}

impl ProjectHoldings {
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.resources.is_empty()
    }

    /// `apps/web, configmaps/settings`.
    pub fn names(&self) -> Vec<String> {
        let apps = self.apps.iter().map(|a| format!("apps/{a}"));
        let res = self.resources.iter().map(|(k, n)| format!("{k}/{n}"));
        apps.chain(res).collect()
    }
}

/// What a purge dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPurge {
    pub holdings: ProjectHoldings,
    /// One per node something of the project was published on.
    pub tombstones: Vec<ForcedRemoval>,
}

/// A publication change the store recorded in the transaction that made it,
/// waiting to be passed on. `seq` orders the changes (and is what an
/// acknowledgment names); `id` is unique to the change, for receivers to
/// drop one they were given twice (passing on is at least once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChange {
    pub seq: u64,
    pub id: String,
    pub change: PublicationChange,
}
