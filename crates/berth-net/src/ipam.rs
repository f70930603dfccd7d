//! IP address management: address pools, the choice of a new network's subnet, and the
//! allocation of addresses within a subnet.
//!
//! - **Pools.** A pool is a base prefix cut into subnets of one size (Docker's
//!   `default-address-pools`). The default, `100.72.0.0/13` in /24s, lies in RFC 6598's
//!   shared address space: not one of the RFC 1918 ranges (10/8, 172.16/12, 192.168/16)
//!   that corporate networks and cloud VPCs number themselves from, and not routed on the
//!   internet. Docker's 172.17.0.0/16 is the classic collision. A subnet that overlaps a
//!   route or address of the host (a VPN, a cloud VPC, a carrier-grade NAT uplink) is
//!   skipped when a network is created.
//! - **Allocation.** Sequential with a cursor: the next free address after the last one
//!   handed out, wrapping around. An address released by a container is therefore not
//!   handed out again until the whole range has been used (no stale ARP or conntrack
//!   entry points at a newcomer). The engine persists the cursor and the addresses in
//!   use; this type is the arithmetic.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A base prefix cut into subnets of `size` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub base: Ipv4Net,
    pub size: u8,
}

impl Pool {
    /// Checks that the pool can be cut: `size` at least the base's prefix and at most /30
    /// (a network address, a gateway, one container and a broadcast address).
    pub fn validate(&self) -> Result<()> {
        if self.size < self.base.prefix_len() || self.size > 30 {
            return Err(Error::invalid(
                format!("address pool {}", self.base),
                format!(
                    "size /{} must lie between the base's /{} and /30",
                    self.size,
                    self.base.prefix_len()
                ),
            ));
        }
        if self.base.trunc() != self.base {
            return Err(Error::invalid(
                format!("address pool {}", self.base),
                format!(
                    "the base is not a network address (did you mean {}?)",
                    self.base.trunc()
                ),
            ));
        }
        Ok(())
    }
}

/// berth's default pools: `100.72.0.0/13` cut into /24s (2048 networks).
pub fn default_pools() -> Vec<Pool> {
    vec![Pool {
        base: Ipv4Net::new(Ipv4Addr::new(100, 72, 0, 0), 13).unwrap_or_default(),
        size: 24,
    }]
}

/// Whether two prefixes share an address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of `pools`, in order, that overlaps none of `taken` (other networks'
/// subnets, the host's routes and addresses).
pub fn choose_subnet(pools: &[Pool], taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    for pool in pools {
        pool.validate()?;
        let Ok(subnets) = pool.base.subnets(pool.size) else {
            continue;
        };
        for s in subnets {
            if !taken.iter().any(|t| overlaps(t, &s)) {
                return Ok(s);
            }
        }
    }
    Err(Error::unavailable(
        "address pools",
        format!(
            "all predefined address pools have been fully subnetted ({}); remove unused networks or add pools (address_pools in the daemon config)",
            pools
                .iter()
                .map(|p| format!("{}/{}", p.base, p.size))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// The host's IPv4 routes of the main table, as (interface, destination); they include
/// the subnets of its addresses. From `/proc/net/route`; the default route (0.0.0.0/0) is
/// left out.
pub fn host_routes() -> Result<Vec<(String, Ipv4Net)>> {
    let text = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| Error::io("/proc/net/route", "read", e))?;
    Ok(parse_proc_route(&text))
}

fn parse_proc_route(text: &str) -> Vec<(String, Ipv4Net)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the network-order bytes as a native u32.
        let dest = Ipv4Addr::from(dest.to_ne_bytes());
        let mask = u32::from_be_bytes(mask.to_ne_bytes());
        let prefix = mask.leading_ones() as u8;
        if prefix == 0 {
            continue;
        }
        if let Ok(n) = Ipv4Net::new(dest, prefix) {
            out.push((f[0].to_string(), n.trunc()));
        }
    }
    out
}

/// The usual gateway of a subnet: its first host address.
pub fn default_gateway(subnet: &Ipv4Net) -> Result<Ipv4Addr> {
    subnet.hosts().next().ok_or_else(|| {
        Error::invalid(
            format!("subnet {subnet}"),
            "too small for a gateway and a container (at most /30)",
        )
    })
}

/// A MAC address derived from an IPv4 address (locally administered, unicast):
/// `02:42:` and the address's four bytes, as Docker derives them.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Addresses of one subnet: which are in use, and where the next search starts.
#[derive(Debug, Clone)]
pub struct Allocator {
    subnet: Ipv4Net,
    /// The part of the subnet dynamic addresses come from (`--ip-range`), else the subnet.
    range: Ipv4Net,
    gateway: Ipv4Addr,
    used: BTreeSet<Ipv4Addr>,
    /// The last address handed out.
    cursor: Option<Ipv4Addr>,
}

impl Allocator {
    /// `range` must lie within `subnet`; `gateway` inside the subnet.
    pub fn new(subnet: Ipv4Net, range: Option<Ipv4Net>, gateway: Ipv4Addr) -> Result<Allocator> {
        let range = range.unwrap_or(subnet);
        if !subnet.contains(&range) {
            return Err(Error::invalid(
                format!("ip range {range}"),
                format!("not inside the subnet {subnet}"),
            ));
        }
        if !subnet.contains(&gateway)
            || gateway == subnet.network()
            || gateway == subnet.broadcast()
        {
            return Err(Error::invalid(
                format!("gateway {gateway}"),
                format!("not a host address of the subnet {subnet}"),
            ));
        }
        Ok(Allocator {
            subnet,
            range,
            gateway,
            used: BTreeSet::new(),
            cursor: None,
        })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The last address handed out (to persist), and restoring it.
    pub fn cursor(&self) -> Option<Ipv4Addr> {
        self.cursor
    }
    pub fn set_cursor(&mut self, c: Option<Ipv4Addr>) {
        self.cursor = c.filter(|c| self.range.contains(c));
    }

    fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Marks a known address as used (an address recorded before a restart, or one a
    /// user asked for with `--ip`). Refused when it is not assignable or already used.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<()> {
        if !self.assignable(ip) {
            return Err(Error::invalid(
                format!("address {ip}"),
                format!(
                    "not an assignable address of the subnet {} (network, broadcast and gateway {} are not)",
                    self.subnet, self.gateway
                ),
            ));
        }
        if !self.used.insert(ip) {
            return Err(Error::conflict(
                format!("address {ip}"),
                "Address already in use",
            ));
        }
        Ok(())
    }

    /// Hands out the next free address after the cursor (wrapping around).
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let first = u32::from(self.range.network());
        let last = u32::from(self.range.broadcast());
        let span = u64::from(last - first) + 1;
        let start = match self.cursor {
            Some(c) => u32::from(c).wrapping_add(1),
            None => first,
        };
        let mut n = start;
        for _ in 0..span {
            if n < first || n > last {
                n = first;
            }
            let ip = Ipv4Addr::from(n);
            if self.assignable(ip) && !self.used.contains(&ip) {
                self.used.insert(ip);
                self.cursor = Some(ip);
                return Ok(ip);
            }
            n = n.wrapping_add(1);
        }
        Err(Error::unavailable(
            format!("subnet {}", self.subnet),
            format!("no available IPv4 addresses in the range {}", self.range),
        ))
    }

    /// Hands out the highest free address of the range, leaving the cursor alone: a
    /// service's virtual IP, kept apart from the containers' addresses, which come from
    /// the bottom.
    pub fn allocate_from_top(&mut self) -> Result<Ipv4Addr> {
        let first = u32::from(self.range.network());
        let last = u32::from(self.range.broadcast());
        for n in (first..=last).rev() {
            let ip = Ipv4Addr::from(n);
            if self.assignable(ip) && !self.used.contains(&ip) {
                self.used.insert(ip);
                return Ok(ip);
            }
        }
        Err(Error::unavailable(
            format!("subnet {}", self.subnet),
            format!("no available IPv4 addresses in the range {}", self.range),
        ))
    }

    /// Returns an address to the free set.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

/// The longest IPv6 prefix a network may have: a /126 still leaves the subnet-router
/// anycast address, a gateway and two containers.
pub const MAX_PREFIX6: u8 = 126;

/// The IPv6 addresses of one subnet (a dual-stack network's second family): as
/// [`Allocator`], sequential after a cursor, wrapping around. The subnet-router anycast
/// address (the subnet's first) and the gateway are never handed out. A /64 is never
/// walked whole: the search stops after [`Allocator6::SEARCH`] addresses.
#[derive(Debug, Clone)]
pub struct Allocator6 {
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    used: BTreeSet<Ipv6Addr>,
    cursor: Option<Ipv6Addr>,
}

impl Allocator6 {
    /// How many addresses one allocation looks at, at most.
    pub const SEARCH: u128 = 1 << 20;

    /// Checks the subnet (a network address, at most [`MAX_PREFIX6`] bits, not link-local,
    /// multicast or loopback) and that `gateway` is one of its host addresses.
    pub fn new(subnet: Ipv6Net, gateway: Ipv6Addr) -> Result<Allocator6> {
        let object = format!("IPv6 subnet {subnet}");
        if subnet.trunc() != subnet {
            return Err(Error::invalid(
                object,
                format!("not a network address (did you mean {}?)", subnet.trunc()),
            ));
        }
        if subnet.prefix_len() > MAX_PREFIX6 {
            return Err(Error::invalid(
                object,
                format!("a network needs a prefix of at most /{MAX_PREFIX6}"),
            ));
        }
        let net = subnet.network();
        if net.is_loopback()
            || net.is_unspecified()
            || net.is_unicast_link_local()
            || net.is_multicast()
        {
            return Err(Error::invalid(
                object,
                "link-local, multicast, loopback and unspecified addresses cannot be a network's",
            ));
        }
        if !subnet.contains(&gateway) || gateway == subnet.network() {
            return Err(Error::invalid(
                format!("IPv6 gateway {gateway}"),
                format!("not a host address of the subnet {subnet}"),
            ));
        }
        Ok(Allocator6 {
            subnet,
            gateway,
            used: BTreeSet::new(),
            cursor: None,
        })
    }

    pub fn subnet(&self) -> Ipv6Net {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv6Addr {
        self.gateway
    }

    /// The last address handed out (to persist), and restoring it.
    pub fn cursor(&self) -> Option<Ipv6Addr> {
        self.cursor
    }
    pub fn set_cursor(&mut self, c: Option<Ipv6Addr>) {
        self.cursor = c.filter(|c| self.subnet.contains(c));
    }

    fn assignable(&self, ip: Ipv6Addr) -> bool {
        self.subnet.contains(&ip) && ip != self.subnet.network() && ip != self.gateway
    }

    /// Marks a known address as used (recorded before a restart, or asked for with
    /// `--ip6`). Refused when it is not assignable or already used.
    pub fn reserve(&mut self, ip: Ipv6Addr) -> Result<()> {
        if !self.assignable(ip) {
            return Err(Error::invalid(
                format!("address {ip}"),
                format!(
                    "not an assignable address of the subnet {} (its first address and the gateway {} are not)",
                    self.subnet, self.gateway
                ),
            ));
        }
        if !self.used.insert(ip) {
            return Err(Error::conflict(
                format!("address {ip}"),
                "Address already in use",
            ));
        }
        Ok(())
    }

    /// Hands out the next free address after the cursor (wrapping around).
    pub fn allocate(&mut self) -> Result<Ipv6Addr> {
        let first = u128::from(self.subnet.network());
        let last = u128::from(self.subnet.broadcast());
        let span = (last - first).saturating_add(1).min(Self::SEARCH);
        let mut n = match self.cursor {
            Some(c) => u128::from(c).wrapping_add(1),
            None => first,
        };
        for _ in 0..span {
            if n < first || n > last {
                n = first;
            }
            let ip = Ipv6Addr::from(n);
            if self.assignable(ip) && !self.used.contains(&ip) {
                self.used.insert(ip);
                self.cursor = Some(ip);
                return Ok(ip);
            }
            n = n.wrapping_add(1);
        }
        Err(Error::unavailable(
            format!("subnet {}", self.subnet),
            "no available IPv6 addresses".to_string(),
        ))
    }

    /// Returns an address to the free set.
    pub fn release(&mut self, ip: Ipv6Addr) {
        self.used.remove(&ip);
    }
}

/// The default IPv6 gateway of a subnet: its first host address (`::1` of a /64).
pub fn default_gateway6(subnet: &Ipv6Net) -> Result<Ipv6Addr> {
    let first = u128::from(subnet.network());
    let gw = Ipv6Addr::from(first + 1);
    if subnet.contains(&gw) && subnet.prefix_len() <= MAX_PREFIX6 {
        Ok(gw)
    } else {
        Err(Error::invalid(
            format!("IPv6 subnet {subnet}"),
            format!("a network needs a prefix of at most /{MAX_PREFIX6}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_handed_out_in_order_never_the_anycast_or_gateway() {
        let net: Ipv6Net = "fd00:b::/64".parse().unwrap();
        let gw = default_gateway6(&net).unwrap();
        assert_eq!(gw, "fd00:b::1".parse::<Ipv6Addr>().unwrap());
        let mut a = Allocator6::new(net, gw).unwrap();
        assert_eq!(
            a.allocate().unwrap(),
            "fd00:b::2".parse::<Ipv6Addr>().unwrap()
        );
        a.reserve("fd00:b::3".parse().unwrap()).unwrap();
        assert_eq!(
            a.allocate().unwrap(),
            "fd00:b::4".parse::<Ipv6Addr>().unwrap()
        );
        assert!(a.reserve("fd00:b::1".parse().unwrap()).is_err());
        assert!(a.reserve("fd00:b::4".parse().unwrap()).is_err());
        assert!(a.reserve("fd00:c::4".parse().unwrap()).is_err());
        // A /126: ::, the gateway ::1, then ::2 and ::3; then full.
        let small: Ipv6Net = "fd00:d::/126".parse().unwrap();
        let mut s = Allocator6::new(small, default_gateway6(&small).unwrap()).unwrap();
        assert_eq!(
            s.allocate().unwrap(),
            "fd00:d::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            s.allocate().unwrap(),
            "fd00:d::3".parse::<Ipv6Addr>().unwrap()
        );
        assert!(s.allocate().is_err());
        s.release("fd00:d::2".parse().unwrap());
        assert_eq!(
            s.allocate().unwrap(),
            "fd00:d::2".parse::<Ipv6Addr>().unwrap()
        );
        // Subnets that cannot be a network's.
        for bad in [
            "fd00:b::1/64",
            "fe80::/64",
            "ff02::/64",
            "fd00::/127",
            "::1/128",
        ] {
            let n: Ipv6Net = bad.parse().unwrap();
            assert!(
                Allocator6::new(n, Ipv6Addr::from(u128::from(n.network()) + 1)).is_err(),
                "{bad}"
            );
        }
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn default_pool_is_outside_rfc1918() {
        let p = default_pools();
        for private in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] {
            assert!(!overlaps(&p[0].base, &net(private)), "{private}");
        }
        assert_eq!(choose_subnet(&p, &[]).unwrap(), net("100.72.0.0/24"));
    }

    #[test]
    fn subnets_skip_taken_ones_and_host_routes() {
        let p = default_pools();
        let taken = [
            net("100.72.0.0/24"),
            net("100.72.1.128/25"),
            net("100.72.2.0/23"),
        ];
        assert_eq!(choose_subnet(&p, &taken).unwrap(), net("100.72.4.0/24"));
        // A host route covering the whole pool exhausts it.
        let err = choose_subnet(&p, &[net("100.64.0.0/10")]).unwrap_err();
        assert!(err.to_string().contains("fully subnetted"), "{err}");
        // The next pool is used.
        let two = [
            p[0],
            Pool {
                base: net("198.18.0.0/15"),
                size: 26,
            },
        ];
        assert_eq!(
            choose_subnet(&two, &[net("100.64.0.0/10")]).unwrap(),
            net("198.18.0.0/26")
        );
    }

    #[test]
    fn pools_are_validated() {
        let bad = Pool {
            base: net("100.72.0.0/16"),
            size: 8,
        };
        assert!(bad.validate().is_err());
        let bad = Pool {
            base: net("100.72.0.5/16"),
            size: 24,
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("100.72.0.0/16"));
    }

    #[test]
    fn proc_net_route_is_parsed() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_proc_route(text),
            vec![
                ("eth0".to_string(), net("192.168.2.0/24")),
                ("docker0".to_string(), net("172.17.0.0/16"))
            ]
        );
        // The real file parses.
        host_routes().unwrap();
    }

    #[test]
    fn allocation_is_sequential_and_never_hands_out_an_address_twice() {
        let mut a =
            Allocator::new(net("100.72.0.0/29"), None, "100.72.0.1".parse().unwrap()).unwrap();
        let got: Vec<Ipv4Addr> = (0..5).map(|_| a.allocate().unwrap()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(100, 72, 0, i)).collect();
        assert_eq!(got, want);
        assert!(a
            .allocate()
            .unwrap_err()
            .to_string()
            .contains("no available"));
        // A released address comes back only after the cursor wraps around.
        a.release(Ipv4Addr::new(100, 72, 0, 3));
        a.release(Ipv4Addr::new(100, 72, 0, 5));
        assert_eq!(a.allocate().unwrap(), Ipv4Addr::new(100, 72, 0, 3));
        assert_eq!(a.allocate().unwrap(), Ipv4Addr::new(100, 72, 0, 5));
        // Restored after a restart: the used set and the cursor.
        let mut b =
            Allocator::new(net("100.72.0.0/24"), None, "100.72.0.1".parse().unwrap()).unwrap();
        b.reserve("100.72.0.2".parse().unwrap()).unwrap();
        b.reserve("100.72.0.9".parse().unwrap()).unwrap();
        b.set_cursor(Some("100.72.0.9".parse().unwrap()));
        assert_eq!(b.allocate().unwrap(), Ipv4Addr::new(100, 72, 0, 10));
        assert!(b.reserve("100.72.0.9".parse().unwrap()).is_err());
        assert!(b.reserve("100.72.0.1".parse().unwrap()).is_err());
        assert!(b.reserve("100.72.0.255".parse().unwrap()).is_err());
        assert!(b.reserve("100.72.1.3".parse().unwrap()).is_err());
    }

    #[test]
    fn ip_range_limits_dynamic_addresses() {
        let mut a = Allocator::new(
            net("100.72.0.0/24"),
            Some(net("100.72.0.128/30")),
            "100.72.0.1".parse().unwrap(),
        )
        .unwrap();
        let got: Vec<_> = (0..4).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(100, 72, 0, 128));
        assert_eq!(got[3], Ipv4Addr::new(100, 72, 0, 131));
        assert!(a.allocate().is_err());
        // A static address outside the range but inside the subnet is fine.
        a.reserve("100.72.0.7".parse().unwrap()).unwrap();
        assert!(Allocator::new(
            net("100.72.0.0/24"),
            Some(net("100.72.1.0/30")),
            "100.72.0.1".parse().unwrap()
        )
        .is_err());
    }

    #[test]
    fn macs_derive_from_addresses() {
        assert_eq!(
            format_mac(&mac_for(Ipv4Addr::new(100, 72, 0, 2))),
            "02:42:64:48:00:02"
        );
    }
}
