//! `network create|ls|inspect|rm|connect|disconnect|prune` and `port`, printed as the
//! docker CLI prints them.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::volume::{confirm, inspect_objects, natural_less};
use crate::client::{path_escape, read_all, Client, Query};
use crate::format::{self, units, Fields, ListFormat};

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum NetworkVerb {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address", value_name = "map")]
    pub aux_address: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt", value_name = "map")]
    pub ipam_opt: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Create swarm routing-mesh network
    #[arg(long)]
    pub ingress: bool,
    /// Enable or disable IPv6 networking
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv6: Option<bool>,
    /// Control the network's scope
    #[arg(long)]
    pub scope: Option<String>,
    /// Create a configuration only network
    #[arg(long)]
    pub config_only: bool,
    /// The network from which to copy the configuration
    #[arg(long)]
    pub config_from: Option<String>,
    /// Set metadata on a network
    #[arg(long = "label", value_name = "list")]
    pub labels: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    pub opts: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go-template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long = "link")]
    pub links: Vec<String>,
    /// driver options for the network
    #[arg(long = "driver-opt")]
    pub driver_opts: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

pub async fn run(client: &Client, verb: NetworkVerb) -> anyhow::Result<()> {
    match verb {
        NetworkVerb::Create(a) => create(client, a).await,
        NetworkVerb::Ls(a) => ls(client, a).await,
        NetworkVerb::Inspect(a) => inspect(client, a).await,
        NetworkVerb::Rm(a) => rm(client, a).await,
        NetworkVerb::Connect(a) => connect(client, a).await,
        NetworkVerb::Disconnect(a) => disconnect(client, a).await,
        NetworkVerb::Prune(a) => prune(client, a).await,
    }
}

/// docker's `KEY=VALUE` lists: a bare `KEY` maps to the empty string.
fn kv_map(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

/// The create body as the docker CLI builds it (one IPAM config per `--subnet`, the
/// `--gateway` and `--ip-range` of each in order).
fn create_body(a: &CreateArgs) -> anyhow::Result<Value> {
    if a.gateway.len() > a.subnet.len() || a.ip_range.len() > a.subnet.len() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let mut configs = Vec::new();
    for (i, s) in a.subnet.iter().enumerate() {
        let mut c = Map::new();
        c.insert("Subnet".into(), json!(s));
        if let Some(r) = a.ip_range.get(i) {
            c.insert("IPRange".into(), json!(r));
        }
        if let Some(g) = a.gateway.get(i) {
            c.insert("Gateway".into(), json!(g));
        }
        if i == 0 && !a.aux_address.is_empty() {
            c.insert("AuxiliaryAddresses".into(), json!(kv_map(&a.aux_address)));
        }
        configs.push(Value::Object(c));
    }
    let mut body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Scope": a.scope.clone().unwrap_or_default(),
        "IPAM": {
            "Driver": a.ipam_driver,
            "Config": configs,
            "Options": kv_map(&a.ipam_opt),
        },
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Ingress": a.ingress,
        "ConfigOnly": a.config_only,
        "Options": kv_map(&a.opts),
        "Labels": kv_map(&a.labels),
    });
    if let Some(v6) = a.ipv6 {
        body["EnableIPv6"] = json!(v6);
    }
    if let Some(f) = &a.config_from {
        body["ConfigFrom"] = json!({ "Network": f });
    }
    Ok(body)
}

async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let body = create_body(&args)?;
    let resp = client.post_body("/networks/create", &body).await?;
    let v: Value = serde_json::from_slice(&read_all(resp).await?)?;
    super::out(&format!(
        "{}\n",
        v.get("Id").and_then(Value::as_str).unwrap_or_default()
    ))
}

pub const NETWORK_FIELDS: Fields = &[
    ("CreatedAt", "CREATED AT"),
    ("Driver", "DRIVER"),
    ("ID", "NETWORK ID"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("Name", "NAME"),
    ("Scope", "SCOPE"),
];

const DEFAULT_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

/// docker's `NewNetworkFormat`.
fn network_format(format: &str, quiet: bool) -> String {
    match format {
        "" | "table" if quiet => "{{.ID}}".into(),
        "" | "table" => DEFAULT_TABLE.into(),
        "raw" if quiet => "network_id: {{.ID}}".into(),
        "raw" => {
            "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n"
                .into()
        }
        f => f.into(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Go's `time.Time.String()` of an RFC 3339 time (nanoseconds kept, trailing zeros
/// dropped, as Go prints them).
fn go_time(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let mut s = units::go_time_string(t.timestamp());
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 && s.len() >= 19 {
        let frac = format!("{nanos:09}");
        s.insert_str(19, &format!(".{}", frac.trim_end_matches('0')));
    }
    s
}

/// The template data of one network (docker's `networkContext`).
fn network_row(v: &Value, trunc: bool) -> Value {
    let labels = v
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let id = str_at(v, "Id");
    let b = |k: &str| {
        v.get(k)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()
    };
    format::row(&[
        ("CreatedAt", go_time(str_at(v, "Created"))),
        ("Driver", str_at(v, "Driver").into()),
        (
            "ID",
            if trunc {
                format::truncate_id(id)
            } else {
                id.to_string()
            },
        ),
        ("IPv4", b("EnableIPv4")),
        ("IPv6", b("EnableIPv6")),
        ("Internal", b("Internal")),
        ("Labels", labels),
        ("Name", str_at(v, "Name").into()),
        ("Scope", str_at(v, "Scope").into()),
    ])
}

async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let format = network_format(args.format.as_deref().unwrap_or(""), args.quiet);
    let fmt = ListFormat::parse(&format, DEFAULT_TABLE, NETWORK_FIELDS)?;
    let q = Query::new("/networks").opt("filters", format::filters_json(&args.filters)?.as_deref());
    let mut nets: Vec<Value> = client.get_json(&q.build()).await?;
    nets.sort_by(|x, y| {
        let (a, b) = (str_at(x, "Name"), str_at(y, "Name"));
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| network_row(n, !args.no_trunc))
        .collect();
    super::out(&fmt.render(&rows, NETWORK_FIELDS)?)
}

async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<()> {
    inspect_objects(client, "networks", &args.networks, args.format.as_deref()).await
}

async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.networks {
        let path = format!("/networks/{}", path_escape(name));
        match client
            .request(hyper::Method::DELETE, &path, crate::client::empty(), None)
            .await
        {
            Ok(_) => super::out(&format!("{name}\n"))?,
            Err(e) if args.force && e.to_string().contains("not found") => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// The connect body as the docker CLI builds it.
fn connect_body(a: &ConnectArgs) -> Value {
    let mut ipam = Map::new();
    if let Some(ip) = &a.ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = &a.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    let mut ep = Map::new();
    if !ipam.is_empty() {
        ep.insert("IPAMConfig".into(), Value::Object(ipam));
    }
    if !a.links.is_empty() {
        ep.insert("Links".into(), json!(a.links));
    }
    if !a.aliases.is_empty() {
        ep.insert("Aliases".into(), json!(a.aliases));
    }
    if !a.driver_opts.is_empty() {
        ep.insert("DriverOpts".into(), json!(kv_map(&a.driver_opts)));
    }
    json!({ "Container": a.container, "EndpointConfig": ep })
}

async fn connect(client: &Client, args: ConnectArgs) -> anyhow::Result<()> {
    let path = format!("/networks/{}/connect", path_escape(&args.network));
    read_all(client.post_body(&path, &connect_body(&args)).await?).await?;
    Ok(())
}

async fn disconnect(client: &Client, args: DisconnectArgs) -> anyhow::Result<()> {
    let path = format!("/networks/{}/disconnect", path_escape(&args.network));
    let body = json!({ "Container": args.container, "Force": args.force });
    read_all(client.post_body(&path, &body).await?).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PruneReport {
    #[serde(default)]
    networks_deleted: Option<Vec<String>>,
}

const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";

async fn prune(client: &Client, args: PruneArgs) -> anyhow::Result<()> {
    if !args.force {
        let answer = tokio::task::spawn_blocking(|| confirm(PRUNE_WARNING)).await??;
        if !answer {
            return Ok(());
        }
    }
    let q = Query::new("/networks/prune")
        .opt("filters", format::filters_json(&args.filters)?.as_deref());
    let report: PruneReport = client.post_json(&q.build()).await?;
    let deleted = report.networks_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        let mut out = String::from("Deleted Networks:\n");
        for n in &deleted {
            out.push_str(n);
            out.push('\n');
        }
        super::out(&format!("{out}\n"))?;
    }
    Ok(())
}

/// `host:port` as Go's `net.JoinHostPort` writes it (IPv6 bracketed).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The lines of `docker port` from an inspect document's `NetworkSettings.Ports`.
fn port_lines(inspect: &Value, container: &str, port: Option<&str>) -> anyhow::Result<Vec<String>> {
    let ports = inspect
        .pointer("/NetworkSettings/Ports")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let bindings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|b| join_host_port(str_at(b, "HostIp"), str_at(b, "HostPort")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    match port {
        Some(p) => {
            let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(e) = num.parse::<u16>() {
                bail!("Error: invalid port ({num}): {e}");
            }
            let key = format!("{num}/{proto}");
            let found = ports.get(&key).map(bindings).unwrap_or_default();
            if found.is_empty() {
                bail!("Error: No public port '{p}' published for {container}");
            }
            out.extend(found);
        }
        None => {
            for (from, v) in &ports {
                for b in bindings(v) {
                    out.push(format!("{from} -> {b}"));
                }
            }
        }
    }
    out.sort_by(|a, b| {
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    Ok(out)
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(client: &Client, args: PortArgs) -> anyhow::Result<()> {
    let v: Value = client
        .get_json(&format!(
            "/containers/{}/json",
            path_escape(&args.container)
        ))
        .await?;
    let lines = port_lines(&v, &args.container, args.port.as_deref())?;
    if !lines.is_empty() {
        super::out(&format!("{}\n", lines.join("\n")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn rows_and_formats() {
        let v = json!({"Name":"n1","Id":"0123456789abcdef0123","Driver":"bridge","Scope":"local",
                       "Created":"2026-01-02T03:04:05.120000000Z","EnableIPv4":true,
                       "Labels":{"a":"1"}});
        let r = network_row(&v, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Labels"], "a=1");
        assert_eq!(r["IPv4"], "true");
        assert_eq!(r["IPv6"], "false");
        assert!(
            r["CreatedAt"].as_str().unwrap_or("").contains(":05.12 "),
            "{r}"
        );
        assert_eq!(network_row(&v, false)["ID"], "0123456789abcdef0123");
        assert_eq!(network_format("", true), "{{.ID}}");
        assert_eq!(network_format("table", false), DEFAULT_TABLE);
    }

    #[derive(clap::Parser)]
    struct T {
        #[command(subcommand)]
        v: NetworkVerb,
    }

    #[test]
    fn create_and_connect_bodies() {
        let t = T::try_parse_from([
            "t",
            "create",
            "--subnet",
            "100.80.0.0/24",
            "--gateway",
            "100.80.0.254",
            "--ip-range",
            "100.80.0.128/25",
            "--internal",
            "--label",
            "a=b",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "n1",
        ])
        .unwrap();
        let NetworkVerb::Create(a) = t.v else {
            panic!("not create")
        };
        let b = create_body(&a).unwrap();
        assert_eq!(
            b["IPAM"]["Config"],
            json!([{"Subnet":"100.80.0.0/24","Gateway":"100.80.0.254","IPRange":"100.80.0.128/25"}])
        );
        assert_eq!(b["Internal"], true);
        assert_eq!(b["Labels"]["a"], "b");
        assert!(b.get("EnableIPv6").is_none());
        let t = T::try_parse_from(["t", "create", "--gateway", "1.2.3.4", "n"]).unwrap();
        let NetworkVerb::Create(a) = t.v else {
            panic!("not create")
        };
        assert!(create_body(&a).is_err());
        let t = T::try_parse_from([
            "t",
            "connect",
            "--alias",
            "db",
            "--ip",
            "100.80.0.9",
            "n1",
            "c1",
        ])
        .unwrap();
        let NetworkVerb::Connect(a) = t.v else {
            panic!("not connect")
        };
        assert_eq!(
            connect_body(&a),
            json!({"Container":"c1","EndpointConfig":{"Aliases":["db"],"IPAMConfig":{"IPv4Address":"100.80.0.9"}}})
        );
    }

    #[test]
    fn port_lines_as_docker_prints_them() {
        let v = json!({"NetworkSettings":{"Ports":{
            "80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}],
            "53/udp":[{"HostIp":"127.0.0.1","HostPort":"5353"}],
            "443/tcp":null}}});
        assert_eq!(
            port_lines(&v, "c", None).unwrap(),
            ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
        );
        assert_eq!(port_lines(&v, "c", Some("80")).unwrap(), ["0.0.0.0:8080"]);
        let e = port_lines(&v, "c", Some("443/tcp"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "Error: No public port '443/tcp' published for c");
    }
}
