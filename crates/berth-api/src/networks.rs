//! `/networks`: list, inspect, create, remove, connect, disconnect, prune (Docker's
//! bridge driver; `host` and `none` are listed as Docker lists them).
//!
//! Translation only: the engine decides what a network is and what may be done with it
//! (`berth_engine::networks`); this module maps Docker's JSON to its calls and back and
//! refuses, with a 400 naming the field, what berth cannot honour (swarm scopes,
//! ingress, config-only networks, more than one IPAM config, IPv6, links).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{Engine, Filters, NetAttachment, NetworkCreate, NetworkInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;

/// Go's zero time, for the predefined networks (which have no creation time).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A field that clients may send as `null` (the Docker SDK for Python does): its
/// default then.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn not_supported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported yet by berth"))
}

/// `host` and `none` (Docker's predefined networks without a bridge) and the default
/// bridge network.
fn builtin(info: &NetworkInfo) -> bool {
    let r = &info.record;
    r.default_bridge || (r.bridge.is_empty() && matches!(r.name.as_str(), "host" | "none"))
}

/// Docker's `network.Inspect`, fields in Docker's order. `containers`: whether to list
/// the endpoints (inspect does, list does not, as Docker).
pub(crate) fn network_json(info: &NetworkInfo, containers: bool) -> Value {
    let r = &info.record;
    let predefined = r.bridge.is_empty();
    let config = if predefined {
        Value::Null
    } else {
        let mut c = serde_json::Map::new();
        c.insert("Subnet".into(), json!(r.subnet.to_string()));
        if let Some(range) = &r.ip_range {
            c.insert("IPRange".into(), json!(range.to_string()));
        }
        c.insert("Gateway".into(), json!(r.gateway.to_string()));
        let mut list = vec![Value::Object(c)];
        if let (Some(s6), Some(g6)) = (r.subnet6, r.gateway6) {
            list.push(json!({ "Subnet": s6.to_string(), "Gateway": g6.to_string() }));
        }
        Value::Array(list)
    };
    let eps: serde_json::Map<String, Value> = if containers {
        info.containers
            .iter()
            .map(|(id, (name, ep))| {
                (
                    id.clone(),
                    json!({
                        "Name": name,
                        "EndpointID": ep.endpoint_id,
                        "MacAddress": ep.mac,
                        "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len),
                        "IPv6Address": ep.ip6.map(|ip6| format!("{ip6}/{}", ep.prefix_len6)).unwrap_or_default(),
                    }),
                )
            })
            .collect()
    } else {
        serde_json::Map::new()
    };
    json!({
        "Name": r.name,
        "Id": r.id,
        "Created": if r.created.is_empty() { ZERO_TIME } else { r.created.as_str() },
        "Scope": scope_of(r),
        "Driver": r.driver,
        "EnableIPv4": true,
        "EnableIPv6": r.enable_ipv6,
        "IPAM": { "Driver": "default", "Options": null, "Config": config },
        "Internal": r.internal,
        "Attachable": r.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": eps,
        "Options": r.options,
        "Labels": r.labels,
    })
}

/// Docker's scope: `swarm` for a swarm's overlay network (a bridge on this one host),
/// `local` for the others.
fn scope_of(r: &berth_engine::NetworkRecord) -> &'static str {
    if r.driver == "overlay" {
        "swarm"
    } else {
        "local"
    }
}

const LIST_FILTERS: &[&str] = &["driver", "id", "label", "name", "scope", "type", "dangling"];

/// Whether a network passes the list filters (values of one filter ORed, filters
/// ANDed). `name` and `id` match substrings (Docker matches them as regular
/// expressions; plain names and ID prefixes give the same answer).
fn list_match(info: &NetworkInfo, f: &Filters) -> Result<bool, ApiError> {
    let r = &info.record;
    let any = |name: &str, pred: &dyn Fn(&str) -> bool| {
        let v = f.get(name);
        v.is_empty() || v.iter().any(|x| pred(x))
    };
    for t in f.get("type") {
        if !matches!(t.as_str(), "custom" | "builtin") {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{t}' (custom or builtin)"
            )));
        }
    }
    let dangling = f.bool("dangling")?;
    Ok(any("driver", &|v| r.driver == v)
        && any("id", &|v| r.id.contains(v))
        && any("name", &|v| r.name.contains(v))
        && any("scope", &|v| v == scope_of(r))
        && any("type", &|v| (v == "builtin") == builtin(info))
        && f.labels_match("label", &r.labels)
        && dangling.is_none_or(|d| d == (!builtin(info) && info.containers.is_empty())))
}

/// `GET /networks?filters=`.
pub(crate) async fn list(
    State(engine): State<Engine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let filters = params.filters()?;
    filters.check(LIST_FILTERS)?;
    let nets = blocking(move || Ok(engine.list_networks())).await?;
    let mut out = Vec::new();
    for n in &nets {
        if list_match(n, &filters)? {
            out.push(network_json(n, false));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /networks/{id}?verbose=&scope=`.
pub(crate) async fn inspect(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    if params.bool("verbose")? {
        return Err(not_supported("verbose network inspect (swarm services)"));
    }
    let scope = params.non_empty("scope").map(str::to_string);
    if let Some(s) = scope
        .as_deref()
        .filter(|s| !matches!(*s, "local" | "swarm"))
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("network {id} not found (scope {s}: berth has local and swarm networks)"),
        ));
    }
    let n = blocking(move || engine.network(&id)).await?;
    if scope.as_deref().is_some_and(|s| s != scope_of(&n.record)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("network {} not found", n.record.name),
        ));
    }
    Ok(Json(network_json(&n, true)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    #[serde(deserialize_with = "nullable")]
    subnet: String,
    #[serde(rename = "IPRange")]
    #[serde(deserialize_with = "nullable")]
    ip_range: String,
    #[serde(deserialize_with = "nullable")]
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    #[serde(deserialize_with = "nullable")]
    driver: String,
    config: Option<Vec<IpamConfigBody>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[allow(dead_code)] // Docker ≥ 1.44 always checks for duplicates; so does berth.
    check_duplicate: Option<bool>,
    #[serde(deserialize_with = "nullable")]
    driver: String,
    #[serde(deserialize_with = "nullable")]
    scope: String,
    #[serde(deserialize_with = "nullable")]
    internal: bool,
    #[serde(deserialize_with = "nullable")]
    attachable: bool,
    #[serde(deserialize_with = "nullable")]
    ingress: bool,
    #[serde(deserialize_with = "nullable")]
    config_only: bool,
    config_from: Option<Value>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

fn parse_net(field: &str, v: &str) -> Result<Option<ipnet::Ipv4Net>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.contains(':') {
        return Err(not_supported(&format!("IPv6 {field} {v}")));
    }
    v.parse::<ipnet::Ipv4Net>().map(Some).map_err(|_| {
        if field == "subnet" {
            // Docker's words (seen against Docker 20.10).
            ApiError::bad_request(format!("Invalid subnet {v} : invalid CIDR address: {v}"))
        } else {
            ApiError::bad_request(format!(
                "invalid {field} {v}: not an IPv4 network in CIDR notation (100.72.5.0/24)"
            ))
        }
    })
}

/// The engine's request from Docker's create body; what berth cannot do is refused.
fn create_request(b: CreateBody) -> Result<NetworkCreate, ApiError> {
    if b.name.is_empty() {
        return Err(ApiError::bad_request("network create: a name is required"));
    }
    if b.ingress {
        return Err(not_supported("an ingress network (swarm)"));
    }
    if b.config_only {
        return Err(not_supported("a config-only network (--config-only)"));
    }
    if b.config_from
        .as_ref()
        .and_then(|c| c.get("Network"))
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err(not_supported(
            "a network configured from another (--config-from)",
        ));
    }
    if !b.scope.is_empty() && b.scope != "local" && !(b.scope == "swarm" && b.driver == "overlay") {
        return Err(not_supported(&format!(
            "network scope {:?} (local only)",
            b.scope
        )));
    }
    if b.enable_ipv4 == Some(false) {
        return Err(not_supported("a network without IPv4 (--ipv4=false)"));
    }
    let ipam = b.ipam.unwrap_or_default();
    if !ipam.driver.is_empty() && ipam.driver != "default" {
        return Err(not_supported(&format!(
            "IPAM driver {:?} (default only)",
            ipam.driver
        )));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(not_supported("IPAM driver options (--ipam-opt)"));
    }
    let configs = ipam.config.unwrap_or_default();
    // One IPv4 and one IPv6 (dual-stack) config at most, told apart by their subnet.
    let (v6, v4): (Vec<IpamConfigBody>, Vec<IpamConfigBody>) = configs
        .into_iter()
        .partition(|c| c.subnet.contains(':') || (c.subnet.is_empty() && c.gateway.contains(':')));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(not_supported(&format!(
            "more than one IPAM config per address family ({} IPv4 and {} IPv6 subnets given)",
            v4.len(),
            v6.len()
        )));
    }
    let mut req = NetworkCreate {
        name: b.name,
        driver: Some(b.driver).filter(|d| !d.is_empty()),
        internal: b.internal,
        attachable: b.attachable,
        enable_ipv6: b.enable_ipv6.unwrap_or(false),
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
        ..NetworkCreate::default()
    };
    for c in v4.iter().chain(&v6) {
        if c.auxiliary_addresses
            .as_ref()
            .is_some_and(|a| !a.is_empty())
        {
            return Err(not_supported("auxiliary addresses (--aux-address)"));
        }
    }
    if let Some(c) = v4.into_iter().next() {
        req.subnet = parse_net("subnet", &c.subnet)?;
        req.ip_range = parse_net("ip-range", &c.ip_range)?;
        if !c.gateway.is_empty() {
            if c.gateway.contains(':') {
                return Err(ApiError::bad_request(format!(
                    "invalid gateway {}: an IPv6 gateway for the IPv4 subnet {}",
                    c.gateway, c.subnet
                )));
            }
            req.gateway = Some(c.gateway.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid gateway {}: not an IPv4 address",
                    c.gateway
                ))
            })?);
        }
        if req.subnet.is_none() && (req.gateway.is_some() || req.ip_range.is_some()) {
            return Err(ApiError::bad_request(
                "a gateway or an IP range needs a subnet (--subnet)",
            ));
        }
    }
    if let Some(c) = v6.into_iter().next() {
        if c.subnet.is_empty() {
            return Err(ApiError::bad_request(
                "an IPv6 gateway needs an IPv6 subnet (--subnet)",
            ));
        }
        req.subnet6 = Some(c.subnet.parse::<ipnet::Ipv6Net>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid subnet {} : invalid CIDR address: {}",
                c.subnet, c.subnet
            ))
        })?);
        if !c.ip_range.is_empty() {
            return Err(not_supported(&format!(
                "an IPv6 IP range ({}): IPv6 addresses come from the whole subnet",
                c.ip_range
            )));
        }
        if !c.gateway.is_empty() {
            req.gateway6 = Some(c.gateway.parse::<std::net::Ipv6Addr>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid gateway {}: not an IPv6 address (for the IPv6 subnet {})",
                    c.gateway, c.subnet
                ))
            })?);
        }
    }
    Ok(req)
}

/// `POST /networks/create` → 201 `{"Id","Warning":""}`.
pub(crate) async fn create(State(engine): State<Engine>, JsonBody(body): JsonBody) -> Response {
    let body: CreateBody = match crate::decode::body(&body, "network create body") {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req = match create_request(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match blocking(move || engine.create_network(&req)).await {
        Ok(rec) => (
            StatusCode::CREATED,
            Json(json!({ "Id": rec.id, "Warning": "" })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /networks/{id}` → 204.
pub(crate) async fn remove(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || engine.remove_network(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamEndpointBody {
    #[serde(rename = "IPv4Address")]
    #[serde(deserialize_with = "nullable")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    #[serde(deserialize_with = "nullable")]
    ipv6_address: String,
    #[serde(rename = "LinkLocalIPs")]
    link_local_ips: Option<Vec<String>>,
}

/// Docker's `EndpointSettings` as a create or connect request gives it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct EndpointBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<IpamEndpointBody>,
    links: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    mac_address: String,
    driver_opts: Option<BTreeMap<String, String>>,
}

impl EndpointBody {
    /// The endpoint's links (`NAME:ALIAS`), taken out of the body (create honours them
    /// on user-defined networks; `settings` refuses what is left).
    pub(crate) fn take_links(&mut self) -> Vec<String> {
        self.links.take().unwrap_or_default()
    }

    /// Aliases, `--ip`, `--ip6`, `--mac-address`, `--link-local-ip` and the endpoint
    /// driver options (the engine checks their values); links left in the body are
    /// refused.
    pub(crate) fn settings(self) -> Result<NetAttachment, ApiError> {
        if self.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(not_supported("links (--link)"));
        }
        let ipam = self.ipam_config.unwrap_or_default();
        let ipv6_address = if ipam.ipv6_address.is_empty() {
            None
        } else {
            Some(
                ipam.ipv6_address
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "invalid IPv6 address {}: not an IPv6 address",
                            ipam.ipv6_address
                        ))
                    })?,
            )
        };
        let ipv4_address = if ipam.ipv4_address.is_empty() {
            None
        } else {
            Some(ipam.ipv4_address.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid IPv4 address {}: --ip takes an IPv4 address",
                    ipam.ipv4_address
                ))
            })?)
        };
        let link_local_ips = ipam
            .link_local_ips
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>().map_err(|_| {
                    // Docker's words.
                    ApiError::bad_request(format!("invalid link-local IP address {s}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetAttachment {
            network_id: String::new(),
            aliases: self.aliases.unwrap_or_default(),
            ipv4_address,
            ipv6_address,
            mac_address: Some(self.mac_address).filter(|m| !m.is_empty()),
            link_local_ips,
            driver_opts: self.driver_opts.unwrap_or_default(),
            links: Vec::new(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    #[serde(deserialize_with = "nullable")]
    container: String,
    endpoint_config: Option<EndpointBody>,
}

fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    crate::decode::body(body, &format!("network {what} body"))
}

/// `POST /networks/{id}/connect` → 200.
pub(crate) async fn connect(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let b: ConnectBody = json_body(&body, "connect")?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request(
            "network connect: a container is required",
        ));
    }
    let mut endpoint = b.endpoint_config.unwrap_or_default();
    let links = endpoint.take_links();
    let settings = NetAttachment {
        links,
        ..endpoint.settings()?
    };
    blocking(move || engine.connect_network(&id, &b.container, settings)).await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DisconnectBody {
    #[serde(deserialize_with = "nullable")]
    container: String,
    #[serde(deserialize_with = "nullable")]
    force: bool,
}

/// `POST /networks/{id}/disconnect` → 200.
pub(crate) async fn disconnect(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let b: DisconnectBody = json_body(&body, "disconnect")?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request(
            "network disconnect: a container is required",
        ));
    }
    blocking(move || engine.disconnect_network(&id, &b.container, b.force)).await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/prune?filters=` → `{"NetworksDeleted": [names]}` (null when none, as
/// Docker).
pub(crate) async fn prune(
    State(engine): State<Engine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let filters = params.filters()?;
    let names = blocking(move || engine.prune_networks(&filters)).await?;
    let deleted = if names.is_empty() {
        Value::Null
    } else {
        json!(names)
    };
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> CreateBody {
        serde_json::from_str(s).expect("body")
    }

    #[test]
    fn create_bodies_map_or_are_refused() {
        let r = create_request(body(
            r#"{"Name":"n","Driver":"bridge","IPAM":{"Driver":"default","Config":[{"Subnet":"100.80.0.0/24","Gateway":"100.80.0.254","IPRange":"100.80.0.128/25"}]},"Internal":true,"Labels":{"a":"b"},"Options":{}}"#,
        ))
        .expect("ok");
        assert_eq!(
            r.subnet.map(|s| s.to_string()).as_deref(),
            Some("100.80.0.0/24")
        );
        assert_eq!(r.gateway, Some(Ipv4Addr::new(100, 80, 0, 254)));
        assert!(r.internal && r.ip_range.is_some());
        for (b, word) in [
            (r#"{"Name":"n","Ingress":true}"#, "ingress"),
            (r#"{"Name":"n","Scope":"swarm"}"#, "scope"),
            (r#"{"Name":"n","ConfigOnly":true}"#, "config-only"),
            (
                r#"{"Name":"n","ConfigFrom":{"Network":"x"}}"#,
                "config-from",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.0.0.0/24"},{"Subnet":"10.0.1.0/24"}]}}"#,
                "more than one",
            ),
            (
                r#"{"Name":"n","EnableIPv6":true,"IPAM":{"Config":[{"Subnet":"fd00::/64","IPRange":"fd00::/80"}]}}"#,
                "an IPv6 IP range",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"fd00::/64"},{"Subnet":"fd01::/64"}]}}"#,
                "more than one IPAM config per address family",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.0.0.0/24","AuxiliaryAddresses":{"a":"10.0.0.5"}}]}}"#,
                "auxiliary",
            ),
            (r#"{"Name":"n","IPAM":{"Driver":"dhcp"}}"#, "IPAM driver"),
        ] {
            let e = create_request(body(b)).expect_err(b);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{b}");
            assert!(e.message.contains(word), "{b}: {}", e.message);
            assert!(
                e.message.contains("not supported yet by berth"),
                "{}",
                e.message
            );
        }
        // Dual-stack: one config of each family, told apart by the subnet.
        let r = create_request(body(
            r#"{"Name":"n","EnableIPv6":true,"IPAM":{"Config":[{"Subnet":"fd00:b::/64","Gateway":"fd00:b::fe"},{"Subnet":"10.0.0.0/24"}]}}"#,
        ))
        .expect("dual-stack");
        assert!(r.enable_ipv6);
        assert_eq!(r.subnet6, Some("fd00:b::/64".parse().expect("address")));
        assert_eq!(r.gateway6, Some("fd00:b::fe".parse().expect("address")));
        assert_eq!(r.subnet, Some("10.0.0.0/24".parse().expect("address")));
        let e = create_request(body(
            r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"nope"}]}}"#,
        ))
        .expect_err("bad subnet");
        assert!(
            e.message
                .contains("Invalid subnet nope : invalid CIDR address: nope"),
            "{}",
            e.message
        );
    }

    #[test]
    fn null_fields_are_their_defaults() {
        // As the Docker SDK for Python sends them.
        let r = create_request(body(
            r#"{"Name":"n","Driver":"bridge","Scope":null,"Internal":null,"Ingress":null,"IPAM":{"Driver":"default","Config":[{"Subnet":"100.80.0.0/24","IPRange":null,"Gateway":null}],"Options":null},"Options":null,"Labels":null,"EnableIPv6":null}"#,
        ))
        .expect("ok");
        assert!(r.subnet.is_some() && r.gateway.is_none() && !r.internal);
    }

    #[test]
    fn endpoint_settings() {
        let e: EndpointBody = serde_json::from_str(
            r#"{"Aliases":["db"],"IPAMConfig":{"IPv4Address":"100.80.0.9"},"Links":null,"MacAddress":""}"#,
        )
        .expect("body");
        let a = e.settings().expect("ok");
        assert_eq!(a.aliases, ["db"]);
        assert_eq!(a.ipv4_address, Some(Ipv4Addr::new(100, 80, 0, 9)));
        assert_eq!(a.mac_address, None);
        let e: EndpointBody = serde_json::from_str(r#"{"Links":["a:b"]}"#).expect("body");
        assert!(e.settings().is_err());
        let e: EndpointBody = serde_json::from_str(
            r#"{"MacAddress":"02:42:ac:11:00:02","IPAMConfig":{"LinkLocalIPs":["169.254.7.7"]},"DriverOpts":{"com.docker.network.endpoint.ifname":"web0"}}"#,
        )
        .expect("body");
        let a = e.settings().expect("ok");
        assert_eq!(a.mac_address.as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(a.link_local_ips, [IpAddr::from([169, 254, 7, 7])]);
        assert_eq!(a.driver_opts["com.docker.network.endpoint.ifname"], "web0");
        let e: EndpointBody =
            serde_json::from_str(r#"{"IPAMConfig":{"LinkLocalIPs":["nope"]}}"#).expect("body");
        let err = e.settings().expect_err("bad address");
        assert!(
            err.message.contains("invalid link-local IP address nope"),
            "{}",
            err.message
        );
    }
}
