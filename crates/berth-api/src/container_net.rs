//! The network parts of a container's inspect document and list entry, in Docker's
//! shapes: HostConfig (NetworkMode, PortBindings, DNS, extra hosts), Config (Hostname,
//! Domainname, ExposedPorts), NetworkSettings (ports, endpoints per network, the legacy
//! top-level fields of the default network), the `/etc` file paths, and `docker ps`'s
//! Ports and its `network`, `publish` and `expose` filters.
//!
//! What a running container has (addresses, MACs, host ports) comes from the engine's
//! live state ([`Engine::container_net`]); a stopped container keeps its networks, with
//! empty addresses, as Docker shows it.

use std::collections::BTreeMap;
use std::path::Path;

use berth_engine::networks::{parse_port_key, DEFAULT_NETWORK};
use berth_engine::{ContainerNet, ContainerRecord, Endpoint, Engine, NetAttachment};
use serde_json::{json, Map, Value};

/// Network ID → name.
pub(crate) type NetNames = BTreeMap<String, String>;

pub(crate) fn net_names(engine: &Engine) -> NetNames {
    engine
        .list_networks()
        .into_iter()
        .map(|n| (n.record.id, n.record.name))
        .collect()
}

/// Docker's NetworkMode of a container (records made before bridge networks have none:
/// `host` or `none` then).
pub(crate) fn network_mode(rec: &ContainerRecord) -> String {
    if !rec.net.mode.is_empty() {
        rec.net.mode.clone()
    } else if rec.network_host {
        "host".into()
    } else {
        "none".into()
    }
}

/// `HostConfig.NetworkMode` as Docker shows it: `default` when the create named none.
pub(crate) fn network_mode_shown(rec: &ContainerRecord) -> String {
    if rec.net.mode_default {
        "default".into()
    } else {
        network_mode(rec)
    }
}

/// `80` → `80/tcp`; keys the engine refused never reach a record.
fn norm_key(k: &str) -> String {
    parse_port_key(k)
        .map(|(p, proto)| format!("{p}/{proto}"))
        .unwrap_or_else(|_| k.to_string())
}

/// Every exposed port of the container: the image's, `--expose`, and the bound ones.
fn exposed_keys(rec: &ContainerRecord) -> Vec<String> {
    let mut keys: Vec<String> = rec
        .net
        .exposed_ports
        .iter()
        .chain(rec.net.port_bindings.keys())
        .map(|k| norm_key(k))
        .collect();
    keys.sort_by_key(|k| {
        let (p, proto) = k.split_once('/').unwrap_or((k, ""));
        (p.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    keys.dedup();
    keys
}

fn str_list(v: &[String]) -> Value {
    json!(v)
}

fn null_if_empty(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

/// One entry of `NetworkSettings.Networks`.
fn endpoint_json(att: &NetAttachment, ep: Option<&Endpoint>) -> Value {
    let mut ipam = Map::new();
    if let Some(ip) = att.ipv4_address {
        ipam.insert("IPv4Address".into(), json!(ip.to_string()));
    }
    if let Some(ip6) = att.ipv6_address {
        ipam.insert("IPv6Address".into(), json!(ip6.to_string()));
    }
    if !att.link_local_ips.is_empty() {
        let ll: Vec<String> = att.link_local_ips.iter().map(|i| i.to_string()).collect();
        ipam.insert("LinkLocalIPs".into(), json!(ll));
    }
    json!({
        "IPAMConfig": if ipam.is_empty() { Value::Null } else { Value::Object(ipam) },
        "Links": null_if_empty(&att.links),
        // The live endpoint's (with the short ID Docker adds on user-defined networks).
        "Aliases": null_if_empty(ep.map(|e| &e.aliases).unwrap_or(&att.aliases)),
        // The running endpoint's; before a start the address asked for (Docker ≥ 25).
        "MacAddress": ep
            .map(|e| e.mac.clone())
            .or_else(|| att.mac_address.clone())
            .unwrap_or_default(),
        "DriverOpts": if att.driver_opts.is_empty() { Value::Null } else { json!(att.driver_opts) },
        "GwPriority": 0,
        "NetworkID": att.network_id,
        "EndpointID": ep.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": ep.map(|e| e.prefix_len).unwrap_or(0),
        "IPv6Gateway": ep.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": ep.and_then(|e| e.ip6).map(|ip| ip.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": ep.filter(|e| e.ip6.is_some()).map(|e| e.prefix_len6).unwrap_or(0),
        "DNSNames": ep.map(|e| null_if_empty(&e.dns_names)).unwrap_or(Value::Null),
    })
}

/// `NetworkSettings.Networks`: by network name. A container on `host` or `none` has one
/// entry named after the mode, without addresses (as Docker shows it).
fn networks_json(rec: &ContainerRecord, live: Option<&ContainerNet>, names: &NetNames) -> Value {
    let mut out = Map::new();
    let mode = network_mode(rec);
    if matches!(mode.as_str(), "host" | "none") {
        if let Some((id, _)) = names.iter().find(|(_, n)| **n == mode) {
            let att = NetAttachment {
                network_id: id.clone(),
                ..NetAttachment::default()
            };
            out.insert(mode, endpoint_json(&att, None));
        }
        return Value::Object(out);
    }
    for att in &rec.net.networks {
        let ep = live.and_then(|l| l.endpoints.iter().find(|e| e.network_id == att.network_id));
        let name = names
            .get(&att.network_id)
            .cloned()
            .unwrap_or_else(|| att.network_id.clone());
        out.insert(name, endpoint_json(att, ep));
    }
    Value::Object(out)
}

/// `NetworkSettings.Ports`: each exposed port → its host bindings, `null` when it is not
/// published; empty while the container does not run (as Docker).
fn ports_map(rec: &ContainerRecord, live: Option<&ContainerNet>) -> Value {
    let Some(live) = live else {
        return json!({});
    };
    let mut out = Map::new();
    for k in exposed_keys(rec) {
        out.insert(k, Value::Null);
    }
    for p in &live.ports {
        let key = format!("{}/{}", p.container_port, p.proto);
        let b = json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() });
        match out.get_mut(&key) {
            Some(Value::Array(a)) => a.push(b),
            _ => {
                out.insert(key, json!([b]));
            }
        }
    }
    Value::Object(out)
}

/// Adds the network fields to a container's inspect document.
pub(crate) fn patch_inspect(
    doc: &mut Value,
    rec: &ContainerRecord,
    live: Option<&ContainerNet>,
    names: &NetNames,
    dir: &Path,
) {
    let Some(top) = doc.as_object_mut() else {
        return;
    };
    for (key, file) in [
        ("ResolvConfPath", "resolv.conf"),
        ("HostnamePath", "hostname"),
        ("HostsPath", "hosts"),
    ] {
        top.insert(key.into(), json!(dir.join(file).display().to_string()));
    }
    let net = &rec.net;
    if let Some(hc) = top.get_mut("HostConfig").and_then(Value::as_object_mut) {
        hc.insert("NetworkMode".into(), json!(network_mode_shown(rec)));
        let bindings: Map<String, Value> = net
            .port_bindings
            .iter()
            .map(|(k, list)| {
                let list: Vec<Value> = list
                    .iter()
                    .map(|b| json!({ "HostIp": b.host_ip, "HostPort": b.host_port }))
                    .collect();
                (norm_key(k), json!(list))
            })
            .collect();
        hc.insert(
            "PortBindings".into(),
            if bindings.is_empty() {
                Value::Null
            } else {
                Value::Object(bindings)
            },
        );
        hc.insert("PublishAllPorts".into(), json!(net.publish_all));
        hc.insert("Dns".into(), str_list(&net.dns));
        hc.insert("DnsOptions".into(), str_list(&net.dns_options));
        hc.insert("DnsSearch".into(), str_list(&net.dns_search));
        hc.insert("ExtraHosts".into(), null_if_empty(&net.extra_hosts));
        hc.insert("Links".into(), Value::Null);
    }
    if let Some(c) = top.get_mut("Config").and_then(Value::as_object_mut) {
        c.insert("Domainname".into(), json!(net.domainname));
        if !net.mac_address.is_empty() {
            // The deprecated container-wide field, as given (Docker 20.10 shows it).
            c.insert("MacAddress".into(), json!(net.mac_address));
        }
        let exposed: Map<String, Value> = exposed_keys(rec)
            .into_iter()
            .map(|k| (k, json!({})))
            .collect();
        if !exposed.is_empty() {
            c.insert("ExposedPorts".into(), Value::Object(exposed));
        }
    }
    let mut ns = Map::new();
    ns.insert("Bridge".into(), json!(""));
    ns.insert(
        "SandboxID".into(),
        json!(if live.is_some() { rec.id.as_str() } else { "" }),
    );
    ns.insert(
        "SandboxKey".into(),
        json!(live
            .map(|l| l.netns.display().to_string())
            .unwrap_or_default()),
    );
    ns.insert("Ports".into(), ports_map(rec, live));
    ns.insert("HairpinMode".into(), json!(false));
    ns.insert("LinkLocalIPv6Address".into(), json!(""));
    ns.insert("LinkLocalIPv6PrefixLen".into(), json!(0));
    ns.insert("SecondaryIPAddresses".into(), Value::Null);
    ns.insert("SecondaryIPv6Addresses".into(), Value::Null);
    // The legacy top-level fields describe the default network's endpoint (Docker's).
    let default_ep = live.and_then(|l| {
        l.endpoints
            .iter()
            .find(|e| names.get(&e.network_id).map(String::as_str) == Some(DEFAULT_NETWORK))
    });
    let s = |f: &dyn Fn(&Endpoint) -> String| default_ep.map(f).unwrap_or_default();
    ns.insert("EndpointID".into(), json!(s(&|e| e.endpoint_id.clone())));
    ns.insert("Gateway".into(), json!(s(&|e| e.gateway.to_string())));
    ns.insert("GlobalIPv6Address".into(), json!(""));
    ns.insert("GlobalIPv6PrefixLen".into(), json!(0));
    ns.insert("IPAddress".into(), json!(s(&|e| e.ip.to_string())));
    ns.insert(
        "IPPrefixLen".into(),
        json!(default_ep.map(|e| e.prefix_len).unwrap_or(0)),
    );
    ns.insert("IPv6Gateway".into(), json!(""));
    ns.insert("MacAddress".into(), json!(s(&|e| e.mac.clone())));
    ns.insert("Networks".into(), networks_json(rec, live, names));
    top.insert("NetworkSettings".into(), Value::Object(ns));
}

/// `docker ps`'s Ports: published ports, then exposed unpublished ones (running
/// containers only, as Docker).
pub(crate) fn summary_ports(rec: &ContainerRecord, live: Option<&ContainerNet>) -> Value {
    let Some(live) = live else {
        return json!([]);
    };
    let mut out = Vec::new();
    for p in &live.ports {
        out.push(json!({
            "IP": p.host_ip.to_string(),
            "PrivatePort": p.container_port,
            "PublicPort": p.host_port,
            "Type": p.proto,
        }));
    }
    for k in exposed_keys(rec) {
        let Ok((port, proto)) = parse_port_key(&k) else {
            continue;
        };
        if !live
            .ports
            .iter()
            .any(|p| p.container_port == port && p.proto == proto)
        {
            out.push(json!({ "PrivatePort": port, "Type": proto }));
        }
    }
    json!(out)
}

/// Adds the network fields to a `docker ps` entry.
pub(crate) fn patch_summary(
    doc: &mut Value,
    rec: &ContainerRecord,
    live: Option<&ContainerNet>,
    names: &NetNames,
) {
    doc["Ports"] = summary_ports(rec, live);
    doc["HostConfig"]["NetworkMode"] = json!(network_mode_shown(rec));
    doc["NetworkSettings"] = json!({ "Networks": networks_json(rec, live, names) });
}

/// `80`, `80/udp`, `8000-8010[/tcp]`: a port range and a protocol (None: any).
fn port_filter(v: &str) -> Option<(u16, u16, Option<String>)> {
    let (ports, proto) = match v.split_once('/') {
        Some((p, proto)) => (p, Some(proto.to_ascii_lowercase())),
        None => (v, None),
    };
    let (a, b) = match ports.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = ports.parse().ok()?;
            (p, p)
        }
    };
    Some((a, b, proto))
}

/// The `network`, `publish` and `expose` filters of `docker ps` (values ORed).
pub(crate) fn filter_match(
    f: &berth_engine::Filters,
    rec: &ContainerRecord,
    live: Option<&ContainerNet>,
    names: &NetNames,
) -> Result<bool, crate::ApiError> {
    let check = |name: &str| -> Result<Vec<(u16, u16, Option<String>)>, crate::ApiError> {
        f.get(name)
            .iter()
            .map(|v| {
                port_filter(v).ok_or_else(|| {
                    crate::ApiError::bad_request(format!(
                        "invalid filter '{name}={v}': expected PORT[/PROTO] or START-END[/PROTO]"
                    ))
                })
            })
            .collect()
    };
    let publish = check("publish")?;
    let expose = check("expose")?;
    let in_range = |set: &[(u16, u16, Option<String>)], port: u16, proto: &str| {
        set.iter()
            .any(|(a, b, pr)| (*a..=*b).contains(&port) && pr.as_deref().is_none_or(|x| x == proto))
    };
    let nets = f.get("network");
    let net_ok = nets.is_empty()
        || nets.iter().any(|v| {
            rec.net.networks.iter().any(|a| {
                a.network_id.starts_with(v.as_str())
                    || names.get(&a.network_id).is_some_and(|n| n == v)
            }) || (rec.net.networks.is_empty() && network_mode(rec) == *v)
        });
    let publish_ok = publish.is_empty()
        || live.is_some_and(|l| {
            l.ports
                .iter()
                .any(|p| in_range(&publish, p.host_port, &p.proto))
        });
    let expose_ok = expose.is_empty()
        || exposed_keys(rec)
            .iter()
            .any(|k| parse_port_key(k).is_ok_and(|(p, proto)| in_range(&expose, p, &proto)));
    Ok(net_ok && publish_ok && expose_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_filters_parse() {
        assert_eq!(port_filter("80"), Some((80, 80, None)));
        assert_eq!(port_filter("80/UDP"), Some((80, 80, Some("udp".into()))));
        assert_eq!(
            port_filter("8000-8010/tcp"),
            Some((8000, 8010, Some("tcp".into())))
        );
        assert_eq!(port_filter("x"), None);
    }
}
