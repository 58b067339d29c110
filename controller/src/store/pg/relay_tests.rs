//! The relay between replicas on a real database: what one sends, the other
//! hears (and the sender does not), and a listener whose connection is cut
//! says `Listening` again once it is back, so the leader resyncs.

use std::time::Duration;

use tokio::sync::mpsc;

use super::tests::{database, pool};
use super::PgRelay;
use crate::model::PublicationKey;
use crate::ports::{Relay, RelaySignal, Relayed};
use crate::resources::PublicationRef;

/// The next signal, within a generous bound.
async fn next(rx: &mut mpsc::Receiver<RelaySignal>) -> RelaySignal {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a signal within 30 s")
        .expect("the listener runs")
}

fn key(node: &str) -> PublicationKey {
    PublicationKey {
        project: "acme".into(),
        app: "web".into(),
        node: node.into(),
    }
}

#[tokio::test]
async fn what_a_follower_sends_the_leader_hears_also_after_its_connection_is_cut() {
    let url = database().await;
    let (a, b) = (PgRelay::new(pool(&url)), PgRelay::new(pool(&url)));
    let mut heard_a = a.listen(&url).expect("listen");
    let mut heard_b = b.listen(&url).expect("listen");
    assert_eq!(next(&mut heard_a).await, RelaySignal::Listening);
    assert_eq!(next(&mut heard_b).await, RelaySignal::Listening);

    let wake = Relayed::Wake(PublicationRef::App(key("n1")));
    a.send(wake.clone());
    assert_eq!(next(&mut heard_b).await, RelaySignal::Message(wake));
    let report = Relayed::Report {
        key: key("n2"),
        job: r#"{"id":"j1","state":"done","bytes_done":1,"bytes_total":1}"#.into(),
    };
    a.send(report.clone());
    assert_eq!(next(&mut heard_b).await, RelaySignal::Message(report));

    // b's listening connection is cut (a restarted database, a network
    // blip): it comes back and says so, and hears what is sent after.
    let admin = pool(&url).get().await.expect("connection");
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'berth controller listener' AND datname = current_database()",
            &[],
        )
        .await
        .expect("terminating the listeners");
    assert!(cut >= 1, "the listeners' connections were found");
    assert_eq!(next(&mut heard_b).await, RelaySignal::Listening);
    let again = Relayed::Wake(PublicationRef::App(key("n3")));
    a.send(again.clone());
    assert_eq!(next(&mut heard_b).await, RelaySignal::Message(again));

    // a never hears itself: once back, the next thing it hears is b's.
    assert_eq!(next(&mut heard_a).await, RelaySignal::Listening);
    let from_b = Relayed::Wake(PublicationRef::App(key("n4")));
    b.send(from_b.clone());
    assert_eq!(next(&mut heard_a).await, RelaySignal::Message(from_b));
}
