//! A cluster's EIP pool: the addresses pool EIPs on its nodes are given,
//! written as a CIDR or a range, and the pure choice of the next free one.
//!
//! Owns: parsing and walking a pool. Must not touch: who holds which address
//! (see `store::eips`).

use std::collections::BTreeSet;
use std::net::IpAddr;

/// A cluster's EIP pool: `10.0.0.0/28` (every address in it) or
/// `10.0.0.10-10.0.0.20` (inclusive), IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EipPool {
    first: IpAddr,
    last: IpAddr,
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v4: bool, n: u128) -> Option<IpAddr> {
    if v4 {
        u32::try_from(n)
            .ok()
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::from(n)))
    } else {
        Some(IpAddr::V6(std::net::Ipv6Addr::from(n)))
    }
}

impl EipPool {
    pub fn parse(s: &str) -> Result<EipPool, String> {
        let s = s.trim();
        let bad =
            || format!("{s:?} is neither a CIDR (10.0.0.0/28) nor a range (10.0.0.10-10.0.0.20)");
        if let Some((a, b)) = s.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if first.is_ipv4() != last.is_ipv4() || to_u128(first) > to_u128(last) {
                return Err(format!(
                    "{s:?}: the range must go up, within one address family"
                ));
            }
            return Ok(EipPool { first, last });
        }
        let (a, bits) = s.split_once('/').ok_or_else(bad)?;
        let base: IpAddr = a.parse().map_err(|_| bad())?;
        let width: u32 = if base.is_ipv4() { 32 } else { 128 };
        let bits: u32 = bits.parse().ok().filter(|b| *b <= width).ok_or_else(bad)?;
        let host_bits = width - bits;
        let mask: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let start = to_u128(base) & !mask;
        let end = start | mask;
        let v4 = base.is_ipv4();
        Ok(EipPool {
            first: from_u128(v4, start).ok_or_else(bad)?,
            last: from_u128(v4, end).ok_or_else(bad)?,
        })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.first.is_ipv4()
            && (to_u128(self.first)..=to_u128(self.last)).contains(&to_u128(a))
    }

    /// The lowest address of the pool not in `used`; `None` when all are.
    pub fn next_free(&self, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        let v4 = self.first.is_ipv4();
        let (mut n, last) = (to_u128(self.first), to_u128(self.last));
        loop {
            let a = from_u128(v4, n)?;
            if !used.contains(&a) {
                return Some(a);
            }
            if n == last {
                return None;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn pools_parse_as_cidr_or_range_and_allocate_the_lowest_free() {
        let p = EipPool::parse("10.0.0.0/30").expect("cidr");
        assert!(p.contains(ip("10.0.0.3")) && !p.contains(ip("10.0.0.4")));
        let mut used = BTreeSet::new();
        for want in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            let a = p.next_free(&used).expect("free");
            assert_eq!(a, ip(want));
            used.insert(a);
        }
        assert_eq!(p.next_free(&used), None, "exhausted");
        used.remove(&ip("10.0.0.1"));
        assert_eq!(p.next_free(&used), Some(ip("10.0.0.1")), "freed again");
        let r = EipPool::parse("192.0.2.10-192.0.2.11").expect("range");
        assert_eq!(r.next_free(&BTreeSet::new()), Some(ip("192.0.2.10")));
        assert!(!r.contains(ip("192.0.2.12")));
        assert!(EipPool::parse("2001:db8::/126").is_ok());
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-2001:db8::1",
            "x",
        ] {
            assert!(EipPool::parse(bad).is_err(), "{bad}");
        }
    }
}
