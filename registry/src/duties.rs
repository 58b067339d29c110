//! Background duties that must run in one process at a time when several
//! `berth serve` replicas share one database: the GC and retention
//! schedules, a GC run itself (asked for or scheduled), the replication
//! schedule with the resumption of interrupted executions, webhook
//! delivery, and proxy-cache expiry.
//!
//! `Duties` answers whether this process holds a duty now, taking it when
//! it is free. The embedded database has one process, which holds them all
//! (`Solo`). On PostgreSQL a duty is a session advisory lock on a
//! connection of its own (`meta::pg::PgDuties`): a replica that dies, or
//! loses that connection, gives its duties up with it, and another takes
//! them at its next check. What a duty guards stays correct if two
//! processes ever overlap (GC's sweep re-checks under the metadata's write
//! lock; deliveries are at least once): the duty saves the work twice and
//! keeps schedules from firing once per replica.

use async_trait::async_trait;

/// One background duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Duty {
    /// Running a garbage collection (held for the run).
    Gc,
    /// Firing the GC schedule.
    GcSchedule,
    /// Firing the retention schedule.
    RetentionSchedule,
    /// Firing replication schedules, resuming interrupted executions.
    Replication,
    /// Delivering webhook events.
    WebhookDelivery,
    /// Expiring proxy-cache projects' content.
    ProxyExpiry,
}

impl Duty {
    pub const ALL: [Duty; 6] = [
        Duty::Gc,
        Duty::GcSchedule,
        Duty::RetentionSchedule,
        Duty::Replication,
        Duty::WebhookDelivery,
        Duty::ProxyExpiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Duty::Gc => "gc",
            Duty::GcSchedule => "gc-schedule",
            Duty::RetentionSchedule => "retention-schedule",
            Duty::Replication => "replication",
            Duty::WebhookDelivery => "webhook-delivery",
            Duty::ProxyExpiry => "proxy-expiry",
        }
    }

    /// The advisory-lock key: "berthD" and the duty's number, so that no
    /// other lock of berth's (or of anything sharing the database) collides.
    pub fn lock_key(self) -> i64 {
        let n = Duty::ALL.iter().position(|d| *d == self).unwrap_or(0) as i64;
        0x6265_7274_6844_0000 + n
    }
}

/// Whether this process holds a duty.
#[async_trait]
pub trait Duties: Send + Sync + 'static {
    /// True when this process holds `duty`, taking it if no one does. A
    /// duty taken is kept until `release` or until the process dies.
    async fn hold(&self, duty: Duty) -> bool;
    /// Gives `duty` up, so another process may take it.
    async fn release(&self, duty: Duty);
}

/// One process: every duty is its own.
pub struct Solo;

#[async_trait]
impl Duties for Solo {
    async fn hold(&self, _duty: Duty) -> bool {
        true
    }
    async fn release(&self, _duty: Duty) {}
}
