//! `images` / `image ls`: the image table, as `docker images` prints it.

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::{Client, Query};
use crate::format::{self, units, Fields, ListFormat};

#[derive(Debug, Args)]
#[command(about = "List images")]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (dangling=, label=, before=, since=,
    /// reference=, until=)
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template like '{{.ID}} {{.Repository}}:{{.Tag}}'
    #[arg(long)]
    pub format: Option<String>,
    /// Only images whose name matches (a reference filter)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// A row of `GET /images/json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    #[serde(default)]
    pub id: String,
    #[serde(default, deserialize_with = "null_vec")]
    pub repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub repo_digests: Vec<String>,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub size: i64,
    #[serde(default = "minus_one")]
    pub shared_size: i64,
    #[serde(default = "minus_one")]
    pub containers: i64,
}

fn minus_one() -> i64 {
    -1
}

/// `null` as an empty list (Go encodes nil slices as null).
pub fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

pub const IMAGE_FIELDS: Fields = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

const DEFAULT_TABLE: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const DEFAULT_TABLE_DIGEST: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// docker's `NewImageFormat`.
pub fn image_format(format: &str, quiet: bool, digests: bool) -> String {
    if format.is_empty() || format == "table" {
        return if quiet {
            "{{.ID}}".to_string()
        } else if digests {
            DEFAULT_TABLE_DIGEST.to_string()
        } else {
            DEFAULT_TABLE.to_string()
        };
    }
    let mut f = format.to_string();
    if f.starts_with("table") && digests && !f.contains("{{.Digest}}") {
        f.push_str("\t{{.Digest}}");
    }
    f
}

/// The familiar form of a name: `docker.io/library/x` is `x`.
pub fn familiar(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/")
        .filter(|rest| !rest.contains('/'))
        .unwrap_or(n)
        .to_string()
}

/// Splits `repo:tag` (the tag is after the last `:` past the last `/`).
pub fn split_tag(s: &str) -> Option<(String, String)> {
    let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    let i = s[slash..].rfind(':')? + slash;
    Some((familiar(&s[..i]), s[i + 1..].to_string()))
}

fn is_dangling(img: &ImageSummary) -> bool {
    (img.repo_tags.is_empty() && img.repo_digests.is_empty())
        || (img.repo_tags == ["<none>:<none>"] && img.repo_digests == ["<none>@<none>"])
}

/// (repository, tag, digest) rows of one image, as docker's `imageFormatTaggedAndDigest`
/// makes them (sorted, where docker's order depends on Go map iteration).
pub fn image_rows(img: &ImageSummary, with_digests: bool) -> Vec<(String, String, String)> {
    let none = || "<none>".to_string();
    if is_dangling(img) {
        return vec![(none(), none(), none())];
    }
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &img.repo_tags {
        if let Some((repo, tag)) = split_tag(t) {
            tags.entry(repo).or_default().push(tag);
        }
    }
    let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &img.repo_digests {
        if let Some((repo, dg)) = d.split_once('@') {
            digests
                .entry(familiar(repo))
                .or_default()
                .push(dg.to_string());
        }
    }
    let mut rows = Vec::new();
    for (repo, ts) in &tags {
        let ds = digests
            .remove(repo)
            .filter(|_| with_digests)
            .unwrap_or_default();
        for t in ts {
            if ds.is_empty() {
                rows.push((repo.clone(), t.clone(), none()));
            }
            for d in &ds {
                rows.push((repo.clone(), t.clone(), d.clone()));
            }
        }
    }
    for (repo, ds) in digests {
        if with_digests {
            for d in ds {
                rows.push((repo.clone(), none(), d));
            }
        } else {
            rows.push((repo, none(), none()));
        }
    }
    rows
}

/// The template data of one row (docker's `imageContext`).
pub fn image_row(
    img: &ImageSummary,
    repo: &str,
    tag: &str,
    digest: &str,
    trunc: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let size = |n: i64| units::human_size(n as f64);
    format::row(&[
        (
            "Containers",
            if img.containers == -1 {
                "N/A".into()
            } else {
                img.containers.to_string()
            },
        ),
        ("CreatedAt", units::go_time_string(img.created)),
        ("CreatedSince", units::since(img.created, now)),
        ("Digest", digest.to_string()),
        (
            "ID",
            if trunc {
                format::truncate_id(&img.id)
            } else {
                img.id.clone()
            },
        ),
        ("Repository", repo.to_string()),
        (
            "SharedSize",
            if img.shared_size == -1 {
                "N/A".into()
            } else {
                size(img.shared_size)
            },
        ),
        ("Size", units::human_size_with_precision(img.size as f64, 3)),
        ("Tag", tag.to_string()),
        (
            "UniqueSize",
            if img.size == -1 || img.shared_size == -1 {
                "N/A".into()
            } else {
                size(img.size - img.shared_size)
            },
        ),
        ("VirtualSize", size(img.size)),
    ])
}

pub async fn images(client: &Client, args: ImagesArgs) -> anyhow::Result<()> {
    let format = image_format(
        args.format.as_deref().unwrap_or(""),
        args.quiet,
        args.digests,
    );
    let fmt = ListFormat::parse(&format, DEFAULT_TABLE, IMAGE_FIELDS)?;
    let mut filters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(f) = format::filters_json(&args.filters)? {
        filters = serde_json::from_str(&f)?;
    }
    if let Some(r) = &args.reference {
        filters
            .entry("reference".into())
            .or_default()
            .insert(r.clone(), Value::Bool(true));
    }
    let q = Query::new("/images/json")
        .flag("all", args.all)
        .opt("filters", format::add_filters(filters)?.as_deref());
    let list: Vec<ImageSummary> = client.get_json(&q.build()).await?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for img in &list {
        for (repo, tag, digest) in image_rows(img, args.digests) {
            rows.push(image_row(img, &repo, &tag, &digest, !args.no_trunc, now));
        }
    }
    super::out(&fmt.render(&rows, IMAGE_FIELDS)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(tags: &[&str], digests: &[&str]) -> ImageSummary {
        ImageSummary {
            id: "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617".into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: 0,
            size: 4_300_000,
            shared_size: -1,
            containers: -1,
        }
    }

    #[test]
    fn rows_per_tag() {
        let i = img(
            &["fixture/app:1", "fixture/app:2", "localhost:5000/x:v"],
            &[],
        );
        let rows: Vec<(String, String)> = image_rows(&i, false)
            .into_iter()
            .map(|(r, t, _)| (r, t))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("fixture/app".into(), "1".into()),
                ("fixture/app".into(), "2".into()),
                ("localhost:5000/x".into(), "v".into())
            ]
        );
        assert_eq!(
            image_rows(&img(&[], &[]), false),
            vec![("<none>".into(), "<none>".into(), "<none>".into())]
        );
    }

    #[test]
    fn digest_rows() {
        let i = img(&["a:1"], &["a@sha256:aa", "b@sha256:bb"]);
        assert_eq!(
            image_rows(&i, true),
            vec![
                ("a".into(), "1".into(), "sha256:aa".into()),
                ("b".into(), "<none>".into(), "sha256:bb".into())
            ]
        );
        assert_eq!(
            image_rows(&i, false),
            vec![
                ("a".into(), "1".into(), "<none>".into()),
                ("b".into(), "<none>".into(), "<none>".into())
            ]
        );
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/fixture/app"), "fixture/app");
        assert_eq!(familiar("fixture/app"), "fixture/app");
        assert_eq!(
            split_tag("docker.io/library/busybox:latest"),
            Some(("busybox".into(), "latest".into()))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(image_format("", true, false), "{{.ID}}");
        assert_eq!(
            image_format("table {{.ID}}", false, true),
            "table {{.ID}}\t{{.Digest}}"
        );
        assert_eq!(image_format("", false, true), DEFAULT_TABLE_DIGEST);
    }

    #[test]
    fn json_row_matches_docker() {
        let now = chrono::DateTime::from_timestamp(7200, 0).unwrap();
        let row = image_row(
            &img(&["fixture/app:1"], &[]),
            "fixture/app",
            "1",
            "<none>",
            true,
            now,
        );
        let s = serde_json::to_string(&row).unwrap();
        assert!(s.starts_with(r#"{"Containers":"N/A","CreatedAt":""#), "{s}");
        assert!(s.ends_with(r#""CreatedSince":"2 hours ago","Digest":"<none>","ID":"60531c6e24d2","Repository":"fixture/app","SharedSize":"N/A","Size":"4.3MB","Tag":"1","UniqueSize":"N/A","VirtualSize":"4.3MB"}"#), "{s}");
    }
}
