//! A subset of Go's `text/template`, enough for the `--format` strings people pass to
//! the docker CLI: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{join .X ","}}`,
//! pipelines (`{{.X | upper}}`), `{{if}}`/`{{else}}`/`{{range}}`/`{{with}}`/`{{end}}`,
//! trim markers (`{{-`, `-}}`) and the docker CLI's functions (`json`, `join`, `split`,
//! `upper`, `lower`, `title`, `pad`, `truncate`) plus Go's `len`, `index`, `eq`, `ne`,
//! `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `print`, `println`, `printf`.
//!
//! Data is JSON. Values print as Go prints them: lists as `[a b]`, maps as `map[k:v]`,
//! null as `<nil>`, a missing map key as `<no value>`.

use std::fmt;

use serde_json::Value;

use super::units::go_float;

/// A template error, worded like docker's ("template parsing error: …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template parsing error: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

type Result<T> = std::result::Result<T, TemplateError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.` (empty path) or `.A.B`.
    Dot(Vec<String>),
    /// `$` or `$.A.B`: fields of the top-level data.
    Root(Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline)`, optionally followed by `.Field` chains.
    Paren(Pipeline, Vec<String>),
}

type Command = Vec<Arg>;
type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// How a template reads its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A field missing from an object is an error (rows of a listing: the fields are
    /// known, so a typo should not print silently).
    Strict,
    /// The data is free-form JSON (`inspect`): a missing key is an error worded as
    /// Go's `missingkey=error` words it.
    Lenient,
    /// Renders a table header: fields are looked up in a map of header names and the
    /// formatting functions return their argument unchanged (docker's HeaderFunctions).
    Header,
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Root(Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
}

/// Splits the source into text and action pieces, applying trim markers.
fn split_actions(src: &str) -> Result<Vec<(bool, String)>> {
    let mut pieces: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next_text = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next_text {
            text = text.trim_start().to_string();
        }
        let mut body = &rest[start + 2..];
        if body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n") {
            text = text.trim_end().to_string();
            body = &body[1..];
        }
        if !text.is_empty() {
            pieces.push((false, text));
        }
        let end = find_action_end(body)?;
        let mut action = &body[..end];
        trim_next_text = false;
        if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
            action = &action[..action.len() - 1];
            trim_next_text = true;
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            pieces.push((true, action.to_string()));
        }
        rest = &body[end + 2..];
    }
    let mut text = rest.to_string();
    if trim_next_text {
        text = text.trim_start().to_string();
    }
    if !text.is_empty() {
        pieces.push((false, text));
    }
    Ok(pieces)
}

/// Byte offset of the `}}` closing an action, skipping quoted strings.
fn find_action_end(s: &str) -> Result<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    err("unclosed action: missing \"}}\"")
}

fn field_chain(s: &str) -> Result<Vec<String>> {
    // s starts after the leading '.', e.g. "Config.Env" or "".
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    for p in &parts {
        if p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return err(format!("bad field name in \".{s}\""));
        }
    }
    Ok(parts)
}

fn lex_action(s: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let word_end = |mut j: usize| {
        while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.')) {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
                // `(…).Field`
                if i < chars.len() && chars[i] == '.' {
                    let j = word_end(i + 1);
                    let chain: String = chars[i + 1..j].iter().collect();
                    toks.push(Tok::Field(field_chain(&chain)?));
                    i = j;
                }
            }
            '"' => {
                let mut j = i + 1;
                let mut lit = String::from('"');
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        lit.push(chars[j]);
                        j += 1;
                    }
                    lit.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return err("unterminated quoted string");
                }
                lit.push('"');
                let v: String = serde_json::from_str(&lit)
                    .map_err(|_| TemplateError(format!("bad string literal {lit}")))?;
                toks.push(Tok::Str(v));
                i = j + 1;
            }
            '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '`' {
                    j += 1;
                }
                if j >= chars.len() {
                    return err("unterminated raw quoted string");
                }
                toks.push(Tok::Str(chars[i + 1..j].iter().collect()));
                i = j + 1;
            }
            '.' => {
                let j = word_end(i + 1);
                let chain: String = chars[i + 1..j].iter().collect();
                toks.push(Tok::Field(field_chain(&chain)?));
                i = j;
            }
            '$' => {
                let j = word_end(i + 1);
                let rest: String = chars[i + 1..j].iter().collect();
                if !rest.is_empty() && !rest.starts_with('.') {
                    return err(format!("template variables (${rest}) are not supported"));
                }
                toks.push(Tok::Root(field_chain(
                    rest.strip_prefix('.').unwrap_or(""),
                )?));
                i = j;
            }
            ':' | '=' | ',' => return err(format!("template variables are not supported: {s:?}")),
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.') {
                    j += 1;
                }
                toks.push(Tok::Num(chars[i..j].iter().collect()));
                i = j;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                toks.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            other => return err(format!("unexpected {other:?} in action {s:?}")),
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------- parsing

fn parse_pipeline(toks: &[Tok]) -> Result<Pipeline> {
    let mut pipeline = Vec::new();
    let mut cmd: Command = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return err("missing command before \"|\"");
                }
                pipeline.push(std::mem::take(&mut cmd));
                i += 1;
                continue;
            }
            Tok::LParen => {
                let mut depth = 1;
                let mut j = i + 1;
                while j < toks.len() {
                    match toks[j] {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= toks.len() {
                    return err("unclosed left paren");
                }
                let inner = parse_pipeline(&toks[i + 1..j])?;
                let mut chain = Vec::new();
                if let Some(Tok::Field(f)) = toks.get(j + 1) {
                    chain = f.clone();
                    i = j + 2;
                } else {
                    i = j + 1;
                }
                cmd.push(Arg::Paren(inner, chain));
                continue;
            }
            Tok::RParen => return err("unexpected right paren"),
            Tok::Field(f) => cmd.push(Arg::Dot(f.clone())),
            Tok::Root(f) => cmd.push(Arg::Root(f.clone())),
            Tok::Str(s) => cmd.push(Arg::Str(s.clone())),
            Tok::Num(n) => {
                if let Ok(v) = n.parse::<i64>() {
                    cmd.push(Arg::Int(v));
                } else if let Ok(v) = n.parse::<f64>() {
                    cmd.push(Arg::Float(v));
                } else {
                    return err(format!("bad number syntax: {n:?}"));
                }
            }
            Tok::Ident(id) => match id.as_str() {
                "true" => cmd.push(Arg::Bool(true)),
                "false" => cmd.push(Arg::Bool(false)),
                "nil" => cmd.push(Arg::Nil),
                _ => {
                    if !is_known_function(id) {
                        return err(format!("function {id:?} not defined"));
                    }
                    cmd.push(Arg::Func(id.clone()));
                }
            },
        }
        i += 1;
    }
    if cmd.is_empty() {
        return err("missing value for command");
    }
    pipeline.push(cmd);
    Ok(pipeline)
}

fn is_known_function(name: &str) -> bool {
    matches!(
        name,
        "json"
            | "join"
            | "split"
            | "upper"
            | "lower"
            | "title"
            | "pad"
            | "truncate"
            | "len"
            | "index"
            | "eq"
            | "ne"
            | "lt"
            | "le"
            | "gt"
            | "ge"
            | "and"
            | "or"
            | "not"
            | "print"
            | "println"
            | "printf"
    )
}

enum Control {
    If(Pipeline),
    Range(Pipeline),
    With(Pipeline),
    Else(Option<(String, Pipeline)>),
    End,
}

fn control_of(action: &str) -> Result<Option<Control>> {
    let toks = lex_action(action)?;
    let Some(Tok::Ident(first)) = toks.first() else {
        return Ok(None);
    };
    let rest = &toks[1..];
    let need = |what: &str| -> Result<Pipeline> {
        if rest.is_empty() {
            return err(format!("missing value for {what}"));
        }
        parse_pipeline(rest)
    };
    Ok(Some(match first.as_str() {
        "if" => Control::If(need("if")?),
        "range" => Control::Range(need("range")?),
        "with" => Control::With(need("with")?),
        "end" => Control::End,
        "else" => match rest.first() {
            None => Control::Else(None),
            Some(Tok::Ident(kw)) if kw == "if" || kw == "with" => {
                if rest.len() < 2 {
                    return err(format!("missing value for {kw}"));
                }
                Control::Else(Some((kw.clone(), parse_pipeline(&rest[1..])?)))
            }
            Some(_) => return err("unexpected argument to else"),
        },
        "define" | "template" | "block" | "break" | "continue" => {
            return err(format!("{first:?} is not supported"))
        }
        _ => return Ok(None),
    }))
}

struct Parser {
    pieces: Vec<(bool, String)>,
    pos: usize,
}

/// Where a list of nodes stopped.
enum Stop {
    Eof,
    End,
    Else(Option<(String, Pipeline)>),
}

impl Parser {
    fn parse_list(&mut self) -> Result<(Vec<Node>, Stop)> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let (is_action, s) = self.pieces[self.pos].clone();
            self.pos += 1;
            if !is_action {
                nodes.push(Node::Text(s));
                continue;
            }
            match control_of(&s)? {
                None => {
                    let toks = lex_action(&s)?;
                    if toks.is_empty() {
                        return err("missing value for command");
                    }
                    nodes.push(Node::Action(parse_pipeline(&toks)?));
                }
                Some(Control::End) => return Ok((nodes, Stop::End)),
                Some(Control::Else(e)) => return Ok((nodes, Stop::Else(e))),
                Some(Control::If(p)) => {
                    let (a, b) = self.parse_branches("if")?;
                    nodes.push(Node::If(p, a, b));
                }
                Some(Control::Range(p)) => {
                    let (a, b) = self.parse_branches("range")?;
                    nodes.push(Node::Range(p, a, b));
                }
                Some(Control::With(p)) => {
                    let (a, b) = self.parse_branches("with")?;
                    nodes.push(Node::With(p, a, b));
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// The body of an if/range/with up to its `{{end}}`, and the `{{else}}` part.
    fn parse_branches(&mut self, what: &str) -> Result<(Vec<Node>, Vec<Node>)> {
        let (body, stop) = self.parse_list()?;
        match stop {
            Stop::End => Ok((body, Vec::new())),
            Stop::Eof => err(format!("unexpected EOF: {{{{{what}}}}} has no {{{{end}}}}")),
            Stop::Else(None) => {
                let (other, stop) = self.parse_list()?;
                match stop {
                    Stop::End => Ok((body, other)),
                    Stop::Eof => err(format!("unexpected EOF: {{{{{what}}}}} has no {{{{end}}}}")),
                    Stop::Else(_) => err("expected {{end}} after {{else}}"),
                }
            }
            Stop::Else(Some((kw, p))) => {
                // `{{else if x}}` is `{{else}}{{if x}}…{{end}}{{end}}` sharing the end.
                let (a, b) = self.parse_branches(&kw)?;
                let nested = if kw == "if" {
                    Node::If(p, a, b)
                } else {
                    Node::With(p, a, b)
                };
                Ok((body, vec![nested]))
            }
        }
    }
}

impl Template {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Template> {
        let mut p = Parser {
            pieces: split_actions(src)?,
            pos: 0,
        };
        let (nodes, stop) = p.parse_list()?;
        match stop {
            Stop::Eof => Ok(Template { nodes }),
            Stop::End => err("unexpected {{end}}"),
            Stop::Else(_) => err("unexpected {{else}}"),
        }
    }

    /// Checks that every field read from the top-level data is one of `fields`, so a
    /// typo fails before anything is printed.
    pub fn check_fields(&self, fields: &[&str]) -> Result<()> {
        fn arg(a: &Arg, top: bool, fields: &[&str]) -> Result<()> {
            let check = |path: &[String]| -> Result<()> {
                match path.first() {
                    Some(f) if !fields.contains(&f.as_str()) => err(format!(
                        "can't evaluate field {f}: the fields are {}",
                        fields
                            .iter()
                            .map(|f| format!(".{f}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    _ => Ok(()),
                }
            };
            match a {
                Arg::Dot(p) if top => check(p),
                Arg::Root(p) => check(p),
                Arg::Paren(pl, _) => pipe(pl, top, fields),
                _ => Ok(()),
            }
        }
        fn pipe(p: &Pipeline, top: bool, fields: &[&str]) -> Result<()> {
            p.iter().flatten().try_for_each(|a| arg(a, top, fields))
        }
        fn nodes(ns: &[Node], top: bool, fields: &[&str]) -> Result<()> {
            for n in ns {
                match n {
                    Node::Text(_) => {}
                    Node::Action(p) => pipe(p, top, fields)?,
                    Node::If(p, a, b) => {
                        pipe(p, top, fields)?;
                        nodes(a, top, fields)?;
                        nodes(b, top, fields)?;
                    }
                    Node::Range(p, a, b) | Node::With(p, a, b) => {
                        pipe(p, top, fields)?;
                        nodes(a, false, fields)?;
                        nodes(b, top, fields)?;
                    }
                }
            }
            Ok(())
        }
        nodes(&self.nodes, true, fields)
    }

    /// Renders the template over `data`.
    pub fn render(&self, data: &Value, mode: Mode) -> Result<String> {
        let mut out = String::new();
        let ev = Eval { root: data, mode };
        ev.nodes(&self.nodes, &Val::J(data.clone()), &mut out)?;
        Ok(out)
    }
}

// ---------------------------------------------------------------- evaluation

#[derive(Debug, Clone, PartialEq)]
enum Val {
    J(Value),
    /// A key missing from a map (Go prints `<no value>`).
    Missing,
    /// `null` where the docker CLI's typed structs have a slice (`[]`) or a map
    /// (`map[]`): Go prints a nil slice or map empty, and `json` still says `null`.
    Nil(&'static str),
}

/// What the docker CLI's types (`types.ContainerJSON`, `ImageInspect`, networks,
/// volumes) hold in the field `name` of the object `parent`: a slice, a map, or other.
fn typed_kind(parent: Option<&str>, name: &str) -> Option<&'static str> {
    const SLICES: [&str; 44] = [
        "Args",
        "Env",
        "Cmd",
        "Entrypoint",
        "OnBuild",
        "Shell",
        "Binds",
        "Links",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "ExtraHosts",
        "CapAdd",
        "CapDrop",
        "GroupAdd",
        "SecurityOpt",
        "VolumesFrom",
        "Mounts",
        "MaskedPaths",
        "ReadonlyPaths",
        "Devices",
        "DeviceCgroupRules",
        "DeviceRequests",
        "Ulimits",
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
        "Test",
        "Log",
        "SecondaryIPAddresses",
        "SecondaryIPv6Addresses",
        "Aliases",
        "DNSNames",
        "RepoTags",
        "RepoDigests",
        "Layers",
        "ExecIDs",
        "Peers",
        "Warnings",
        "ConsoleSize",
        "LinkLocalIPs",
        "Plugins",
    ];
    const MAPS: [&str; 18] = [
        "Labels",
        "Volumes",
        "ExposedPorts",
        "Ports",
        "PortBindings",
        "Networks",
        "Options",
        "DriverOpts",
        "Sysctls",
        "Tmpfs",
        "StorageOpt",
        "Containers",
        "Status",
        "Annotations",
        "Data",
        "AuxiliaryAddresses",
        "Services",
        "UsageData",
    ];
    // Names that are a map or a slice in one place and a struct elsewhere.
    match (parent, name) {
        (Some("LogConfig"), "Config") => return Some("map[]"),
        (Some("IPAM"), "Config") => return Some("[]"),
        (_, "Config" | "Status" | "Data") if parent.is_none() => return None,
        _ => {}
    }
    if SLICES.contains(&name) {
        Some("[]")
    } else if MAPS.contains(&name) {
        Some("map[]")
    } else {
        None
    }
}

impl Val {
    fn json(&self) -> &Value {
        match self {
            Val::J(v) => v,
            Val::Missing | Val::Nil(_) => &Value::Null,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Val::Missing | Val::Nil(_) => false,
            Val::J(v) => match v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
            },
        }
    }
}

/// Go's `fmt.Sprint` of a JSON value.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                go_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&o[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn print_val(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".to_string(),
        Val::Nil(empty) => empty.to_string(),
        Val::J(v) => go_print(v),
    }
}

/// docker's `json` template function: compact JSON without HTML escaping.
pub fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// Go's `json.Marshal` HTML escaping of encoded JSON: `<`, `>`, `&`, U+2028, U+2029.
pub fn html_escape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

struct Eval<'a> {
    root: &'a Value,
    mode: Mode,
}

impl Eval<'_> {
    fn nodes(&self, nodes: &[Node], dot: &Val, out: &mut String) -> Result<()> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => out.push_str(&print_val(&self.pipeline(p, dot)?)),
                Node::If(p, a, b) => {
                    let v = self.pipeline(p, dot)?;
                    self.nodes(if v.truthy() { a } else { b }, dot, out)?;
                }
                Node::With(p, a, b) => {
                    let v = self.pipeline(p, dot)?;
                    if v.truthy() {
                        self.nodes(a, &v, out)?;
                    } else {
                        self.nodes(b, dot, out)?;
                    }
                }
                Node::Range(p, a, b) => {
                    let v = self.pipeline(p, dot)?;
                    let items: Vec<Value> = match v.json() {
                        Value::Array(arr) => arr.clone(),
                        Value::Object(o) => {
                            let mut keys: Vec<&String> = o.keys().collect();
                            keys.sort();
                            keys.into_iter().map(|k| o[k.as_str()].clone()).collect()
                        }
                        Value::Null => Vec::new(),
                        Value::Number(n) if n.as_i64().is_some() => {
                            (0..n.as_i64().unwrap_or(0)).map(Value::from).collect()
                        }
                        other => {
                            return err(format!("range can't iterate over {}", go_print(other)))
                        }
                    };
                    if items.is_empty() {
                        self.nodes(b, dot, out)?;
                    }
                    for item in items {
                        self.nodes(a, &Val::J(item), out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&self, p: &Pipeline, dot: &Val) -> Result<Val> {
        let mut prev: Option<Val> = None;
        for cmd in p {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        prev.ok_or_else(|| TemplateError("empty pipeline".into()))
    }

    fn command(&self, cmd: &Command, dot: &Val, piped: Option<Val>) -> Result<Val> {
        let Some(first) = cmd.first() else {
            return err("empty command");
        };
        if let Arg::Func(name) = first {
            let mut args = cmd[1..]
                .iter()
                .map(|a| self.arg(a, dot))
                .collect::<Result<Vec<_>>>()?;
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(name, args);
        }
        if cmd.len() > 1 || piped.is_some() {
            return err(format!(
                "can't give argument to non-function {}",
                describe(first)
            ));
        }
        self.arg(first, dot)
    }

    fn arg(&self, a: &Arg, dot: &Val) -> Result<Val> {
        Ok(match a {
            Arg::Dot(path) => self.lookup(dot.clone(), path)?,
            Arg::Root(path) => self.lookup(Val::J(self.root.clone()), path)?,
            Arg::Str(s) => Val::J(Value::String(s.clone())),
            Arg::Int(i) => Val::J(Value::from(*i)),
            Arg::Float(f) => Val::J(
                serde_json::Number::from_f64(*f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
            ),
            Arg::Bool(b) => Val::J(Value::Bool(*b)),
            Arg::Nil => Val::J(Value::Null),
            Arg::Func(name) => self.call(name, Vec::new())?,
            Arg::Paren(p, chain) => {
                let v = self.pipeline(p, dot)?;
                self.lookup(v, chain)?
            }
        })
    }

    fn lookup(&self, mut v: Val, path: &[String]) -> Result<Val> {
        let mut parent: Option<&str> = None;
        // What the object being looked into is in the docker CLI's types.
        let mut current: Option<&'static str> = None;
        for name in path {
            // The docker CLI's typed maps: a missing key is `<no value>`, a nil map's too.
            let typed_map = current == Some("map[]");
            let kind = typed_kind(parent, name);
            parent = Some(name.as_str());
            current = kind;
            v = match v {
                Val::Nil("map[]") => Val::Missing,
                Val::J(Value::Object(mut o)) => match o.remove(name) {
                    Some(Value::Null) if self.mode != Mode::Header && kind.is_some() => {
                        Val::Nil(kind.unwrap_or("[]"))
                    }
                    Some(x) => Val::J(x),
                    None if typed_map && self.mode != Mode::Strict => Val::Missing,
                    None if self.mode == Mode::Strict => {
                        return err(format!("can't evaluate field {name}"));
                    }
                    None if self.mode == Mode::Header => Val::Missing,
                    // docker runs inspect templates with missingkey=error.
                    None => {
                        return err(format!(
                            "executing at <.{name}>: map has no entry for key {name:?}"
                        ))
                    }
                },
                Val::Missing | Val::Nil(_) | Val::J(Value::Null) if self.mode == Mode::Header => {
                    Val::Missing
                }
                Val::Missing | Val::Nil(_) | Val::J(Value::Null) => {
                    return err(format!("nil pointer evaluating field {name}"));
                }
                Val::J(other) => {
                    return err(format!(
                        "can't evaluate field {name} in {}",
                        type_name(&other)
                    ));
                }
            };
        }
        Ok(v)
    }

    fn call(&self, name: &str, args: Vec<Val>) -> Result<Val> {
        let want = |n: usize| -> Result<()> {
            if args.len() != n {
                return err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    args.len()
                ));
            }
            Ok(())
        };
        let s = |i: usize| -> String { args.get(i).map(print_val).unwrap_or_default() };
        let string = |v: String| Ok(Val::J(Value::String(v)));
        if self.mode == Mode::Header
            && matches!(
                name,
                "json" | "join" | "split" | "title" | "lower" | "upper" | "truncate" | "pad"
            )
        {
            return match args.first() {
                Some(Val::J(Value::String(h))) => string(h.clone()),
                _ => string(String::new()),
            };
        }
        match name {
            "json" => {
                want(1)?;
                let j = to_json(args[0].json());
                // A listing row marshals itself with json.Marshal in docker, which
                // escapes <, > and & (`"\u003cnone\u003e"`).
                if self.mode == Mode::Strict && args[0].json().is_object() {
                    return string(html_escape_json(&j));
                }
                string(j)
            }
            "join" => {
                want(2)?;
                let items = match args[0].json() {
                    Value::Array(a) => a.iter().map(go_print).collect::<Vec<_>>(),
                    Value::Null => Vec::new(),
                    other => return err(format!("join: {} is not a list", type_name(other))),
                };
                string(items.join(&s(1)))
            }
            "split" => {
                want(2)?;
                let parts: Vec<Value> = s(0)
                    .split(s(1).as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                Ok(Val::J(Value::Array(parts)))
            }
            "upper" => {
                want(1)?;
                string(s(0).to_uppercase())
            }
            "lower" => {
                want(1)?;
                string(s(0).to_lowercase())
            }
            "title" => {
                want(1)?;
                string(title(&s(0)))
            }
            "pad" => {
                want(3)?;
                let n = |i: usize| args[i].json().as_u64().unwrap_or(0) as usize;
                string(format!("{}{}{}", " ".repeat(n(1)), s(0), " ".repeat(n(2))))
            }
            "truncate" => {
                want(2)?;
                let n = args[1].json().as_u64().unwrap_or(0) as usize;
                string(s(0).chars().take(n).collect())
            }
            "len" => {
                want(1)?;
                if let Val::Nil(_) = args[0] {
                    // A nil slice or map has length 0 in Go.
                    return Ok(Val::J(Value::from(0)));
                }
                let n = match args[0].json() {
                    Value::Array(a) => a.len(),
                    Value::Object(o) => o.len(),
                    Value::String(x) => x.len(),
                    other => return err(format!("len of {}", type_name(other))),
                };
                Ok(Val::J(Value::from(n)))
            }
            "index" => {
                if args.is_empty() {
                    return err("wrong number of args for index: want at least 1 got 0");
                }
                let mut v = args[0].clone();
                for key in &args[1..] {
                    v = match (v.json(), key.json()) {
                        (Value::Object(o), Value::String(k)) => match o.get(k) {
                            Some(x) => Val::J(x.clone()),
                            // docker indexes typed maps: a missing key of a string map
                            // (labels, log options) is Go's zero value, "".
                            None if o.values().all(Value::is_string) => {
                                Val::J(Value::String(String::new()))
                            }
                            None => Val::Missing,
                        },
                        (Value::Array(a), Value::Number(n)) => {
                            let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                            match a.get(i) {
                                Some(x) => Val::J(x.clone()),
                                None => return err(format!("index out of range: {i}")),
                            }
                        }
                        (Value::Null, _) => Val::Missing,
                        (c, k) => {
                            return err(format!(
                                "can't index {} with {}",
                                type_name(c),
                                go_print(k)
                            ))
                        }
                    };
                }
                Ok(v)
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    return err(format!("missing argument for comparison {name}"));
                }
                let result = if name == "eq" {
                    args[1..]
                        .iter()
                        .any(|b| values_equal(args[0].json(), b.json()))
                } else {
                    let ord = compare(args[0].json(), args[1].json())?;
                    match name {
                        "ne" => ord != std::cmp::Ordering::Equal,
                        "lt" => ord == std::cmp::Ordering::Less,
                        "le" => ord != std::cmp::Ordering::Greater,
                        "gt" => ord == std::cmp::Ordering::Greater,
                        _ => ord != std::cmp::Ordering::Less,
                    }
                };
                Ok(Val::J(Value::Bool(result)))
            }
            "and" => {
                if args.is_empty() {
                    return err("wrong number of args for and");
                }
                let pick = args
                    .iter()
                    .find(|a| !a.truthy())
                    .unwrap_or(&args[args.len() - 1]);
                Ok(pick.clone())
            }
            "or" => {
                if args.is_empty() {
                    return err("wrong number of args for or");
                }
                let pick = args
                    .iter()
                    .find(|a| a.truthy())
                    .unwrap_or(&args[args.len() - 1]);
                Ok(pick.clone())
            }
            "not" => {
                want(1)?;
                Ok(Val::J(Value::Bool(!args[0].truthy())))
            }
            "print" => {
                // Go's Sprint: spaces only between operands when neither is a string.
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    let is_str = matches!(a.json(), Value::String(_));
                    let prev_str = i > 0 && matches!(args[i - 1].json(), Value::String(_));
                    if i > 0 && !is_str && !prev_str {
                        out.push(' ');
                    }
                    out.push_str(&print_val(a));
                }
                string(out)
            }
            "println" => string(format!(
                "{}\n",
                args.iter().map(print_val).collect::<Vec<_>>().join(" ")
            )),
            "printf" => {
                if args.is_empty() {
                    return err("wrong number of args for printf");
                }
                string(printf(&s(0), &args[1..]))
            }
            other => err(format!("function {other:?} not defined")),
        }
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Dot(p) => format!(".{}", p.join(".")),
        Arg::Root(p) => format!("$.{}", p.join(".")),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Func(f) => f.clone(),
        Arg::Paren(..) => "(…)".into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y)
                .ok_or_else(|| TemplateError("incomparable numbers".into()))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if x == y => Ok(std::cmp::Ordering::Equal),
        (Value::Bool(_), Value::Bool(_)) => Ok(std::cmp::Ordering::Less),
        _ => err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// Title-cases each word, as Go's deprecated `strings.Title`.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// A small `printf`: `%s`, `%v`, `%d`, `%q`, `%%`.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => match it.next() {
                Some(a) if verb == 'q' => out.push_str(&to_json(&Value::String(print_val(a)))),
                Some(a) => out.push_str(&print_val(a)),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t)
            .unwrap()
            .render(v, Mode::Lenient)
            .unwrap()
    }

    #[test]
    fn fields_and_text() {
        let v = json!({"ID": "60531c6e24d2", "Repository": "fixture/app", "Tag": "1"});
        assert_eq!(
            render("{{.ID}} {{.Repository}}:{{.Tag}}", &v),
            "60531c6e24d2 fixture/app:1"
        );
        assert_eq!(render("plain", &v), "plain");
        assert_eq!(render("{{ .ID }}", &v), "60531c6e24d2");
    }

    /// What the docker CLI prints for null and missing fields of its typed structs
    /// (checked against docker 28 over berth's own inspect output).
    #[test]
    fn null_and_missing_fields_print_as_the_docker_cli_prints_them() {
        let v = json!({
            "Config": {"Labels": {"a": "b"}, "Healthcheck": null, "Env": null},
            "HostConfig": {"Links": null, "Dns": [], "PortBindings": null,
                           "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}},
            "IPAM": {"Config": null},
        });
        let strict = |t: &str| {
            Template::parse(t)
                .unwrap()
                .render(&v, Mode::Lenient)
                .map_err(|e| e.to_string())
        };
        assert_eq!(render("{{.HostConfig.Links}}", &v), "[]");
        assert_eq!(render("{{json .HostConfig.Links}}", &v), "null");
        assert_eq!(render("{{.HostConfig.PortBindings}}", &v), "map[]");
        assert_eq!(render("{{.Config.Env}}", &v), "[]");
        assert_eq!(render("{{.IPAM.Config}}", &v), "[]");
        assert_eq!(render("{{.Config.Healthcheck}}", &v), "<nil>");
        assert_eq!(render("{{.Config.Labels.x}}", &v), "<no value>");
        assert_eq!(
            render("{{.HostConfig.LogConfig.Config.nokey}}", &v),
            "<no value>"
        );
        assert_eq!(render("{{.HostConfig.PortBindings.x}}", &v), "<no value>");
        assert_eq!(render("{{range .HostConfig.Links}}x{{end}}", &v), "");
        assert_eq!(render("{{if .HostConfig.Links}}y{{else}}n{{end}}", &v), "n");
        assert_eq!(render("{{len .HostConfig.Links}}", &v), "0");
        // A field the struct does not have is still an error.
        let e = strict("{{.Config.NoSuch}}").unwrap_err();
        assert!(e.contains("map has no entry for key \"NoSuch\""), "{e}");
    }

    #[test]
    fn nested_fields_print_like_go() {
        let v = json!({
            "Id": "sha256:abc",
            "Size": 4300000,
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"team": "platform", "a": "b"}, "Healthcheck": null},
            "RootFS": {"Type": "layers", "Layers": ["sha256:1", "sha256:2"]}
        });
        assert_eq!(render("{{.Id}}", &v), "sha256:abc");
        assert_eq!(render("{{.Size}}", &v), "4300000");
        assert_eq!(render("{{.Config.Env}}", &v), "[A=1 B=2]");
        assert_eq!(render("{{.RootFS.Layers}}", &v), "[sha256:1 sha256:2]");
        assert_eq!(render("{{.Config.Labels}}", &v), "map[a:b team:platform]");
        assert_eq!(render("{{.Config.Healthcheck}}", &v), "<nil>");
        let t = Template::parse("{{.Nope}}").unwrap();
        let e = t.render(&v, Mode::Lenient).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template parsing error: executing at <.Nope>: map has no entry for key \"Nope\""
        );
        assert!(Template::parse("{{.Config.Healthcheck.Test}}")
            .unwrap()
            .render(&v, Mode::Lenient)
            .is_err());
        // docker indexes typed maps: a missing label is "" (checked against docker 28).
        assert_eq!(render(r#"{{index .Config.Labels "nope"}}"#, &v), "");
    }

    #[test]
    fn json_function() {
        let v = json!({"Config": {"Env": ["A=<1>"], "Cmd": null}, "B": "x"});
        assert_eq!(
            render("{{json .Config}}", &v),
            r#"{"Env":["A=<1>"],"Cmd":null}"#
        );
        assert_eq!(render("{{json .B}}", &v), r#""x""#);
        assert_eq!(render("{{.B | json}}", &v), r#""x""#);
        assert_eq!(render("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn functions() {
        let v = json!({"Tags": ["a:1", "b:2"], "S": "Hello world", "L": {"k": "v"}, "N": 3, "F": false});
        assert_eq!(render(r#"{{join .Tags ", "}}"#, &v), "a:1, b:2");
        assert_eq!(
            render("{{upper .S}}|{{lower .S}}", &v),
            "HELLO WORLD|hello world"
        );
        assert_eq!(render("{{title (lower .S)}}", &v), "Hello World");
        assert_eq!(render(r#"{{index .L "k"}}"#, &v), "v");
        assert_eq!(render(r#"{{index .Tags 1}}"#, &v), "b:2");
        assert_eq!(render(r#"{{index .L "missing"}}"#, &v), "");
        assert_eq!(render("{{len .Tags}}", &v), "2");
        assert_eq!(render("{{truncate .S 5}}", &v), "Hello");
        assert_eq!(render(r#"{{split .S " "}}"#, &v), "[Hello world]");
        assert_eq!(render(r#"{{printf "%s=%d" .S .N}}"#, &v), "Hello world=3");
        assert_eq!(render("{{println .N}}", &v), "3\n");
        assert_eq!(render(r#"{{if eq .N 3}}three{{end}}"#, &v), "three");
        assert_eq!(render(r#"{{if ne .S "x"}}y{{end}}"#, &v), "y");
        assert_eq!(render(r#"{{if and .S (not .F)}}ok{{end}}"#, &v), "ok");
    }

    #[test]
    fn control_structures() {
        let v = json!({"Env": ["A=1", "B=2"], "Empty": [], "Cfg": {"User": "root"}, "F": false});
        assert_eq!(render("{{range .Env}}[{{.}}]{{end}}", &v), "[A=1][B=2]");
        assert_eq!(render("{{range .Empty}}x{{else}}none{{end}}", &v), "none");
        assert_eq!(render("{{with .Cfg}}{{.User}}{{end}}", &v), "root");
        assert_eq!(
            render("{{if .F}}a{{else if .Env}}b{{else}}c{{end}}", &v),
            "b"
        );
        assert_eq!(
            render("{{range .Env}}{{$.Cfg.User}}{{end}}", &v),
            "rootroot"
        );
        assert_eq!(render("a  {{- .Cfg.User -}}  b", &v), "arootb");
        assert_eq!(render("{{/* comment */}}x", &v), "x");
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let e = Template::parse("{{nosuch .A}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template parsing error: function \"nosuch\" not defined"
        );
        assert!(Template::parse("{{$x := .A}}").is_err());
    }

    #[test]
    fn strict_mode_and_field_check() {
        let t = Template::parse("{{.ID}} {{.Nope}}").unwrap();
        let e = t.check_fields(&["ID", "Tag"]).unwrap_err();
        assert!(e.to_string().contains("can't evaluate field Nope"), "{e}");
        assert!(t.render(&json!({"ID": "x"}), Mode::Strict).is_err());
        let ok = Template::parse("{{range .X}}{{.Inner}}{{end}}").unwrap();
        assert!(ok.check_fields(&["X"]).is_ok());
    }

    #[test]
    fn header_mode_returns_header_names() {
        let t = Template::parse("{{.Repository}}\t{{json .Tag}}\t{{upper .ID}}").unwrap();
        let h = json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID"});
        assert_eq!(
            t.render(&h, Mode::Header).unwrap(),
            "REPOSITORY\tTAG\tIMAGE ID"
        );
    }
}
