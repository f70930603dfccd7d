//! `version`, `info`, `system df`.

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::list::{image_row, ImageSummary, IMAGE_FIELDS};
use crate::client::Client;
use crate::format::tabwriter::TabWriter;
use crate::format::{self, template::go_print, units, Fields, ListFormat, Mode, Template};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Go's names for the machine, as `docker version` prints them.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[derive(Debug, Args)]
#[command(about = "Show the berth version information")]
pub struct VersionArgs {
    /// Format output using a custom template: 'json' or a Go-template like
    /// '{{.Server.Version}}'
    #[arg(short, long)]
    pub format: Option<String>,
}

fn client_version() -> Value {
    json!({
        "Platform": {"Name": ""},
        "Version": VERSION,
        "ApiVersion": berth_api::API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
    })
}

pub async fn version(client: &Client, args: VersionArgs) -> anyhow::Result<()> {
    let server = client.get_json::<Value>("/version").await;
    if let Some(f) = args.format.as_deref().filter(|f| !f.is_empty()) {
        let data = json!({"Client": client_version(), "Server": server.as_ref().ok()});
        let out = if f == "json" {
            format::template::to_json(&data)
        } else {
            Template::parse(f)?.render(&data, Mode::Lenient)?
        };
        super::out(&format!("{out}\n"))?;
        return server.map(|_| ());
    }
    let mut text = format!(
        "Client:\n Version:\t{VERSION}\n API version:\t{}\n OS/Arch:\t{}/{}\n",
        berth_api::API_VERSION,
        std::env::consts::OS,
        go_arch()
    );
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            super::out(
                &TabWriter {
                    minwidth: 20,
                    padding: 1,
                }
                .format(&text),
            )?;
            return Err(e);
        }
    };
    let s = |v: &Value, k: &str| v.get(k).map(go_print).unwrap_or_default();
    let platform = server
        .pointer("/Platform/Name")
        .and_then(Value::as_str)
        .unwrap_or("");
    text.push_str(&format!(
        "\nServer:{}{}\n",
        if platform.is_empty() { "" } else { " " },
        platform
    ));
    let components = server
        .get("Components")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if components.is_empty() {
        text.push_str(&format!(
            " Engine:\n  Version:\t{}\n  API version:\t{} (minimum version {})\n  OS/Arch:\t{}/{}\n",
            s(&server, "Version"),
            s(&server, "ApiVersion"),
            s(&server, "MinAPIVersion"),
            s(&server, "Os"),
            s(&server, "Arch")
        ));
    }
    for c in &components {
        let name = s(c, "Name");
        let empty = json!({});
        let details = c.get("Details").unwrap_or(&empty);
        text.push_str(&format!(" {name}:\n"));
        if name == "Engine" {
            text.push_str(&format!("  Version:\t{}\n", s(&server, "Version")));
            text.push_str(&format!(
                "  API version:\t{} (minimum version {})\n",
                s(details, "ApiVersion"),
                s(details, "MinAPIVersion")
            ));
            for (key, label) in [
                ("GoVersion", "Rust version"),
                ("GitCommit", "Git commit"),
                ("BuildTime", "Built"),
            ] {
                let v = s(details, key);
                if !v.is_empty() {
                    text.push_str(&format!("  {label}:\t{v}\n"));
                }
            }
            text.push_str(&format!(
                "  OS/Arch:\t{}/{}\n",
                s(details, "Os"),
                s(details, "Arch")
            ));
            text.push_str(&format!(
                "  Experimental:\t{}\n",
                s(details, "Experimental")
            ));
        } else {
            text.push_str(&format!("  Version:\t{}\n", s(c, "Version")));
            if let Some(d) = details.as_object() {
                let mut keys: Vec<&String> = d.keys().collect();
                keys.sort();
                for k in keys {
                    text.push_str(&format!("  {k}:\t{}\n", go_print(&d[k.as_str()])));
                }
            }
        }
    }
    super::out(
        &TabWriter {
            minwidth: 20,
            padding: 1,
        }
        .format(&text),
    )?;
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Display system-wide information")]
pub struct InfoArgs {
    /// Format output using a custom template: 'json' or a Go-template like
    /// '{{.Images}}'
    #[arg(short, long)]
    pub format: Option<String>,
}

pub async fn info(client: &Client, args: InfoArgs) -> anyhow::Result<()> {
    let server = client.get_json::<Value>("/info").await;
    if let Some(f) = args.format.as_deref().filter(|f| !f.is_empty()) {
        let server = server?;
        let out = if f == "json" {
            format::template::to_json(&server)
        } else {
            Template::parse(f)?.render(&server, Mode::Lenient)?
        };
        super::out(&format!("{out}\n"))?;
        return Ok(());
    }
    let mut out = format!(
        "Client:\n Version:    {VERSION}\n Context:    default\n Debug Mode: false\n\nServer:\n"
    );
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            super::out(&out)?;
            return Err(e);
        }
    };
    out.push_str(&server_info(&server));
    super::out(&out)?;
    if let Some(warnings) = server.get("Warnings").and_then(Value::as_array) {
        for w in warnings.iter().filter_map(Value::as_str) {
            eprintln!("{w}");
        }
    }
    Ok(())
}

/// The server part of `info`, in docker's order and wording.
fn server_info(server: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, indent: &str, label: &str, key: &str| {
        if let Some(v) = server.get(key).filter(|v| !v.is_null() && *v != "") {
            out.push_str(&format!("{indent}{label}: {}\n", go_print(v)));
        }
    };
    line(&mut out, " ", "Containers", "Containers");
    line(&mut out, "  ", "Running", "ContainersRunning");
    line(&mut out, "  ", "Paused", "ContainersPaused");
    line(&mut out, "  ", "Stopped", "ContainersStopped");
    line(&mut out, " ", "Images", "Images");
    line(&mut out, " ", "Server Version", "ServerVersion");
    line(&mut out, " ", "Storage Driver", "Driver");
    for pair in server
        .get("DriverStatus")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
            out.push_str(&format!("  {}: {}\n", go_print(k), go_print(v)));
        }
    }
    line(&mut out, " ", "Logging Driver", "LoggingDriver");
    line(&mut out, " ", "Cgroup Driver", "CgroupDriver");
    line(&mut out, " ", "Cgroup Version", "CgroupVersion");
    line(&mut out, " ", "Default Runtime", "DefaultRuntime");
    let security: Vec<&str> = server
        .get("SecurityOptions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !security.is_empty() {
        out.push_str(" Security Options:\n");
        // "name=seccomp,profile=builtin" -> "  seccomp\n   Profile: builtin"
        for opt in security {
            for (i, kv) in opt.split(',').enumerate() {
                let (k, v) = kv.split_once('=').unwrap_or(("name", kv));
                if i == 0 || k == "name" {
                    out.push_str(&format!("  {v}\n"));
                } else {
                    out.push_str(&format!("   {}: {v}\n", title_case(k)));
                }
            }
        }
    }
    line(&mut out, " ", "Kernel Version", "KernelVersion");
    line(&mut out, " ", "Operating System", "OperatingSystem");
    line(&mut out, " ", "OSType", "OSType");
    line(&mut out, " ", "Architecture", "Architecture");
    line(&mut out, " ", "CPUs", "NCPU");
    if let Some(mem) = server.get("MemTotal").and_then(Value::as_f64) {
        out.push_str(&format!(" Total Memory: {}\n", units::bytes_size(mem)));
    }
    line(&mut out, " ", "Name", "Name");
    line(&mut out, " ", "ID", "ID");
    line(&mut out, " ", "Berth Root Dir", "DockerRootDir");
    line(&mut out, " ", "Debug Mode", "Debug");
    line(&mut out, " ", "Experimental", "ExperimentalBuild");
    line(&mut out, " ", "Live Restore Enabled", "LiveRestoreEnabled");
    out
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[derive(Debug, Args)]
#[command(about = "Show berth disk usage")]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DiskUsage {
    #[serde(default)]
    layers_size: i64,
    #[serde(default)]
    images: Option<Vec<ImageSummary>>,
    #[serde(default)]
    containers: Option<Vec<Value>>,
    #[serde(default)]
    volumes: Option<Vec<Value>>,
    #[serde(default)]
    build_cache: Option<Vec<Value>>,
}

pub const DF_FIELDS: Fields = &[
    ("Active", "ACTIVE"),
    ("Reclaimable", "RECLAIMABLE"),
    ("Size", "SIZE"),
    ("TotalCount", "TOTAL"),
    ("Type", "TYPE"),
];

const DF_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";

fn num(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// `"1.2MB (40%)"` when there is a total, docker's reclaimable wording.
fn reclaimable(reclaim: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            units::human_size(reclaim as f64),
            reclaim * 100 / total
        )
    } else {
        units::human_size(reclaim as f64)
    }
}

fn df_rows(du: &DiskUsage) -> Vec<Value> {
    let images = du.images.as_deref().unwrap_or_default();
    let containers = du.containers.as_deref().unwrap_or_default();
    let volumes = du.volumes.as_deref().unwrap_or_default();
    let cache = du.build_cache.as_deref().unwrap_or_default();
    let size = |n: i64| units::human_size(n as f64);

    let used: i64 = images
        .iter()
        .filter(|i| i.containers != 0 && i.size != -1 && i.shared_size != -1)
        .map(|i| i.size - i.shared_size)
        .sum();
    let image_row = format::row(&[
        ("Type", "Images".into()),
        ("TotalCount", images.len().to_string()),
        (
            "Active",
            images
                .iter()
                .filter(|i| i.containers > 0)
                .count()
                .to_string(),
        ),
        ("Size", size(du.layers_size)),
        (
            "Reclaimable",
            reclaimable(du.layers_size - used, du.layers_size),
        ),
    ]);

    let active = |c: &&Value| {
        matches!(
            c.get("State").and_then(Value::as_str),
            Some("running" | "paused" | "restarting")
        )
    };
    let c_total: i64 = containers.iter().map(|c| num(c, "/SizeRw")).sum();
    let c_reclaim: i64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| num(c, "/SizeRw"))
        .sum();
    let container_row = format::row(&[
        ("Type", "Containers".into()),
        ("TotalCount", containers.len().to_string()),
        (
            "Active",
            containers.iter().filter(active).count().to_string(),
        ),
        ("Size", size(c_total)),
        ("Reclaimable", reclaimable(c_reclaim, c_total)),
    ]);

    let vsize = |v: &Value| num(v, "/UsageData/Size").max(0);
    let v_total: i64 = volumes.iter().map(vsize).sum();
    let v_reclaim: i64 = volumes
        .iter()
        .filter(|v| num(v, "/UsageData/RefCount") == 0)
        .map(vsize)
        .sum();
    let volume_row = format::row(&[
        ("Type", "Local Volumes".into()),
        ("TotalCount", volumes.len().to_string()),
        (
            "Active",
            volumes
                .iter()
                .filter(|v| num(v, "/UsageData/RefCount") > 0)
                .count()
                .to_string(),
        ),
        ("Size", size(v_total)),
        ("Reclaimable", reclaimable(v_reclaim, v_total)),
    ]);

    let flag = |b: &Value, k: &str| b.get(k).and_then(Value::as_bool).unwrap_or(false);
    let b_total: i64 = cache
        .iter()
        .filter(|b| !flag(b, "Shared"))
        .map(|b| num(b, "/Size"))
        .sum();
    let b_in_use: i64 = cache
        .iter()
        .filter(|b| flag(b, "InUse") && !flag(b, "Shared"))
        .map(|b| num(b, "/Size"))
        .sum();
    let cache_row = format::row(&[
        ("Type", "Build Cache".into()),
        ("TotalCount", cache.len().to_string()),
        (
            "Active",
            cache
                .iter()
                .filter(|b| flag(b, "InUse"))
                .count()
                .to_string(),
        ),
        ("Size", size(b_total)),
        ("Reclaimable", size(b_total - b_in_use)),
    ]);
    vec![image_row, container_row, volume_row, cache_row]
}

pub async fn df(client: &Client, args: DfArgs) -> anyhow::Result<()> {
    let fmt = ListFormat::parse(args.format.as_deref().unwrap_or(""), DF_TABLE, DF_FIELDS)?;
    let du: DiskUsage = client.get_json("/system/df").await?;
    if !args.verbose {
        super::out(&fmt.render(&df_rows(&du), DF_FIELDS)?)?;
        return Ok(());
    }
    super::out(&verbose_df(&du)?)?;
    Ok(())
}

/// `system df -v`: the four sections docker prints.
fn verbose_df(du: &DiskUsage) -> anyhow::Result<String> {
    let now = chrono::Utc::now();
    let mut out = String::from("Images space usage:\n\n");
    let img_fmt = ListFormat::parse(
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        "",
        IMAGE_FIELDS,
    )?;
    let rows: Vec<Value> = du
        .images
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            // docker shows only the first tag here.
            let (repo, tag) = i
                .repo_tags
                .first()
                .filter(|t| t.as_str() != "<none>:<none>")
                .and_then(|t| super::list::split_tag(t))
                .unwrap_or_else(|| ("<none>".into(), "<none>".into()));
            image_row(i, &repo, &tag, "<none>", true, now)
        })
        .collect();
    out.push_str(&img_fmt.render(&rows, IMAGE_FIELDS)?);

    out.push_str("\nContainers space usage:\n\n");
    let containers = du.containers.as_deref().unwrap_or_default();
    let mut t =
        String::from("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n");
    for c in containers {
        let s = |k: &str| c.get(k).map(go_print).unwrap_or_default();
        let names: Vec<String> = c
            .get("Names")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect()
            })
            .unwrap_or_default();
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            format::truncate_id(&s("Id")),
            s("Image"),
            format::ellipsis(&format!("\"{}\"", s("Command")), 20),
            c.get("Mounts")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0),
            units::human_size(num(c, "/SizeRw") as f64),
            units::since(num(c, "/Created"), now),
            s("Status"),
            names.join(",")
        ));
    }
    out.push_str(&format::tabwriter::DOCKER_TABLE.format(&t));

    out.push_str("\nLocal Volumes space usage:\n\n");
    let mut t = String::from("VOLUME NAME\tLINKS\tSIZE\n");
    for v in du.volumes.as_deref().unwrap_or_default() {
        t.push_str(&format!(
            "{}\t{}\t{}\n",
            v.get("Name").map(go_print).unwrap_or_default(),
            num(v, "/UsageData/RefCount"),
            units::human_size(num(v, "/UsageData/Size").max(0) as f64)
        ));
    }
    out.push_str(&format::tabwriter::DOCKER_TABLE.format(&t));

    let cache = du.build_cache.as_deref().unwrap_or_default();
    let total: i64 = cache
        .iter()
        .filter(|b| !b.get("Shared").and_then(Value::as_bool).unwrap_or(false))
        .map(|b| num(b, "/Size"))
        .sum();
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        units::human_size(total as f64)
    ));
    let mut t = String::from("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n");
    for b in cache {
        let s = |k: &str| b.get(k).map(go_print).unwrap_or_default();
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            s("ID"),
            s("Type"),
            units::human_size(num(b, "/Size") as f64),
            s("CreatedAt"),
            s("LastUsedAt"),
            s("UsageCount"),
            s("Shared")
        ));
    }
    out.push_str(&format::tabwriter::DOCKER_TABLE.format(&t));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_table_matches_docker() {
        let du: DiskUsage = serde_json::from_value(json!({
            "LayersSize": 4_300_000,
            "Images": [{"Id": "sha256:ab", "RepoTags": ["a:1"], "Created": 0, "Size": 4_300_000, "SharedSize": 0, "Containers": 0}],
            "Containers": [], "Volumes": [], "BuildCache": []
        }))
        .unwrap();
        let fmt = ListFormat::parse("", DF_TABLE, DF_FIELDS).unwrap();
        let out = fmt.render(&df_rows(&du), DF_FIELDS).unwrap();
        assert_eq!(
            out,
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          1         0         4.3MB     4.3MB (100%)\n\
             Containers      0         0         0B        0B\n\
             Local Volumes   0         0         0B        0B\n\
             Build Cache     0         0         0B        0B\n"
        );
    }
}
