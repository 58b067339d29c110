//! The registry's tables on PostgreSQL (component "registry" in
//! `berth_schema`), as migration steps: a step once released never
//! changes; a change is a new step at the end.
//!
//! Names, digests and tags are `text COLLATE "C"`, so that listings sort
//! byte-wise as the embedded store's do (and the OCI pagination expects),
//! whatever collation the database was created with. Sizes and Unix
//! seconds are `bigint` (a `u64` above `i64::MAX` is clamped: no blob or
//! date reaches it); manifest content is `bytea`; records whose shape is
//! the API's (a webhook's sealed secret, a replication policy, an
//! execution, a GC run, a retention policy, a manifest's summary) are
//! `jsonb` beside the columns that are queried.

use super::Migrations;

/// The registry's schema. Step 1: everything `MetaStore` and `CacheBook`
/// keep. Step 2: a webhook's previous secret during a rotation's overlap.
pub const MIGRATIONS: Migrations = Migrations {
    component: "registry",
    steps: &[V1, V2],
};

/// A rotated-out webhook secret, `{"secret": <sealed>, "until": <Unix s>}`,
/// while it still signs beside the new one; NULL otherwise.
const V2: &str = r#"
ALTER TABLE webhooks ADD COLUMN previous jsonb;
"#;

const V1: &str = r#"
CREATE TABLE repos (
    name text COLLATE "C" PRIMARY KEY,
    created_at bigint NOT NULL
);

-- The CAS index: every blob whose bytes are in the content store.
CREATE TABLE blobs (
    digest text COLLATE "C" PRIMARY KEY,
    size bigint NOT NULL,
    recorded_at bigint NOT NULL
);

-- What a repository may serve; the index on digest answers GC's
-- "linked anywhere?".
CREATE TABLE repo_blobs (
    repo text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    linked_at bigint NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_by_digest ON repo_blobs (digest);

-- Manifest content, shared by the repositories that hold it.
CREATE TABLE manifest_contents (
    digest text COLLATE "C" PRIMARY KEY,
    bytes bytea NOT NULL,
    summary jsonb NOT NULL
);

-- An index's children, for "which indexes list this manifest".
CREATE TABLE manifest_children (
    parent text COLLATE "C" NOT NULL REFERENCES manifest_contents (digest) ON DELETE CASCADE,
    child text COLLATE "C" NOT NULL,
    PRIMARY KEY (parent, child)
);
CREATE INDEX manifest_children_by_child ON manifest_children (child);

-- Manifests in a repository; the index on digest answers "held anywhere?".
CREATE TABLE manifests (
    repo text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    media_type text NOT NULL,
    pushed_at bigint NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_digest ON manifests (digest);

CREATE TABLE tags (
    repo text COLLATE "C" NOT NULL,
    tag text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE referrers (
    repo text COLLATE "C" NOT NULL,
    subject text COLLATE "C" NOT NULL,
    referrer text COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, subject, referrer)
);

-- What a project holds (a digest counts once however many links and
-- manifests hold it) and the sum of its sizes.
CREATE TABLE project_content (
    project text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    holders bigint NOT NULL,
    PRIMARY KEY (project, digest)
);
CREATE TABLE project_usage (
    project text COLLATE "C" PRIMARY KEY,
    bytes bigint NOT NULL
);
-- Storage limits: project '' is the registry default; bytes NULL: unlimited.
CREATE TABLE quota_limits (
    project text COLLATE "C" PRIMARY KEY,
    bytes bigint
);
CREATE TABLE immutable_rules (
    project text COLLATE "C" NOT NULL,
    pattern text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (project, pattern)
);
CREATE TABLE retention_policies (
    project text COLLATE "C" PRIMARY KEY,
    policy jsonb NOT NULL
);

CREATE TABLE pulls (
    repo text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    count bigint NOT NULL,
    last_pulled_at bigint NOT NULL,
    PRIMARY KEY (repo, digest)
);

CREATE TABLE gc_runs (
    id bigint PRIMARY KEY,
    started_at bigint NOT NULL,
    finished_at bigint NOT NULL,
    outcome text NOT NULL,
    run jsonb NOT NULL
);

-- Webhook endpoints; next_seq numbers the endpoint's next event.
CREATE TABLE webhooks (
    id text COLLATE "C" PRIMARY KEY,
    project text COLLATE "C" NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    enabled boolean NOT NULL,
    secret jsonb NOT NULL,
    created_at bigint NOT NULL,
    next_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_by_project ON webhooks (project);
-- The outbox: an endpoint's queue is its rows in seq order, head first.
CREATE TABLE webhook_queue (
    webhook text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    body bytea NOT NULL,
    attempts bigint NOT NULL,
    next_attempt_at bigint NOT NULL,
    PRIMARY KEY (webhook, seq)
);
CREATE TABLE webhook_log (
    webhook text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    subject text NOT NULL,
    status text NOT NULL,
    attempts bigint NOT NULL,
    response_code integer,
    error text,
    enqueued_at bigint NOT NULL,
    last_attempt_at bigint,
    PRIMARY KEY (webhook, seq)
);

CREATE TABLE replication_policies (
    name text COLLATE "C" PRIMARY KEY,
    policy jsonb NOT NULL
);
-- Executions are kept by policy name (an execution of a policy not saved
-- is allowed, as in the embedded store); deleting a policy deletes them.
CREATE TABLE replication_executions (
    policy text COLLATE "C" NOT NULL,
    id bigint NOT NULL,
    status text NOT NULL,
    started_at bigint NOT NULL,
    execution jsonb NOT NULL,
    PRIMARY KEY (policy, id)
);

-- A pull-through cache's bookkeeping (CacheBook).
CREATE TABLE cache_tag_fetched (
    owner text NOT NULL,
    repo text COLLATE "C" NOT NULL,
    tag text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    PRIMARY KEY (owner, repo, tag)
);
CREATE TABLE cache_access (
    digest text COLLATE "C" PRIMARY KEY,
    at_ms bigint NOT NULL
);
CREATE TABLE cache_pins (
    image text COLLATE "C" NOT NULL,
    digest text COLLATE "C" NOT NULL,
    PRIMARY KEY (image, digest)
);
CREATE TABLE cache_jobs (
    id text COLLATE "C" PRIMARY KEY,
    job bytea NOT NULL
);
"#;
