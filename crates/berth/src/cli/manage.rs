//! `tag`, `rmi` / `image rm`, `image prune`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};

use clap::Args;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::transfer::split_reference;
use crate::client::{path_escape, ApiError, Client, Query};
use crate::format::{self, units};

#[derive(Debug, Args)]
#[command(about = "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub async fn tag(client: &Client, args: TagArgs) -> anyhow::Result<()> {
    let (repo, tag) = split_reference(&args.target)?;
    let q = Query::new(format!("/images/{}/tag", path_escape(&args.source)))
        .opt("repo", repo.as_deref())
        .arg("tag", tag.unwrap_or_else(|| "latest".to_string()));
    client
        .post(&q.build(), crate::client::empty(), None)
        .await?;
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Remove one or more images")]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// One entry of a delete report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteItem {
    #[serde(default)]
    pub untagged: String,
    #[serde(default)]
    pub deleted: String,
}

pub async fn rmi(client: &Client, args: RmiArgs) -> anyhow::Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let mut fatal = false;
    for name in &args.images {
        let q = Query::new(format!("/images/{}", path_escape(name)))
            .flag("force", args.force)
            .flag("noprune", args.no_prune);
        match client.delete_json::<Vec<DeleteItem>>(&q.build()).await {
            Ok(items) => {
                let mut out = std::io::stdout().lock();
                for i in items {
                    if !i.deleted.is_empty() {
                        writeln!(out, "Deleted: {}", i.deleted).map_err(super::stdout_error)?;
                    } else {
                        writeln!(out, "Untagged: {}", i.untagged).map_err(super::stdout_error)?;
                    }
                }
            }
            Err(e) => {
                let not_found = e
                    .downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == StatusCode::NOT_FOUND);
                fatal |= !not_found;
                errors.push(e.to_string());
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let msg = errors.join("\n");
    // docker: with --force, images that do not exist are reported but not a failure.
    if !args.force || fatal {
        anyhow::bail!("{msg}");
    }
    eprintln!("{msg}");
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Remove unused images")]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=<key>=<value>")
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PruneReport {
    #[serde(default)]
    images_deleted: Option<Vec<DeleteItem>>,
    #[serde(default)]
    space_reclaimed: u64,
}

const DANGLING_WARNING: &str =
    "WARNING! This will remove all dangling images.\nAre you sure you want to continue?";
const ALL_WARNING: &str = "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?";

/// docker's `prompt.Confirm`: `[y/N]`, yes only for `y` or `Y`.
pub(crate) fn confirm(message: &str) -> anyhow::Result<bool> {
    print!("{message} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y"))
}

pub async fn prune(client: &Client, args: PruneArgs) -> anyhow::Result<()> {
    let mut filters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(f) = format::filters_json(&args.filters)? {
        filters = serde_json::from_str(&f)?;
    }
    filters
        .entry("dangling".into())
        .or_default()
        .insert((!args.all).to_string(), Value::Bool(true));
    if !args.force {
        let warning = if args.all {
            ALL_WARNING
        } else {
            DANGLING_WARNING
        };
        let answer = tokio::task::spawn_blocking(move || confirm(warning)).await??;
        if !answer {
            // docker: a cancelled prune is not a failure, and says nothing more.
            return Ok(());
        }
    }
    let q = Query::new("/images/prune").opt("filters", format::add_filters(filters)?.as_deref());
    let report: PruneReport = client.post_json(&q.build()).await?;
    let mut out = String::new();
    let deleted = report.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for i in &deleted {
            if !i.untagged.is_empty() {
                out.push_str(&format!("untagged: {}\n", i.untagged));
            } else {
                out.push_str(&format!("deleted: {}\n", i.deleted));
            }
        }
        super::out(&format!("{out}\n"))?;
    }
    super::out(&format!(
        "Total reclaimed space: {}\n",
        units::human_size(report.space_reclaimed as f64)
    ))?;
    Ok(())
}
