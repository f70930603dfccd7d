//! Output formatting shared by the verbs: docker-style `--format` strings over rows,
//! tables laid out like Go's tabwriter, and docker's wording of sizes and times.

pub mod json;
pub mod tabwriter;
pub mod template;
pub mod units;

use serde_json::{Map, Value};

pub use template::{Mode, Template, TemplateError};

/// A `--format` for a listing (images, history, system df): a table with a header row,
/// or one rendered line per row.
#[derive(Debug, Clone)]
pub struct ListFormat {
    table: bool,
    template: Template,
}

/// The listing's fields and their header names, in the order `{{json .}}` prints them.
pub type Fields = &'static [(&'static str, &'static str)];

impl ListFormat {
    /// Parses a `--format` value as the docker CLI does: `table` (or empty) is
    /// `default_table`; `json` is `{{json .}}`; a leading `table ` makes a table;
    /// `\t` and `\n` are tab and newline. Unknown fields are refused.
    pub fn parse(
        format: &str,
        default_table: &str,
        fields: Fields,
    ) -> Result<ListFormat, TemplateError> {
        let source = if format.is_empty() || format == "table" {
            default_table
        } else {
            format
        };
        let (table, body) = match source.strip_prefix("table") {
            Some(rest) => (true, rest),
            None if source == "json" => (false, "{{json .}}"),
            None => (false, source),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let template = Template::parse(&body)?;
        let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
        template.check_fields(&names)?;
        Ok(ListFormat { table, template })
    }

    /// Renders the rows: for a table, a header row and columns aligned as docker
    /// aligns them.
    pub fn render(&self, rows: &[Value], fields: Fields) -> Result<String, TemplateError> {
        let mut buf = String::new();
        if self.table {
            let header: Map<String, Value> = fields
                .iter()
                .map(|(k, h)| ((*k).to_string(), Value::String((*h).to_string())))
                .collect();
            buf.push_str(&self.template.render(&Value::Object(header), Mode::Header)?);
            buf.push('\n');
        }
        for r in rows {
            buf.push_str(&self.template.render(r, Mode::Strict)?);
            buf.push('\n');
        }
        Ok(if self.table {
            tabwriter::DOCKER_TABLE.format(&buf)
        } else {
            buf
        })
    }
}

/// A row of string fields, keys sorted as Go's JSON encoder sorts a map.
pub fn row(values: &[(&str, String)]) -> Value {
    let mut pairs: Vec<&(&str, String)> = values.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert((*k).to_string(), Value::String(v.clone()));
    }
    Value::Object(m)
}

/// docker's `TruncateID`: drops the algorithm and keeps 12 characters.
pub fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    id.chars().take(12).collect()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Parses `-f/--filter key=value` arguments into the Docker API's filter JSON
/// (`{"key":{"value":true}}`).
pub fn filters_json(args: &[String]) -> anyhow::Result<Option<String>> {
    let mut m: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            anyhow::bail!("bad format of filter (expected name=value): {a}");
        };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() {
            anyhow::bail!("bad format of filter (expected name=value): {a}");
        }
        m.entry(k)
            .or_default()
            .insert(v.trim().to_string(), Value::Bool(true));
    }
    add_filters(m)
}

/// Serializes a filter map, `None` when empty.
pub fn add_filters(
    m: std::collections::BTreeMap<String, Map<String, Value>>,
) -> anyhow::Result<Option<String>> {
    if m.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(&m)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: Fields = &[
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
    ];

    #[test]
    fn table_format_with_header() {
        let f = ListFormat::parse(r"table {{.Repository}}\t{{.Tag}}", "", FIELDS).unwrap();
        let rows = vec![json!({"Repository": "fixture/app", "Tag": "1", "ID": "x"})];
        assert_eq!(
            f.render(&rows, FIELDS).unwrap(),
            "REPOSITORY    TAG\nfixture/app   1\n"
        );
    }

    #[test]
    fn default_table_and_json() {
        let f = ListFormat::parse("", "table {{.ID}}\t{{.Tag}}", FIELDS).unwrap();
        assert!(f.table);
        assert_eq!(f.render(&[], FIELDS).unwrap(), "IMAGE ID   TAG\n");
        let j = ListFormat::parse("json", "table {{.ID}}", FIELDS).unwrap();
        let rows = vec![row(&[("Tag", "1".into()), ("ID", "x".into())])];
        assert_eq!(
            j.render(&rows, FIELDS).unwrap(),
            "{\"ID\":\"x\",\"Tag\":\"1\"}\n"
        );
    }

    #[test]
    fn whole_row_json_escapes_html_like_go() {
        let j = ListFormat::parse("{{json .}}", "", FIELDS).unwrap();
        let rows = vec![row(&[("Tag", "<none>".into())])];
        assert_eq!(
            j.render(&rows, FIELDS).unwrap(),
            "{\"Tag\":\"\\u003cnone\\u003e\"}\n"
        );
        let f = ListFormat::parse("{{json .Tag}}", "", FIELDS).unwrap();
        assert_eq!(f.render(&rows, FIELDS).unwrap(), "\"<none>\"\n");
    }

    #[test]
    fn plain_template_lines() {
        let f = ListFormat::parse("{{.ID}} {{.Repository}}:{{.Tag}}", "", FIELDS).unwrap();
        let rows = vec![
            json!({"Repository": "a", "Tag": "1", "ID": "x"}),
            json!({"Repository": "b", "Tag": "2", "ID": "y"}),
        ];
        assert_eq!(f.render(&rows, FIELDS).unwrap(), "x a:1\ny b:2\n");
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = ListFormat::parse("{{.Repo}}", "", FIELDS).unwrap_err();
        assert!(e.to_string().contains("can't evaluate field Repo"), "{e}");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(
            truncate_id("sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617"),
            "60531c6e24d2"
        );
        assert_eq!(truncate_id("<missing>"), "<missing>");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn filter_args() {
        let f =
            filters_json(&["dangling=true".into(), "label=a=b".into(), "label=c".into()]).unwrap();
        assert_eq!(
            f.as_deref(),
            Some(r#"{"dangling":{"true":true},"label":{"a=b":true,"c":true}}"#)
        );
        assert_eq!(filters_json(&[]).unwrap(), None);
        assert!(filters_json(&["nokey".into()]).is_err());
        assert!(filters_json(&["=v".into()]).is_err());
    }
}
