//! Elastic IPs as the manual describes them: an address rule (a static
//! address, or one allocated per node from the pool of the node's cluster),
//! and a container side (a load balancer's Service, a static container IP, or
//! a selector that binds the EIP to one app's single container instance).
//!
//! Owns: the EIP spec and its validation (address pools are a property of
//! the cluster: `model::EipPool`). Must not touch: where allocations are
//! recorded (see `store::eips`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{validate_dns_label, validate_label_key, validate_label_value};

pub use crate::model::EipPool;

/// An elastic IP (custom resource, see `crds/eip.yaml`). Records written
/// before the address rule and the container side (`address` and
/// `load_balancer`) read as a static address on a load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EipSpec {
    /// A static address; published to one node at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Allocate the address from the pool of the node's cluster, one per node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pool: bool,
    /// The Service of this load balancer receives the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// A static container IP receives the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip: Option<String>,
    /// The one container instance of the app these labels bind (the `app`
    /// label binds an app by name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// Where an EIP's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EipTarget<'a> {
    LoadBalancer(&'a str),
    ContainerIp(&'a str),
    Selector(&'a BTreeMap<String, String>),
}

impl EipSpec {
    /// The container side; `None` only for a spec that failed validation.
    pub fn target(&self) -> Option<EipTarget<'_>> {
        if let Some(lb) = &self.load_balancer {
            Some(EipTarget::LoadBalancer(lb))
        } else if let Some(ip) = &self.container_ip {
            Some(EipTarget::ContainerIp(ip))
        } else if !self.selector.is_empty() {
            Some(EipTarget::Selector(&self.selector))
        } else {
            None
        }
    }

    pub fn load_balancer(&self) -> Option<&str> {
        self.load_balancer.as_deref()
    }

    /// Whether the selector binds app `app`, whose template carries `labels`.
    pub fn binds(&self, app: &str, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty()
            && self.selector.iter().all(|(k, v)| {
                if k == "app" {
                    v == app
                } else {
                    labels.get(k) == Some(v)
                }
            })
    }

    /// The checks of `validate` for an EIP: one address rule, one container side.
    pub fn check(&self, fail: &mut impl FnMut(&str, String)) {
        match (&self.address, self.pool) {
            (Some(_), true) => fail(
                "address",
                "give a static address or \"pool\": true, not both".into(),
            ),
            (None, false) => fail(
                "address",
                "give a static address, or \"pool\": true to allocate one from the cluster's \
                 eip_pool"
                    .into(),
            ),
            (Some(a), false) if a.parse::<IpAddr>().is_err() => {
                fail("address", format!("{a:?} is not an IPv4 or IPv6 address"))
            }
            _ => {}
        }
        let sides = [
            self.load_balancer.is_some(),
            self.container_ip.is_some(),
            !self.selector.is_empty(),
        ];
        if sides.iter().filter(|s| **s).count() != 1 {
            fail(
                "load_balancer",
                "give exactly one container side: load_balancer, container_ip, or selector".into(),
            );
        }
        if let Some(lb) = &self.load_balancer {
            if let Err(m) = validate_dns_label(lb) {
                fail("load_balancer", m);
            }
        }
        if let Some(ip) = &self.container_ip {
            if ip.parse::<IpAddr>().is_err() {
                fail(
                    "container_ip",
                    format!("{ip:?} is not an IPv4 or IPv6 address"),
                );
            }
        }
        for (k, v) in &self.selector {
            if let Err(m) = validate_label_key(k) {
                fail(&format!("selector.{k}"), m);
            }
            if let Err(m) = validate_label_value(v) {
                fail(&format!("selector.{k}"), m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eip_has_one_address_rule_and_one_container_side() {
        let mut problems = Vec::new();
        let ok: EipSpec =
            serde_json::from_str(r#"{"address":"203.0.113.7","load_balancer":"web"}"#)
                .expect("stored shape");
        ok.check(&mut |f, m| problems.push(format!("{f}: {m}")));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ok.target(), Some(EipTarget::LoadBalancer("web")));
        let both: EipSpec = serde_json::from_str(
            r#"{"address":"203.0.113.7","pool":true,"container_ip":"10.1.0.5","selector":{"app":"web"}}"#,
        )
        .expect("json");
        both.check(&mut |f, m| problems.push(format!("{f}: {m}")));
        assert_eq!(problems.len(), 2, "{problems:?}");
        let sel: EipSpec =
            serde_json::from_str(r#"{"pool":true,"selector":{"app":"web"}}"#).expect("json");
        assert!(sel.binds("web", &BTreeMap::new()) && !sel.binds("api", &BTreeMap::new()));
    }
}
