//! `image inspect` / `inspect` and `image history` / `history`.

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{path_escape, ApiError, Client, Query};
use crate::format::{self, json, units, Fields, ListFormat, Mode, Template};

#[derive(Debug, Args)]
#[command(about = "Return low-level information on containers and images")]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go-template like '{{.Id}}'
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes (containers)
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type (container or image)
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub objects: Vec<String>,
}

/// What `inspect` looks for: `inspect` (containers, then images), `container inspect`,
/// `image inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Any,
    Container,
    Image,
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND)
}

/// Prints the daemon's JSON for each object: an array indented as docker indents it,
/// or one template rendering per object. Errors are reported after the output, and the
/// exit status is 1, as docker does.
pub async fn inspect(client: &Client, args: InspectArgs, scope: Scope) -> anyhow::Result<()> {
    let scope = match (scope, args.kind.as_deref()) {
        (s, None | Some("")) => s,
        (Scope::Any, Some("container")) => Scope::Container,
        (Scope::Any, Some("image")) => Scope::Image,
        (_, Some(kind)) => {
            anyhow::bail!(
                "\"{kind}\" is not a valid value for --type: berth inspects containers and images"
            )
        }
    };
    let template = match args.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let mut raws: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut rendered = String::new();
    for name in &args.objects {
        let container_path = Query::new(format!("/containers/{}/json", path_escape(name)))
            .flag("size", args.size)
            .build();
        let image_path = format!("/images/{}/json", path_escape(name));
        let found = match scope {
            Scope::Container => client
                .get_bytes(&container_path)
                .await
                .map(|b| (b, container_path.clone())),
            Scope::Image => client
                .get_bytes(&image_path)
                .await
                .map(|b| (b, image_path.clone())),
            Scope::Any => match client.get_bytes(&container_path).await {
                Err(e) if is_not_found(&e) => client
                    .get_bytes(&image_path)
                    .await
                    .map(|b| (b, image_path.clone())),
                other => other.map(|b| (b, container_path.clone())),
            },
        };
        match found {
            Ok((bytes, path)) => {
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
            Err(e) => {
                if scope == Scope::Any && is_not_found(&e) {
                    errors.push(format!("Error: No such object: {name}"));
                } else {
                    errors.push(e.to_string());
                }
            }
        }
    }
    if template.is_some() {
        super::out(&rendered)?;
    } else if raws.is_empty() {
        super::out("[]\n")?;
    } else {
        super::out(&format!(
            "{}\n",
            json::indent(&format!("[{}]", raws.join(",")), "    ")
        ))?;
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(about = "Show the history of an image")]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long)]
    pub format: Option<String>,
    /// Show history for the given platform (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryItem {
    #[serde(default)]
    id: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    comment: String,
}

pub const HISTORY_FIELDS: Fields = &[
    ("Comment", "COMMENT"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("CreatedSince", "CREATED"),
    ("ID", "IMAGE"),
    ("Size", "SIZE"),
];

const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
const HISTORY_TABLE_NON_HUMAN: &str =
    "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

pub async fn history(client: &Client, args: HistoryArgs) -> anyhow::Result<()> {
    // docker's NewHistoryFormat.
    let format = match args.format.as_deref() {
        None | Some("") | Some("table") if args.quiet => "{{.ID}}",
        None | Some("") | Some("table") if !args.human => HISTORY_TABLE_NON_HUMAN,
        None | Some("") | Some("table") => HISTORY_TABLE,
        Some(f) => f,
    };
    let fmt = ListFormat::parse(format, HISTORY_TABLE, HISTORY_FIELDS)?;
    let q = Query::new(format!("/images/{}/history", path_escape(&args.image)))
        .opt("platform", args.platform.as_deref());
    let items: Vec<HistoryItem> = client.get_json(&q.build()).await?;
    let now = chrono::Utc::now();
    let trunc = !args.no_trunc;
    let rows: Vec<Value> = items
        .iter()
        .map(|h| {
            let created_at = units::rfc3339_local(h.created);
            let created_by = h.created_by.replace('\t', " ");
            format::row(&[
                ("Comment", h.comment.clone()),
                ("CreatedAt", created_at.clone()),
                (
                    "CreatedBy",
                    if trunc {
                        format::ellipsis(&created_by, 45)
                    } else {
                        created_by
                    },
                ),
                (
                    "CreatedSince",
                    if args.human {
                        units::since(h.created, now)
                    } else {
                        created_at
                    },
                ),
                (
                    "ID",
                    if trunc {
                        format::truncate_id(&h.id)
                    } else {
                        h.id.clone()
                    },
                ),
                (
                    "Size",
                    if args.human {
                        units::human_size_with_precision(h.size as f64, 3)
                    } else {
                        h.size.to_string()
                    },
                ),
            ])
        })
        .collect();
    super::out(&fmt.render(&rows, HISTORY_FIELDS)?)?;
    Ok(())
}
