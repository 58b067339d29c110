//! The conformance section of resealing (`ControllerStore::reseal`): every
//! backend must pass it, given a way to open a store over one database
//! with a chosen key (`open`). Values sealed with an old key are sealed
//! again with the current one, read back with the old key gone, and a
//! value no configured key opens is left alone and counted with why.

use std::sync::Arc;

use super::fixtures::*;
use super::ControllerStore;
use crate::model::{Cluster, EdgeCredentials, EdgeToken};
use crate::resources::{ResourceKind, ResourceSpec, SecretSpec};
use crate::sealed_records::RecordSealer;
use crate::secrets::SecretBox;
use crate::store::{KUBECONFIGS, NODE_CREDENTIALS, SECRET_VALUES};

const K1: [u8; 32] = [1; 32];
const K2: [u8; 32] = [2; 32];

fn sealer(b: SecretBox) -> RecordSealer {
    RecordSealer::new(Some(b))
}

fn counts(
    r: &std::collections::BTreeMap<String, crate::secrets::ResealCount>,
) -> Vec<(u64, u64, usize)> {
    [SECRET_VALUES, KUBECONFIGS, NODE_CREDENTIALS]
        .iter()
        .map(|k| {
            let c = &r[*k];
            (c.resealed, c.current, c.failed.len())
        })
        .collect()
}

async fn cluster(s: &dyn ControllerStore, name: &str) {
    s.create_cluster(&Cluster {
        name: name.into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
}

pub(crate) async fn resealing(open: &dyn Fn(RecordSealer) -> Arc<dyn ControllerStore>) {
    let old = open(sealer(SecretBox::new(&K1)));
    cluster(old.as_ref(), "edge").await;
    let mut n1 = node("n1");
    n1.edge_credentials = Some(EdgeCredentials {
        user: "ctl".into(),
        password: "edge-pass".into(),
    });
    n1.edge_controller_token = Some(EdgeToken("edge-token".into()));
    old.create_node(&mut n1).await.expect("node");
    let value = SecretBox::new(&K1)
        .seal("shop/db/password", b"hunter2")
        .expect("seal");
    let spec = SecretSpec {
        data: [("password".to_string(), value)].into(),
    };
    old.create_resource(&resource(
        "db",
        ResourceKind::Secrets,
        ResourceSpec::Secret(spec),
    ))
    .await
    .expect("secret");

    let rotated = open(sealer(SecretBox::with_previous(&K2, &[K1])));
    assert_eq!(
        rotated.get_node("n1").await.expect("read").as_ref(),
        Some(&n1)
    );
    let report = rotated.reseal().await.expect("reseal");
    assert_eq!(counts(&report), vec![(1, 0, 0), (1, 0, 0), (2, 0, 0)]);
    let again = rotated.reseal().await.expect("reseal");
    assert_eq!(
        counts(&again),
        vec![(0, 1, 0), (0, 1, 0), (0, 2, 0)],
        "nothing left"
    );

    // The old key dropped: everything opens with the new one alone.
    let new = open(sealer(SecretBox::new(&K2)));
    let c = new
        .get_cluster("edge")
        .await
        .expect("read")
        .expect("cluster");
    assert_eq!(c.kubeconfig, KC);
    assert_eq!(new.get_node("n1").await.expect("read"), Some(n1.clone()));
    let r = new
        .get_resource("shop", ResourceKind::Secrets, "db")
        .await
        .expect("read")
        .expect("secret");
    let ResourceSpec::Secret(spec) = r.spec else {
        panic!("not a secret: {:?}", r.spec)
    };
    let plain = SecretBox::new(&K2).open("shop/db/password", &spec.data["password"]);
    assert_eq!(plain.expect("opens with the new key"), b"hunter2");

    // Sealed with a key that is not configured: left alone, and said why.
    cluster(old.as_ref(), "far").await;
    let lost = new.reseal().await.expect("reseal");
    let failed = &lost[KUBECONFIGS].failed;
    assert_eq!(failed.len(), 1, "{lost:?}");
    assert!(failed[0].contains("cluster/far/kubeconfig"), "{failed:?}");
    assert!(failed[0].contains("previous_secret_keys"), "{failed:?}");
    let far = old.get_cluster("far").await.expect("read").expect("far");
    assert_eq!(far.kubeconfig, KC, "unchanged");
}
