//! Cluster and node records as they lie in the database: the credentials they
//! carry (a cluster's kubeconfig, a node's edge password) sealed with the key
//! that seals secret values (`secrets::SecretBox`), bound to their record.
//!
//! Owns: the stored JSON form of `Cluster` and `Node`, and the one-time sealing
//! of records written in the clear by earlier releases. Must not touch: tables,
//! transactions or HTTP (the store calls it with bytes).
//!
//! Stored form (plain fields as in the model, credentials replaced):
//!
//! ```text
//! Cluster: { name, created_at, kubeconfig_sealed: {nonce, ciphertext} }
//! Node:    { name, cluster, ..., edge_credentials_sealed: {user, password: {nonce, ciphertext}} }
//! ```
//!
//! A record that still holds its credential in the clear (written before sealing
//! existed, or by a store opened without a key) is read as it is and sealed by
//! `RedbControllerStore::open` when a key is configured.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Cluster, EdgeCredentials, Node};
use crate::resources::SealedValue;
use crate::secrets::{ResealCount, SecretBox};

const KUBECONFIG: &str = "kubeconfig";
const KUBECONFIG_SEALED: &str = "kubeconfig_sealed";
const EDGE_CREDENTIALS: &str = "edge_credentials";
const EDGE_CREDENTIALS_SEALED: &str = "edge_credentials_sealed";
const EDGE_TOKEN: &str = "edge_controller_token";
const EDGE_TOKEN_SEALED: &str = "edge_controller_token_sealed";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Crypto(String),
    #[error(
        "the record holds a sealed credential, but this berth has no sealing key: configure \
         controller.secret_key (or restore <data-dir>/controller-secret.key)"
    )]
    NoKey,
}

#[derive(Serialize, Deserialize)]
struct SealedEdgeCredentials {
    user: String,
    password: SealedValue,
}

/// Seals and opens the credential fields of stored records; without a key,
/// records are written and read in the clear.
#[derive(Clone, Default)]
pub struct RecordSealer {
    key: Option<SecretBox>,
}

fn kubeconfig_place(cluster: &str) -> String {
    format!("cluster/{cluster}/kubeconfig")
}

fn edge_password_place(node: &str) -> String {
    format!("node/{node}/edge_password")
}

fn edge_token_place(node: &str) -> String {
    format!("node/{node}/edge_controller_token")
}

fn to_object<T: Serialize>(v: &T) -> Result<Map<String, Value>, SealError> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SealError::Format("record is not a JSON object".into())),
        Err(e) => Err(SealError::Format(e.to_string())),
    }
}

fn from_object<T: DeserializeOwned>(m: Map<String, Value>) -> Result<T, SealError> {
    serde_json::from_value(Value::Object(m)).map_err(|e| SealError::Format(e.to_string()))
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, SealError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SealError::Format("record is not a JSON object".into())),
        Err(e) => Err(SealError::Format(e.to_string())),
    }
}

impl RecordSealer {
    pub fn new(key: Option<SecretBox>) -> Self {
        RecordSealer { key }
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The key, for the store to reseal the values it keeps elsewhere.
    pub fn key(&self) -> Option<&SecretBox> {
        self.key.as_ref()
    }

    /// A stored cluster or node record with its sealed credentials sealed
    /// again with the current key; `None` when none needed it (or there
    /// is no key). Each credential is counted in `count`.
    pub fn reseal_record(
        &self,
        bytes: &[u8],
        count: &mut ResealCount,
    ) -> Result<Option<Vec<u8>>, SealError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let mut m = parse_object(bytes)?;
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut moved = false;
        let mut one = |value: &mut Value, place: String| -> Result<(), SealError> {
            let sealed: SealedValue = serde_json::from_value(value.clone())
                .map_err(|e| SealError::Format(e.to_string()))?;
            if let Some(new) = count.one(key.reseal(&place, &sealed)) {
                *value = serde_json::to_value(new).map_err(|e| SealError::Format(e.to_string()))?;
                moved = true;
            }
            Ok(())
        };
        if let Some(v) = m.get_mut(KUBECONFIG_SEALED) {
            one(v, kubeconfig_place(&name))?;
        }
        if let Some(v) = m
            .get_mut(EDGE_CREDENTIALS_SEALED)
            .and_then(|c| c.get_mut("password"))
        {
            one(v, edge_password_place(&name))?;
        }
        if let Some(v) = m.get_mut(EDGE_TOKEN_SEALED) {
            one(v, edge_token_place(&name))?;
        }
        if !moved {
            return Ok(None);
        }
        serde_json::to_vec(&m)
            .map(Some)
            .map_err(|e| SealError::Format(e.to_string()))
    }

    fn seal(&self, place: &str, plain: &str) -> Result<Option<Value>, SealError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let sealed = key
            .seal(place, plain.as_bytes())
            .map_err(|e| SealError::Crypto(e.to_string()))?;
        serde_json::to_value(sealed)
            .map(Some)
            .map_err(|e| SealError::Format(e.to_string()))
    }

    fn open(&self, place: &str, sealed: Value) -> Result<String, SealError> {
        let key = self.key.as_ref().ok_or(SealError::NoKey)?;
        let sealed: SealedValue =
            serde_json::from_value(sealed).map_err(|e| SealError::Format(e.to_string()))?;
        let plain = key
            .open(place, &sealed)
            .map_err(|e| SealError::Crypto(e.to_string()))?;
        String::from_utf8(plain).map_err(|_| SealError::Crypto(format!("{place} is not UTF-8")))
    }

    pub fn encode_cluster(&self, c: &Cluster) -> Result<Vec<u8>, SealError> {
        let mut m = to_object(c)?;
        if let Some(sealed) = self.seal(&kubeconfig_place(&c.name), &c.kubeconfig)? {
            m.remove(KUBECONFIG);
            m.insert(KUBECONFIG_SEALED.into(), sealed);
        }
        serde_json::to_vec(&m).map_err(|e| SealError::Format(e.to_string()))
    }

    pub fn decode_cluster(&self, bytes: &[u8]) -> Result<Cluster, SealError> {
        let mut m = parse_object(bytes)?;
        if let Some(sealed) = m.remove(KUBECONFIG_SEALED) {
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
            let plain = self.open(&kubeconfig_place(name), sealed)?;
            m.insert(KUBECONFIG.into(), Value::String(plain));
        }
        from_object(m)
    }

    pub fn encode_node(&self, n: &Node) -> Result<Vec<u8>, SealError> {
        let mut m = to_object(n)?;
        if let Some(cred) = &n.edge_credentials {
            if let Some(password) = self.seal(&edge_password_place(&n.name), &cred.password)? {
                m.remove(EDGE_CREDENTIALS);
                let sealed = serde_json::json!({ "user": cred.user, "password": password });
                m.insert(EDGE_CREDENTIALS_SEALED.into(), sealed);
            }
        }
        if let Some(token) = &n.edge_controller_token {
            if let Some(sealed) = self.seal(&edge_token_place(&n.name), &token.0)? {
                m.remove(EDGE_TOKEN);
                m.insert(EDGE_TOKEN_SEALED.into(), sealed);
            }
        }
        serde_json::to_vec(&m).map_err(|e| SealError::Format(e.to_string()))
    }

    pub fn decode_node(&self, bytes: &[u8]) -> Result<Node, SealError> {
        let mut m = parse_object(bytes)?;
        if let Some(sealed) = m.remove(EDGE_CREDENTIALS_SEALED) {
            let sealed: SealedEdgeCredentials =
                serde_json::from_value(sealed).map_err(|e| SealError::Format(e.to_string()))?;
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
            let password = self.open(
                &edge_password_place(name),
                serde_json::to_value(sealed.password)
                    .map_err(|e| SealError::Format(e.to_string()))?,
            )?;
            let cred = EdgeCredentials {
                user: sealed.user,
                password,
            };
            m.insert(
                EDGE_CREDENTIALS.into(),
                serde_json::to_value(cred).map_err(|e| SealError::Format(e.to_string()))?,
            );
        }
        if let Some(sealed) = m.remove(EDGE_TOKEN_SEALED) {
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
            let token = self.open(&edge_token_place(name), sealed)?;
            m.insert(EDGE_TOKEN.into(), Value::String(token));
        }
        from_object(m)
    }

    /// True when a stored cluster or node record still carries a credential in
    /// the clear and a key is at hand to seal it.
    pub fn needs_sealing(&self, bytes: &[u8]) -> bool {
        if self.key.is_none() {
            return false;
        }
        match parse_object(bytes) {
            Ok(m) => {
                m.get(KUBECONFIG).is_some_and(Value::is_string)
                    || m.get(EDGE_CREDENTIALS).is_some_and(Value::is_object)
                    || m.get(EDGE_TOKEN).is_some_and(Value::is_string)
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: s3cr3t-token\n";

    fn cluster() -> Cluster {
        Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            eip_pool: None,
            created_at: 7,
        }
    }

    fn node() -> Node {
        Node {
            name: "n1".into(),
            cluster: "edge".into(),
            k8s_node_name: "n1".into(),
            labels: Default::default(),
            edge_url: "http://127.0.0.1:5001".into(),
            edge_credentials: Some(EdgeCredentials {
                user: "ctl".into(),
                password: "edge-pass-42".into(),
            }),
            edge_controller_token: Some(crate::model::EdgeToken("ctl-token-77".into())),
            created_at: 1,
        }
    }

    #[test]
    fn cluster_kubeconfig_is_sealed_and_bound_to_its_cluster() {
        let s = RecordSealer::new(Some(SecretBox::new(&[3u8; 32])));
        let bytes = s.encode_cluster(&cluster()).expect("encode");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cr3t-token"), "{text}");
        assert!(!s.needs_sealing(&bytes));
        assert_eq!(s.decode_cluster(&bytes).expect("decode"), cluster());
        // Moved under another name, it no longer opens.
        let moved = text.replace("\"edge\"", "\"other\"");
        assert!(s.decode_cluster(moved.as_bytes()).is_err());
        // Another key cannot open it; no key says what is missing.
        let other = RecordSealer::new(Some(SecretBox::new(&[4u8; 32])));
        assert!(matches!(
            other.decode_cluster(&bytes),
            Err(SealError::Crypto(_))
        ));
        assert!(matches!(
            RecordSealer::default().decode_cluster(&bytes),
            Err(SealError::NoKey)
        ));
    }

    #[test]
    fn node_edge_password_is_sealed() {
        let s = RecordSealer::new(Some(SecretBox::new(&[3u8; 32])));
        let bytes = s.encode_node(&node()).expect("encode");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("edge-pass-42"), "{text}");
        assert!(!text.contains("ctl-token-77"), "{text}");
        assert!(text.contains("\"ctl\""), "the user name stays readable");
        assert_eq!(s.decode_node(&bytes).expect("decode"), node());
        // Readers that only need the node's name and cluster can decode it raw.
        let raw: Node = serde_json::from_slice(&bytes).expect("raw");
        assert_eq!(raw.cluster, "edge");
        assert!(raw.edge_credentials.is_none());
    }

    #[test]
    fn records_are_resealed_with_the_current_key() {
        let old = RecordSealer::new(Some(SecretBox::new(&[3u8; 32])));
        let cluster_bytes = old.encode_cluster(&cluster()).expect("encode");
        let node_bytes = old.encode_node(&node()).expect("encode");
        let new = RecordSealer::new(Some(SecretBox::with_previous(&[4u8; 32], &[[3u8; 32]])));
        let mut count = ResealCount::default();
        let c = new
            .reseal_record(&cluster_bytes, &mut count)
            .expect("reseal")
            .expect("moved");
        let n = new
            .reseal_record(&node_bytes, &mut count)
            .expect("reseal")
            .expect("moved");
        assert_eq!((count.resealed, count.current), (3, 0), "{count:?}");
        let only_new = RecordSealer::new(Some(SecretBox::new(&[4u8; 32])));
        assert_eq!(only_new.decode_cluster(&c).expect("decode"), cluster());
        assert_eq!(only_new.decode_node(&n).expect("decode"), node());
        let mut again = ResealCount::default();
        assert!(new.reseal_record(&c, &mut again).expect("reseal").is_none());
        assert_eq!(again.current, 1);
        // With the old key gone, the record stays and the count says why.
        let mut lost = ResealCount::default();
        assert!(only_new
            .reseal_record(&node_bytes, &mut lost)
            .expect("reseal")
            .is_none());
        assert_eq!(lost.failed.len(), 2, "{lost:?}");
        assert!(lost.failed[0].contains("previous_secret_keys"), "{lost:?}");
    }

    #[test]
    fn clear_records_of_earlier_releases_are_read_and_flagged() {
        let plain_cluster = serde_json::to_vec(&cluster()).expect("json");
        let plain_node = serde_json::to_vec(&node()).expect("json");
        let s = RecordSealer::new(Some(SecretBox::new(&[3u8; 32])));
        assert!(s.needs_sealing(&plain_cluster));
        assert!(s.needs_sealing(&plain_node));
        assert_eq!(s.decode_cluster(&plain_cluster).expect("read"), cluster());
        assert_eq!(s.decode_node(&plain_node).expect("read"), node());
        let mut no_creds = node();
        no_creds.edge_credentials = None;
        let bytes = serde_json::to_vec(&no_creds).expect("json");
        assert!(
            s.needs_sealing(&bytes),
            "the controller token alone is a credential"
        );
        no_creds.edge_controller_token = None;
        let bytes = serde_json::to_vec(&no_creds).expect("json");
        assert!(!s.needs_sealing(&bytes));
        assert!(!RecordSealer::default().needs_sealing(&plain_cluster));
    }
}
