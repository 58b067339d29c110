//! The reconcilers run on one replica at a time: the scheduler runs while
//! this replica leads (`Leadership`), its reconciles writing through the
//! store fenced with the term's epoch, and stops as soon as a renewal says
//! the term is over (another replica's writes are the ones that count then;
//! ours in flight are refused by the store).
//!
//! Owns: waiting for a term, renewing it, and stopping the scheduler when it
//! ends. Must not touch: how leadership is decided (the port's
//! implementation) or what a reconcile does.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::scheduler::{self, Wake};
use super::Context;
use crate::ports::{Leadership, Term};

/// Runs the reconcile loop while this replica leads, until `shutdown`
/// resolves (then resigns). A follower drops triggers: a new leader scans
/// every publication when its term starts.
pub async fn run_while_leader(
    ctx: Arc<Context>,
    leadership: Arc<dyn Leadership>,
    mut trigger: mpsc::UnboundedReceiver<Wake>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let mut renew = tokio::time::interval(leadership.renew_every());
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let term = tokio::select! {
            _ = &mut shutdown => return,
            Some(_) = trigger.recv() => continue,
            _ = renew.tick() => match leadership.lead().await {
                Ok(Some(term)) => term,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask for the controller's leadership");
                    continue;
                }
            },
        };
        tracing::info!(epoch = term.epoch, "leading the controller's reconcilers");
        let fenced = Arc::new(ctx.with_store(ctx.store.fenced(term.epoch)));
        let shut_down = lead(
            fenced,
            &*leadership,
            term,
            &mut trigger,
            &mut renew,
            &mut shutdown,
        )
        .await;
        if shut_down {
            leadership.resign().await;
            return;
        }
        tracing::warn!(
            epoch = term.epoch,
            "no longer leading the controller's reconcilers"
        );
    }
}

/// Runs the scheduler for `term` until it ends or `shutdown` resolves
/// (`true`), draining it either way.
async fn lead(
    ctx: Arc<Context>,
    leadership: &dyn Leadership,
    term: Term,
    trigger: &mut mpsc::UnboundedReceiver<Wake>,
    renew: &mut tokio::time::Interval,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut stop = Some(stop);
    let run = scheduler::run(ctx, trigger, async move {
        let _ = stopped.await;
    });
    tokio::pin!(run);
    let mut shut_down = false;
    loop {
        tokio::select! {
            _ = &mut run => return shut_down,
            _ = shutdown.as_mut(), if stop.is_some() && !shut_down => {
                shut_down = true;
                stop.take().map(|s| s.send(()));
            }
            _ = renew.tick(), if stop.is_some() => {
                match leadership.lead().await {
                    Ok(Some(t)) if t == term => {}
                    other => {
                        if let Err(e) = other {
                            tracing::warn!(error = %e, "could not renew the controller's leadership");
                        }
                        stop.take().map(|s| s.send(()));
                    }
                }
            }
        }
    }
}
