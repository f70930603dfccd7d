//! `volume create|ls|inspect|rm|prune`, printed as the docker CLI prints them.

use std::collections::BTreeMap;
use std::io::Write as _;

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::client::{path_escape, Client, Query};
use crate::format::{self, json as fjson, units, Fields, ListFormat, Mode, Template};

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VolumeVerb {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label", value_name = "list")]
    pub labels: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    pub opts: Vec<String>,
    /// Specify volume name
    #[arg(long, hide = true)]
    pub name: Option<String>,
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
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
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn run(client: &Client, verb: VolumeVerb) -> anyhow::Result<()> {
    match verb {
        VolumeVerb::Create(a) => create(client, a).await,
        VolumeVerb::Ls(a) => ls(client, a).await,
        VolumeVerb::Inspect(a) => inspect(client, a).await,
        VolumeVerb::Rm(a) => rm(client, a).await,
        VolumeVerb::Prune(a) => prune(client, a).await,
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

async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let name = match (&args.name, &args.volume) {
        (Some(_), Some(_)) => anyhow::bail!(
            "conflicting options: either specify --name or provide positional arg, not both"
        ),
        (Some(n), None) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": args.driver,
        "DriverOpts": kv_map(&args.opts),
        "Labels": kv_map(&args.labels),
    });
    let resp = client
        .post(
            "/volumes/create",
            crate::client::full(body.to_string()),
            Some("application/json"),
        )
        .await?;
    let v: Value = serde_json::from_slice(&crate::client::read_all(resp).await?)?;
    super::out(&format!(
        "{}\n",
        v.get("Name").and_then(Value::as_str).unwrap_or_default()
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeList {
    #[serde(default)]
    volumes: Option<Vec<Value>>,
}

pub const VOLUME_FIELDS: Fields = &[
    ("Availability", "AVAILABILITY"),
    ("Driver", "DRIVER"),
    ("Group", "GROUP"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Name", "VOLUME NAME"),
    ("Scope", "SCOPE"),
    ("Size", "SIZE"),
    ("Status", "STATUS"),
];

const DEFAULT_TABLE: &str = "table {{.Driver}}\t{{.Name}}";

/// docker's `NewVolumeFormat`.
fn volume_format(format: &str, quiet: bool) -> String {
    match format {
        "" | "table" if quiet => "{{.Name}}".into(),
        "" | "table" => DEFAULT_TABLE.into(),
        "raw" if quiet => "name: {{.Name}}".into(),
        "raw" => "name: {{.Name}}\\ndriver: {{.Driver}}\\n".into(),
        f => f.into(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The template data of one volume (docker's `volumeContext`).
fn volume_row(v: &Value) -> Value {
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
    let usage = v.get("UsageData").filter(|u| !u.is_null());
    let na = || "N/A".to_string();
    format::row(&[
        ("Availability", na()),
        ("Driver", str_at(v, "Driver").into()),
        ("Group", na()),
        ("Labels", labels),
        (
            "Links",
            usage
                .and_then(|u| u.get("RefCount"))
                .and_then(Value::as_i64)
                .map_or_else(na, |n| n.to_string()),
        ),
        ("Mountpoint", str_at(v, "Mountpoint").into()),
        ("Name", str_at(v, "Name").into()),
        ("Scope", str_at(v, "Scope").into()),
        (
            "Size",
            usage
                .and_then(|u| u.get("Size"))
                .and_then(Value::as_i64)
                .map_or_else(na, |n| units::human_size(n as f64)),
        ),
        ("Status", na()),
    ])
}

/// Go's `sortorder.NaturalLess` (the docker CLI sorts volumes with it): runs of digits
/// compare as numbers, digits sort before other characters.
pub fn natural_less(a: &str, b: &str) -> bool {
    let (s1, s2) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < s1.len() && j < s2.len() {
        let (c1, c2) = (s1[i], s2[j]);
        let (d1, d2) = (c1.is_ascii_digit(), c2.is_ascii_digit());
        if d1 != d2 {
            return d1;
        }
        if !d1 {
            if c1 != c2 {
                return c1 < c2;
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < s1.len() && s1[i] == b'0' {
            i += 1;
        }
        while j < s2.len() && s2[j] == b'0' {
            j += 1;
        }
        let (nz1, nz2) = (i, j);
        while i < s1.len() && s1[i].is_ascii_digit() {
            i += 1;
        }
        while j < s2.len() && s2[j].is_ascii_digit() {
            j += 1;
        }
        if i - nz1 != j - nz2 {
            return i - nz1 < j - nz2;
        }
        if s1[nz1..i] != s2[nz2..j] {
            return s1[nz1..i] < s2[nz2..j];
        }
        if nz1 != nz2 {
            return nz1 < nz2;
        }
    }
    s1.len() < s2.len()
}

async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let format = volume_format(args.format.as_deref().unwrap_or(""), args.quiet);
    let fmt = ListFormat::parse(&format, DEFAULT_TABLE, VOLUME_FIELDS)?;
    let q = Query::new("/volumes").opt("filters", format::filters_json(&args.filters)?.as_deref());
    let list: VolumeList = client.get_json(&q.build()).await?;
    let mut vols = list.volumes.unwrap_or_default();
    vols.sort_by(|x, y| {
        let (a, b) = (str_at(x, "Name"), str_at(y, "Name"));
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = vols.iter().map(volume_row).collect();
    super::out(&fmt.render(&rows, VOLUME_FIELDS)?)
}

async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<()> {
    inspect_objects(client, "volumes", &args.volumes, args.format.as_deref()).await
}

/// `volume inspect`, `network inspect`: `GET /<collection>/<name>` for each name, printed
/// as docker prints them (an indented JSON array, or `--format` per object); names that
/// fail are reported together after the others are printed.
pub(crate) async fn inspect_objects(
    client: &Client,
    collection: &str,
    names: &[String],
    format: Option<&str>,
) -> anyhow::Result<()> {
    let template = match format {
        None | Some("") | Some("json") => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let mut raws: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut rendered = String::new();
    for name in names {
        let path = format!("/{collection}/{}", path_escape(name));
        match client.get_bytes(&path).await {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("the daemon's answer to GET {path} is not JSON: {e}")
                })?;
                match &template {
                    Some(t) => match t.render(&value, Mode::Lenient) {
                        Ok(s) => {
                            rendered.push_str(&s);
                            rendered.push('\n');
                        }
                        Err(e) => errors.push(e.to_string()),
                    },
                    None => raws.push(text.trim().to_string()),
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if template.is_some() {
        super::out(&rendered)?;
    } else if raws.is_empty() {
        super::out("[]\n")?;
    } else {
        super::out(&format!(
            "{}\n",
            fjson::indent(&format!("[{}]", raws.join(",")), "    ")
        ))?;
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    Ok(())
}

async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for name in &args.volumes {
        let q = Query::new(format!("/volumes/{}", path_escape(name))).flag("force", args.force);
        match client
            .request(
                hyper::Method::DELETE,
                &q.build(),
                crate::client::empty(),
                None,
            )
            .await
        {
            Ok(_) => super::out(&format!("{name}\n"))?,
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PruneReport {
    #[serde(default)]
    volumes_deleted: Option<Vec<String>>,
    #[serde(default)]
    space_reclaimed: u64,
}

const ANONYMOUS_WARNING: &str = "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?";
const ALL_WARNING: &str = "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?";

/// docker's `prompt.Confirm`: `[y/N]`, yes only for `y` or `Y`.
pub fn confirm(message: &str) -> anyhow::Result<bool> {
    use std::io::BufRead as _;
    print!("{message} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y"))
}

async fn prune(client: &Client, args: PruneArgs) -> anyhow::Result<()> {
    let mut filters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(f) = format::filters_json(&args.filters)? {
        filters = serde_json::from_str(&f)?;
    }
    if args.all {
        if filters.contains_key("all") {
            anyhow::bail!("conflicting options: cannot specify both --all and --filter all=1");
        }
        filters
            .entry("all".into())
            .or_default()
            .insert("true".into(), Value::Bool(true));
    }
    if !args.force {
        let warning = if args.all {
            ALL_WARNING
        } else {
            ANONYMOUS_WARNING
        };
        let answer = tokio::task::spawn_blocking(move || confirm(warning)).await??;
        if !answer {
            return Ok(());
        }
    }
    let q = Query::new("/volumes/prune").opt("filters", format::add_filters(filters)?.as_deref());
    let report: PruneReport = client.post_json(&q.build()).await?;
    let deleted = report.volumes_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        let mut out = String::from("Deleted Volumes:\n");
        for n in &deleted {
            out.push_str(n);
            out.push('\n');
        }
        super::out(&format!("{out}\n"))?;
    }
    super::out(&format!(
        "Total reclaimed space: {}\n",
        units::human_size(report.space_reclaimed as f64)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["vol10", "vol2", "a", "vol1", "B", "vol02"];
        v.sort_by(|a, b| {
            if natural_less(a, b) {
                std::cmp::Ordering::Less
            } else if natural_less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        assert_eq!(v, ["B", "a", "vol1", "vol2", "vol02", "vol10"]);
    }

    #[test]
    fn rows_and_formats() {
        let v = json!({"Name":"data","Driver":"local","Scope":"local","Mountpoint":"/x",
                       "Labels":{"a":"1","b":""},"UsageData":{"Size":2048,"RefCount":1}});
        let r = volume_row(&v);
        assert_eq!(r["Labels"], "a=1,b=");
        assert_eq!(r["Links"], "1");
        assert_eq!(r["Size"], "2.048kB");
        assert_eq!(volume_row(&json!({"Name":"x"}))["Size"], "N/A");
        assert_eq!(volume_format("", true), "{{.Name}}");
        assert_eq!(volume_format("table", false), DEFAULT_TABLE);
        assert_eq!(kv_map(&["a=b".into(), "c".into()])["c"], "");
    }
}
