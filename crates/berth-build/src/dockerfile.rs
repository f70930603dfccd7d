//! The Dockerfile parser: text to stages and steps, with the words as written.
//!
//! It follows BuildKit's `frontend/dockerfile/parser` (lines, directives, continuations,
//! heredocs, the per-instruction argument shapes) and `frontend/dockerfile/instructions`
//! (flags, argument counts, error messages), which Docker's classic builder also uses.
//! Nothing is expanded here: `$VARS` stay in the words, quotes stay in ENV/LABEL/ARG
//! values, and the engine expands each word with [`crate::lex`] when it evaluates the
//! step, with the environment of that point of the build.
//!
//! Parsing runs in two passes as Docker's does: first every line of the file becomes an
//! instruction node (so a directive, continuation or heredoc error anywhere comes first),
//! then the nodes become instructions in file order.
//!
//! Docker behaviour not carried over: the warning about empty continuation lines (they
//! are skipped silently), the `did you mean …?` suggestions of unknown instructions and
//! flags, the Windows-path hint of `SHELL requires the arguments to be in JSON form`, the
//! heredoc file descriptor (`RUN 3<<EOF`), and ADD's newer `--unpack` flag.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use thiserror::Error;

use crate::lex;

/// The escape character when there is no `# escape=` directive.
pub const DEFAULT_ESCAPE: char = '\\';

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `# escape=` directive (default `\`); the engine expands words with it.
    pub escape: char,
    /// The `# syntax=` directive, as written (the caller warns and ignores it).
    pub syntax: Option<String>,
    /// The ARGs before the first FROM (the global scope, usable in FROM lines).
    pub args: Vec<ArgDecl>,
    /// The build stages in file order; never empty.
    pub stages: Vec<Stage>,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name as written.
    pub name: String,
    /// The default as written (unexpanded, quotes kept), `None` for `ARG name`.
    pub default: Option<String>,
}

/// A build stage: a FROM and the steps up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The base image as written; may hold `$VARS` of global ARGs.
    pub base: String,
    /// `AS name`, lowercased as Docker does (checked against `^[a-z][a-z0-9-_.]*$`).
    pub name: Option<String>,
    /// `FROM --platform=…`, as written.
    pub platform: Option<String>,
    /// 1-based line of the FROM.
    pub line: usize,
    /// The FROM instruction as written (continuations joined, trimmed).
    pub original: String,
    /// The instructions of the stage.
    pub steps: Vec<Step>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as Docker prints it in `Step N/M : …`: its lines joined with each
    /// continuation's escape (and the blanks after it) removed, comment lines inside the
    /// continuation dropped, trimmed; a heredoc's body is not part of it.
    pub original: String,
    /// What the instruction does.
    pub instruction: Instruction,
}

/// The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text as written, run by the stage's SHELL. An instruction with no
    /// argument at all (`CMD`) gives an empty text.
    Shell(String),
    /// JSON array form (a JSON array of strings; any other text is shell form).
    Exec(Vec<String>),
}

/// A heredoc of RUN, COPY or ADD (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed; for COPY/ADD also the name of the file it makes.
    pub name: String,
    /// The lines between the instruction and the delimiter, newlines included, exactly as
    /// written (see [`Heredoc::body`] for `<<-`).
    pub content: String,
    /// The delimiter was not quoted: `$VARS` in the content are expanded (with
    /// [`crate::lex::expand_heredoc`]).
    pub expand: bool,
    /// `<<-`: leading tabs are removed from the content's lines and the delimiter's.
    pub strip_tabs: bool,
}

impl Heredoc {
    /// The content as the step uses it: with `<<-`, the leading tabs of every line
    /// removed.
    pub fn body(&self) -> String {
        if !self.strip_tabs {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// What an instruction does, with its words as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN [--mount=…] [--network=…] [--security=…] command`.
    Run {
        /// The command; with heredocs, the text holds the `<<EOF` markers.
        command: Command,
        /// The heredocs of the line, in order (shell form only).
        heredocs: Vec<Heredoc>,
        /// `--network=` (`default`, `none` or `host`).
        network: Option<String>,
        /// `--security=` (`sandbox` or `insecure`).
        security: Option<String>,
        /// Every `--mount=` value, as written.
        mounts: Vec<String>,
    },
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `ENV k=v …` or the legacy `ENV k v` (one pair, the value is the rest of the line);
    /// keys and values as written (quotes kept).
    Env(Vec<(String, String)>),
    /// `ARG name[=default] …` inside a stage.
    Arg(Vec<ArgDecl>),
    /// `WORKDIR path`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
    /// `EXPOSE port[/proto] …`, sorted as Docker sorts them.
    Expose(Vec<String>),
    /// `VOLUME` (JSON array or words), each trimmed.
    Volume(Vec<String>),
    /// `LABEL k=v …` (or legacy `LABEL k v`), as written.
    Label(Vec<(String, String)>),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `CMD`.
    Cmd(Command),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `SHELL ["executable", "parameters"]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `ONBUILD trigger`: the trigger's text (heredoc bodies appended as Docker stores
    /// them); parse it with [`parse_onbuild`] when it fires.
    OnBuild(String),
    /// `MAINTAINER name` (deprecated; sets the image's author).
    Maintainer(String),
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Source paths or URLs as written, heredoc markers excluded.
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// `--from=` (COPY only): a stage name or index, or an image.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--checksum=` (ADD only).
    pub checksum: Option<String>,
    /// Every `--exclude=` pattern.
    pub exclude: Vec<String>,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// Sources given as heredocs (`COPY <<EOF /dest`), each making a file named after
    /// its delimiter. A marker repeated with the same quoting and `-` is listed once, at
    /// its last place (its copies would write the same file with the same content).
    pub heredocs: Vec<Heredoc>,
}

/// The argument of HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: disables a healthcheck inherited from the base image.
    None,
    /// `HEALTHCHECK [--flags] CMD …`. A duration given as zero is `None` (Docker's
    /// "inherit the default").
    Check {
        /// The command (`CMD-SHELL` for shell form, `CMD` for exec form).
        test: Command,
        /// `--interval=`.
        interval: Option<Duration>,
        /// `--timeout=`.
        timeout: Option<Duration>,
        /// `--start-period=`.
        start_period: Option<Duration>,
        /// `--start-interval=`.
        start_interval: Option<Duration>,
        /// `--retries=`.
        retries: Option<u32>,
    },
}

/// A Dockerfile Docker would refuse, with the line it names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Dockerfile parse error line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the instruction (or of the directive) at fault.
    pub line: usize,
    /// Docker's message.
    pub message: String,
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let scanned = scan(text, Directives::new())?;
    let mut args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &scanned.nodes {
        let at = |message: String| ParseError {
            line: node.start_line,
            message,
        };
        match instruction(node).map_err(at)? {
            Parsed::Stage(stage) => stages.push(stage),
            Parsed::Step(step) => match stages.last_mut() {
                Some(stage) => stage.steps.push(step),
                None => match step.instruction {
                    Instruction::Arg(decls) => args.extend(decls),
                    _ => return Err(at("no build stage in current context".to_string())),
                },
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError {
            line: scanned.lines,
            message: "No image was generated. Is your Dockerfile empty?".to_string(),
        });
    }
    Ok(Dockerfile {
        escape: scanned.escape,
        syntax: scanned.syntax,
        args,
        stages,
    })
}

/// Parses an ONBUILD trigger (the text of [`Instruction::OnBuild`], or one of a base
/// image's `OnBuild` entries) into the step it runs, refusing what Docker refuses as a
/// trigger. `escape` is the escape character the trigger is read with. Lines are counted
/// from the trigger's first line.
pub fn parse_onbuild(text: &str, escape: char) -> Result<Step, ParseError> {
    let scanned = scan(text, Directives::fixed(escape))?;
    let mut nodes = scanned.nodes.into_iter();
    let Some(node) = nodes.next() else {
        return Err(ParseError {
            line: scanned.lines,
            message: "file with no instructions".to_string(),
        });
    };
    let at = |message: String| ParseError {
        line: node.start_line,
        message,
    };
    if nodes.next().is_some() {
        return Err(at("an ONBUILD trigger must be one instruction".to_string()));
    }
    let upper = node.cmd.to_uppercase();
    match upper.as_str() {
        "ONBUILD" => {
            return Err(at(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()
            ))
        }
        "MAINTAINER" | "FROM" => {
            return Err(at(format!("{upper} isn't allowed as an ONBUILD trigger")))
        }
        _ => {}
    }
    match instruction(&node).map_err(at)? {
        Parsed::Step(step) => Ok(step),
        Parsed::Stage(_) => Err(at("FROM isn't allowed as an ONBUILD trigger".to_string())),
    }
}

// ---------------------------------------------------------------------------------------
// Pass 1: lines to nodes (BuildKit's parser package).

/// One instruction as the line parser sees it.
#[derive(Debug, Clone)]
struct Node {
    /// The instruction word as written.
    cmd: String,
    /// The `--flag[=value]` words before the arguments.
    flags: Vec<String>,
    /// The arguments in the instruction's shape (ENV/LABEL: key, value, key, value…;
    /// HEALTHCHECK: the type then the command; ONBUILD: the trigger's word then its
    /// arguments).
    args: Vec<String>,
    /// The arguments were a JSON array.
    json: bool,
    /// The instruction's text, continuations joined.
    original: String,
    start_line: usize,
    heredocs: Vec<Heredoc>,
    /// ONBUILD's trigger.
    sub: Option<Box<Node>>,
}

impl Node {
    fn lower(&self) -> String {
        self.cmd.to_lowercase()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.sub {
            Some(sub) if self.lower() == "onbuild" => sub,
            _ => self,
        };
        matches!(node.lower().as_str(), "add" | "copy" | "run") && !node.json
    }
}

struct Scanned {
    nodes: Vec<Node>,
    escape: char,
    syntax: Option<String>,
    /// How many lines the text has.
    lines: usize,
}

/// The parser directives at the top of the file.
struct Directives {
    done: bool,
    seen: Vec<String>,
    escape: char,
    syntax: Option<String>,
}

impl Directives {
    fn new() -> Self {
        Directives {
            done: false,
            seen: Vec::new(),
            escape: DEFAULT_ESCAPE,
            syntax: None,
        }
    }

    /// No directives are read (ONBUILD triggers).
    fn fixed(escape: char) -> Self {
        Directives {
            done: true,
            escape,
            ..Directives::new()
        }
    }

    /// BuildKit's `DirectiveParser.ParseLine`: `line` has its newline and leading blanks
    /// removed. The first line that is not a known directive ends the directives (a
    /// blank line, a comment, an unknown key, an instruction).
    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = line
            .strip_prefix('#')
            .and_then(|rest| directive(rest.trim_start()))
        else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ))
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        self.seen.push(key);
        Ok(())
    }
}

/// Go's regexp `\s`.
fn is_re_space(ch: char) -> bool {
    matches!(ch, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, as Go matches it.
fn directive(text: &str) -> Option<(&str, &str)> {
    let key_len = text
        .char_indices()
        .take_while(|(i, ch)| {
            if *i == 0 {
                ch.is_ascii_alphabetic()
            } else {
                ch.is_ascii_alphanumeric()
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let (key, rest) = text.split_at(key_len);
    let after = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = after.trim_start_matches(is_re_space);
    if !value.is_empty() {
        return Some((key, value.trim_end_matches(is_re_space)));
    }
    // Only blanks after `=`: the lazy value takes the last of them.
    let last = after.char_indices().last()?.0;
    Some((key, &after[last..]))
}

/// The text's lines, each with its newline.
struct Lines<'a> {
    rest: &'a str,
    count: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.count += 1;
        Some(line)
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a line-continuation escape: the escape as the last character but blanks, not
/// preceded by another escape (BuildKit's regexp cannot see an escaped escape before
/// it, and neither does this). Returns the line and whether it ends the instruction.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

fn scan(text: &str, mut directives: Directives) -> Result<Scanned, ParseError> {
    let mut lines = Lines {
        rest: text,
        count: 0,
    };
    let mut nodes = Vec::new();
    while let Some(raw) = lines.next_line() {
        let raw = if lines.count == 1 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        let start_line = lines.count;
        let at = |message: String| ParseError {
            line: start_line,
            message,
        };
        let token = trim_newline(raw).trim_start();
        directives.parse_line(token).map_err(at)?;
        let token = if is_comment(token) { "" } else { token };
        let (first, mut end_of_line) = trim_continuation(token, directives.escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        while !end_of_line {
            let Some(raw) = lines.next_line() else {
                break;
            };
            // Comment lines and blank lines inside a continuation are dropped.
            if is_comment(raw) {
                continue;
            }
            let token = trim_newline(raw);
            if token.trim_start().is_empty() {
                continue;
            }
            let (part, end) = trim_continuation(token, directives.escape);
            line.push_str(part);
            end_of_line = end;
        }

        let mut node = node_from_line(&line, directives.escape).map_err(at)?;
        node.start_line = start_line;
        if node.can_contain_heredoc() && line.contains("<<") {
            for mut heredoc in heredocs_from_line(&line).map_err(at)? {
                let mut terminated = false;
                while let Some(raw) = lines.next_line() {
                    let mut candidate = trim_newline(raw);
                    if heredoc.strip_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(at("unterminated heredoc".to_string()));
                }
                node.heredocs.push(heredoc);
            }
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(ParseError {
            line: lines.count,
            message: "file with no instructions".to_string(),
        });
    }
    Ok(Scanned {
        nodes,
        escape: directives.escape,
        syntax: directives.syntax,
        lines: lines.count,
    })
}

/// How deep `ONBUILD ONBUILD …` triggers are parsed (Docker refuses any chain; the guard
/// keeps a line of thousands of ONBUILD words from exhausting the stack).
const MAX_ONBUILD_DEPTH: usize = 8;

/// BuildKit's `newNodeFromLine`: the instruction word, its flags, and its arguments in
/// the instruction's shape.
fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    node_at_depth(line, escape, 0)
}

fn node_at_depth(line: &str, escape: char, depth: usize) -> Result<Node, String> {
    let (cmd, flags, rest) = split_command(line);
    let mut node = Node {
        cmd,
        flags,
        args: Vec::new(),
        json: false,
        original: line.to_string(),
        start_line: 0,
        heredocs: Vec::new(),
        sub: None,
    };
    match node.lower().as_str() {
        "add" | "copy" | "volume" => (node.args, node.json) = maybe_json_to_list(&rest)?,
        "arg" => node.args = parse_words(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => (node.args, node.json) = maybe_json(&rest)?,
        "env" => node.args = parse_name_val(&rest, "ENV", escape)?,
        "label" => node.args = parse_name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => node.args = whitespace_delimited(&rest),
        "healthcheck" => (node.args, node.json) = health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest];
        }
        "onbuild" if !rest.is_empty() && depth < MAX_ONBUILD_DEPTH => {
            let sub = node_at_depth(&rest, escape, depth + 1)?;
            node.args = std::iter::once(sub.cmd.clone())
                .chain(sub.args.iter().cloned())
                .collect();
            node.sub = Some(Box::new(sub));
        }
        // No argument, or an unknown instruction (refused in the second pass).
        _ => {}
    }
    Ok(node)
}

/// The blanks Docker splits instructions and words on (`[\t\v\f\r ]+`).
fn is_token_space(ch: char) -> bool {
    matches!(ch, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// BuildKit's `splitCommand`: (instruction word, flags, arguments).
fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    match line.find(is_token_space) {
        None => (line.to_string(), Vec::new(), String::new()),
        Some(i) => {
            let after = line[i..].trim_start_matches(is_token_space);
            let (rest, flags) = extract_builder_flags(after);
            (line[..i].to_string(), flags, rest.trim().to_string())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// BuildKit's `extractBuilderFlags`: the leading `--name[=value]` words (quotes and `\`
/// escapes removed from them) and the rest of the line. A `--` word ends the flags.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let rest_from = |pos: usize| chars[pos..].iter().collect::<String>();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            let ch = chars[pos];
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || chars.get(pos + 1) != Some(&'-') {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        let mut ch = chars[pos];
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == '\\' {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == '\\' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's `parseWords` (ARG, ENV, LABEL): splits on blanks outside quotes, keeping
/// the quotes and the escapes in the words.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if chars[pos].is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        let mut ch = chars[pos];
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                // An escape outside quotes stays, with the character it escapes.
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes: the quote characters stay in the word.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `key value` (legacy, one pair) or `k=v k2=v2 …`, as key, value pairs
/// flattened.
fn parse_name_val(rest: &str, command: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_token_space) else {
            return Err(format!("{command} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_token_space);
        return Ok(vec![rest[..i].to_string(), value.to_string()]);
    }
    let mut args = Vec::with_capacity(words.len() * 2);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        args.push(key.to_string());
        args.push(value.to_string());
    }
    Ok(args)
}

/// EXPOSE and FROM: words split on blanks, quotes not special.
fn whitespace_delimited(rest: &str) -> Vec<String> {
    rest.split(is_token_space)
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

enum JsonArgs {
    Strings(Vec<String>),
    /// Not a JSON array: the text is another form.
    NotJson,
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// A JSON array of strings; a JSON array holding anything else is an error; any other
/// text is not JSON.
fn parse_json(rest: &str) -> Result<JsonArgs, String> {
    let text = rest.trim_start();
    if !text.starts_with('[') {
        return Ok(JsonArgs::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return Ok(JsonArgs::NotJson);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(JsonArgs::Strings)
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or the text as one shell-form argument.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        JsonArgs::Strings(args) => (args, true),
        JsonArgs::NotJson => (vec![rest.to_string()], false),
    })
}

/// ADD, COPY, VOLUME: a JSON array, or words split on blanks.
fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match parse_json(rest)? {
        JsonArgs::Strings(args) => (args, true),
        JsonArgs::NotJson => (whitespace_delimited(rest), false),
    })
}

/// HEALTHCHECK: the type word, then the command as RUN's.
fn health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let (kind, command) = rest.split_at(sep);
    let (mut args, json) = maybe_json(command.trim_start())?;
    args.insert(0, kind.to_string());
    Ok((args, json))
}

/// A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<EOF`): the delimiter, whether the
/// content expands, whether tabs are stripped. BuildKit's `ParseHeredoc`.
struct Marker {
    name: String,
    expand: bool,
    strip_tabs: bool,
}

/// `^(\d*)<<(-?)\s*([^<]*)$` then the delimiter read as a shell word twice, with and
/// without its quotes: any quote that is not escaped turns expansion off.
fn parse_heredoc(word: &str) -> Result<Option<Marker>, String> {
    let Some(after) = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")
    else {
        return Ok(None);
    };
    let (strip_tabs, after) = match after.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, after),
    };
    let rest = after.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let options = lex::Options {
        skip_unset: true,
        ..lex::Options::default()
    };
    let words = lex::words_with(rest, '\\', options).map_err(|e| e.to_string())?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw_options = lex::Options {
        raw_quotes: true,
        ..options
    };
    let raw = lex::words_with(rest, '\\', raw_options).map_err(|e| e.to_string())?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Marker {
        name: name.clone(),
        expand: quotes(name) == quotes(raw_name),
        strip_tabs,
    }))
}

/// The heredoc markers of an instruction line, in order. The line is split into words as
/// lex.go does, quotes, escapes and `$VARS` kept (a line it cannot split has none).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let options = lex::Options {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    let words = lex::words_with(line, '\\', options).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in &words {
        if let Some(marker) = parse_heredoc(word)? {
            heredocs.push(Heredoc {
                name: marker.name,
                content: String::new(),
                expand: marker.expand,
                strip_tabs: marker.strip_tabs,
            });
        }
    }
    Ok(heredocs)
}

// ---------------------------------------------------------------------------------------
// Pass 2: nodes to instructions (BuildKit's instructions package).

enum Parsed {
    Stage(Stage),
    Step(Step),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Text,
    /// May be given several times.
    List,
}

enum FlagValue {
    Bool(bool),
    Text(String),
    List(Vec<String>),
}

/// The flags an instruction was given.
struct Flags {
    used: Vec<(&'static str, FlagValue)>,
}

impl Flags {
    fn get(&self, name: &str) -> Option<&FlagValue> {
        self.used.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(FlagValue::Bool(true)))
    }

    /// A text flag's value; `None` when not given, even when given empty when
    /// `keep_empty` is false (Docker does not tell `--chown=` from no `--chown`).
    fn text(&self, name: &str, keep_empty: bool) -> Option<String> {
        match self.get(name) {
            Some(FlagValue::Text(value)) if keep_empty || !value.is_empty() => Some(value.clone()),
            _ => None,
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(FlagValue::List(values)) => values.clone(),
            _ => Vec::new(),
        }
    }
}

/// BuildKit's `BFlags.Parse`, with Docker's classic wording of its errors.
fn parse_flags(words: &[String], known: &[(&'static str, FlagKind)]) -> Result<Flags, String> {
    let mut flags = Flags { used: Vec::new() };
    for word in words {
        if word == "--" {
            break;
        }
        let Some(flag) = word.strip_prefix("--") else {
            return Err(format!("Arg should start with -- : {word}"));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        let Some(&(name, kind)) = known.iter().find(|(n, _)| *n == name) else {
            return Err(format!("Unknown flag: {name}"));
        };
        let previous = flags.used.iter().position(|(n, _)| *n == name);
        if previous.is_some() && kind != FlagKind::List {
            return Err(format!("Duplicate flag specified: {name}"));
        }
        let missing = || format!("Missing a value on flag: {name}");
        let parsed = match kind {
            FlagKind::Bool => match value {
                None => FlagValue::Bool(true),
                Some("") => return Err(missing()),
                Some(v) => match v.to_lowercase().as_str() {
                    "true" => FlagValue::Bool(true),
                    "false" => FlagValue::Bool(false),
                    _ => return Err(format!("Expecting boolean value for flag {name}, not: {v}")),
                },
            },
            FlagKind::Text => FlagValue::Text(value.ok_or_else(missing)?.to_string()),
            FlagKind::List => {
                let value = value.ok_or_else(missing)?.to_string();
                if let Some(i) = previous {
                    if let FlagValue::List(values) = &mut flags.used[i].1 {
                        values.push(value);
                    }
                    continue;
                }
                FlagValue::List(vec![value])
            }
        };
        flags.used.push((name, parsed));
    }
    Ok(flags)
}

fn at_least_one(args: &[String], command: &str) -> Result<(), String> {
    if args.is_empty() {
        return Err(format!("{command} requires at least one argument"));
    }
    Ok(())
}

fn exactly_one(args: &[String], command: &str) -> Result<String, String> {
    match args {
        [arg] => Ok(arg.clone()),
        _ => Err(format!("{command} requires exactly one argument")),
    }
}

fn command_of(node: &Node, args: &[String]) -> Command {
    if node.json {
        Command::Exec(args.to_vec())
    } else {
        Command::Shell(args.join(" "))
    }
}

/// BuildKit's `ParseInstruction`.
fn instruction(node: &Node) -> Result<Parsed, String> {
    let args = node.args.as_slice();
    let no_flags = || parse_flags(&node.flags, &[]).map(|_| ());
    let instruction = match node.lower().as_str() {
        "from" => return from(node).map(Parsed::Stage),
        "env" => {
            no_flags()?;
            Instruction::Env(pairs(args, "ENV")?)
        }
        "label" => {
            no_flags()?;
            Instruction::Label(pairs(args, "LABEL")?)
        }
        "maintainer" => {
            let name = exactly_one(args, "MAINTAINER")?;
            no_flags()?;
            Instruction::Maintainer(name)
        }
        "add" => Instruction::Add(copy_spec(node, "ADD")?),
        "copy" => Instruction::Copy(copy_spec(node, "COPY")?),
        "onbuild" => {
            at_least_one(args, "ONBUILD")?;
            no_flags()?;
            let trigger = args[0].trim().to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string())
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut expression = strip_onbuild(&node.original).to_string();
            for heredoc in &node.heredocs {
                expression.push('\n');
                expression.push_str(&heredoc.content);
                expression.push_str(&heredoc.name);
            }
            Instruction::OnBuild(expression)
        }
        "workdir" => {
            let path = exactly_one(args, "WORKDIR")?;
            no_flags()?;
            Instruction::Workdir(path)
        }
        "run" => run(node)?,
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_of(node, args))
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_of(node, args))
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(node)?),
        "expose" => {
            at_least_one(args, "EXPOSE")?;
            no_flags()?;
            let mut ports = args.to_vec();
            ports.sort();
            Instruction::Expose(ports)
        }
        "user" => {
            let user = exactly_one(args, "USER")?;
            no_flags()?;
            Instruction::User(user)
        }
        "volume" => {
            at_least_one(args, "VOLUME")?;
            no_flags()?;
            let mut volumes = Vec::with_capacity(args.len());
            for volume in args {
                let volume = volume.trim();
                if volume.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_string());
                }
                volumes.push(volume.to_string());
            }
            Instruction::Volume(volumes)
        }
        // Docker reads no flags for STOPSIGNAL and ARG (and ignores any given).
        "stopsignal" => Instruction::StopSignal(exactly_one(args, "STOPSIGNAL")?),
        "arg" => {
            at_least_one(args, "ARG")?;
            let mut decls = Vec::with_capacity(args.len());
            for arg in args {
                decls.push(match arg.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".to_string()),
                    Some((name, default)) => ArgDecl {
                        name: name.to_string(),
                        default: Some(default.to_string()),
                    },
                    None => ArgDecl {
                        name: arg.clone(),
                        default: None,
                    },
                });
            }
            Instruction::Arg(decls)
        }
        "shell" => {
            no_flags()?;
            if args.is_empty() {
                return Err("SHELL requires at least one argument".to_string());
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_string());
            }
            Instruction::Shell(args.to_vec())
        }
        _ => return Err(format!("unknown instruction: {}", node.cmd)),
    };
    Ok(Parsed::Step(Step {
        line: node.start_line,
        original: node.original.trim().to_string(),
        instruction,
    }))
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let text = original.trim_start_matches(is_re_space);
    match text.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => {
            text[7..].trim_start_matches(is_re_space)
        }
        _ => text,
    }
}

fn pairs(args: &[String], command: &str) -> Result<Vec<(String, String)>, String> {
    at_least_one(args, command)?;
    let mut pairs = Vec::with_capacity(args.len() / 2);
    for pair in args.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("Bad input to {command}, too many arguments"));
        };
        if key.is_empty() {
            return Err(format!("{command} names can not be blank"));
        }
        pairs.push((key.clone(), value.clone()));
    }
    Ok(pairs)
}

fn from(node: &Node) -> Result<Stage, String> {
    let args = node.args.as_slice();
    let name = match args {
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                ));
            }
            Some(lower)
        }
        [_] => None,
        _ => return Err("FROM requires either one or three arguments".to_string()),
    };
    let flags = parse_flags(&node.flags, &[("platform", FlagKind::Text)])?;
    Ok(Stage {
        base: args[0].clone(),
        name,
        platform: flags.text("platform", false),
        line: node.start_line,
        original: node.original.trim().to_string(),
        steps: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn copy_spec(node: &Node, command: &str) -> Result<CopySpec, String> {
    if node.args.len() < 2 {
        return Err(format!(
            "{command} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let known: &[(&'static str, FlagKind)] = if command == "ADD" {
        &[
            ("exclude", FlagKind::List),
            ("chown", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::Text),
        ]
    } else {
        &[
            ("exclude", FlagKind::List),
            ("parents", FlagKind::Bool),
            ("chown", FlagKind::Text),
            ("from", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
        ]
    };
    let flags = parse_flags(&node.flags, known)?;

    let (dest, sources) = node
        .args
        .split_last()
        .ok_or_else(|| format!("{command} requires at least two arguments"))?;
    if matches!(parse_heredoc(dest), Ok(Some(_))) {
        return Err(format!(
            "{command} cannot accept a heredoc as a destination"
        ));
    }
    // The body of a name is the last heredoc of the line with that name (BuildKit's
    // `heredocLookup`), looked up by name rather than by a search per marker: a line of
    // many heredocs is then read in linear time.
    let bodies: HashMap<&str, &str> = node
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_str()))
        .collect();
    let mut paths = Vec::new();
    // Markers from the last one back, each (name, expand, strip_tabs) once: a repeated
    // marker makes the same file (named after the delimiter) with the same content, so
    // its earlier copies change nothing, and copying the body for each of them would let
    // `COPY <<A <<A … <<A` with one big body take memory quadratic in the file's size.
    let mut seen = HashSet::new();
    let mut heredocs = Vec::new();
    for source in sources.iter().rev() {
        match parse_heredoc(source) {
            Ok(Some(marker)) => {
                if !seen.insert((marker.name.clone(), marker.expand, marker.strip_tabs)) {
                    continue;
                }
                let content = bodies
                    .get(marker.name.as_str())
                    .map(|body| body.to_string())
                    .unwrap_or_default();
                heredocs.push(Heredoc {
                    name: marker.name,
                    content,
                    expand: marker.expand,
                    strip_tabs: marker.strip_tabs,
                });
            }
            _ => paths.push(source.clone()),
        }
    }
    paths.reverse();
    heredocs.reverse();
    Ok(CopySpec {
        sources: paths,
        dest: dest.clone(),
        from: flags.text("from", false),
        chown: flags.text("chown", false),
        chmod: flags.text("chmod", false),
        link: flags.flag("link"),
        keep_git_dir: flags.flag("keep-git-dir"),
        checksum: flags.text("checksum", false),
        exclude: flags.list("exclude"),
        parents: flags.flag("parents"),
        heredocs,
    })
}

fn run(node: &Node) -> Result<Instruction, String> {
    let flags = parse_flags(
        &node.flags,
        &[
            ("mount", FlagKind::List),
            ("network", FlagKind::Text),
            ("security", FlagKind::Text),
        ],
    )?;
    let network = flags.text("network", true);
    if let Some(mode) = &network {
        if !matches!(mode.as_str(), "default" | "none" | "host") {
            return Err(format!("unsupported network mode {mode:?}"));
        }
    }
    let security = flags.text("security", true);
    if let Some(mode) = &security {
        if !matches!(mode.as_str(), "sandbox" | "insecure") {
            return Err(format!("unsupported security mode {mode:?}"));
        }
    }
    Ok(Instruction::Run {
        command: command_of(node, &node.args),
        heredocs: node.heredocs.clone(),
        network,
        security,
        mounts: flags.list("mount"),
    })
}

fn healthcheck(node: &Node) -> Result<Health, String> {
    let Some((kind, command)) = node.args.split_first() else {
        return Err("HEALTHCHECK requires at least one argument".to_string());
    };
    let kind = kind.to_uppercase();
    if kind == "NONE" {
        // Docker reads no flags here.
        if !command.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        return Ok(Health::None);
    }
    let text = |name| (name, FlagKind::Text);
    let flags = parse_flags(
        &node.flags,
        &[
            text("interval"),
            text("timeout"),
            text("start-period"),
            text("start-interval"),
            text("retries"),
        ],
    )?;
    if kind != "CMD" {
        return Err(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"));
    }
    if command.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let interval = |name| optional_interval(flags.text(name, false), name);
    let retries = match flags.text("retries", false) {
        None => None,
        Some(value) => Some(parse_retries(&value)?),
    };
    Ok(Health::Check {
        test: command_of(node, command),
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    })
}

/// Docker's `parseOptInterval`: a Go duration of at least 1ms; zero means unset.
fn optional_interval(value: Option<String>, name: &str) -> Result<Option<Duration>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let nanos = parse_go_duration(&value)?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err(format!("Interval {name:?} cannot be less than 1ms"));
    }
    Ok(Some(Duration::from_nanos(nanos.unsigned_abs())))
}

/// `strconv.ParseInt(value, 10, 32)` then Docker's check.
fn parse_retries(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {value:?}: invalid syntax"
        ));
    }
    let retries = value
        .parse::<i32>()
        .map_err(|_| format!("strconv.ParseInt: parsing {value:?}: value out of range"))?;
    u32::try_from(retries).map_err(|_| format!("--retries cannot be negative ({retries})"))
}

/// Go's `time.ParseDuration` (`1m30s`, `1.5h`, `500ms`, `-2us`): nanoseconds, with Go's
/// error messages.
fn parse_go_duration(text: &str) -> Result<i64, String> {
    const LIMIT: u128 = 1 << 63;
    let invalid = || format!("time: invalid duration \"{text}\"");
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let bytes = s.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut value: u128 = 0;
        for b in &bytes[..int_len] {
            value = value * 10 + u128::from(b - b'0');
            if value > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        // The fraction.
        let mut fraction: u128 = 0;
        let mut scale = 1.0_f64;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for b in &rest.as_bytes()[..frac_len] {
                if overflow || fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                fraction = fraction * 10 + u128::from(b - b'0');
                scale *= 10.0;
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        // The unit.
        let unit_len = s
            .bytes()
            .take_while(|b| !(*b == b'.' || b.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{text}\""));
        }
        let (unit_text, rest) = s.split_at(unit_len);
        s = rest;
        let unit: u128 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit_text}\" in duration \"{text}\""
                ))
            }
        };
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // As Go does, in floating point (exact enough for fractions of hours).
            value += (fraction as f64 * (unit as f64 / scale)) as u128;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        return i64::try_from(-(total as i128)).map_err(|_| invalid());
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        text.to_string()
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// The steps of a one-stage Dockerfile made of `FROM scratch` and `body`.
    fn steps(body: &str) -> Vec<Step> {
        let file = parse(&format!("FROM scratch\n{body}")).unwrap();
        assert_eq!(file.stages.len(), 1);
        file.stages.into_iter().next().unwrap().steps
    }

    fn only(body: &str) -> Instruction {
        let mut steps = steps(body);
        assert_eq!(steps.len(), 1, "{steps:?}");
        steps.remove(0).instruction
    }

    /// The error of a Dockerfile made of `FROM scratch` and `body`.
    fn error(body: &str) -> ParseError {
        parse(&format!("FROM scratch\n{body}")).unwrap_err()
    }

    fn message(body: &str) -> String {
        error(body).message
    }

    fn copy_of(instruction: Instruction) -> CopySpec {
        match instruction {
            Instruction::Copy(spec) | Instruction::Add(spec) => spec,
            other => panic!("not COPY/ADD: {other:?}"),
        }
    }

    const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG BASE="alpine:3.19"

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build
WORKDIR /src
COPY go.mod go.sum ./
# download first, for the cache
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION
RUN CGO_ENABLED=0 go build -ldflags "-X main.version=$VERSION" -o /out/app ./cmd/app

FROM ${BASE}
LABEL org.opencontainers.image.title="app" version=1.0
ENV PATH=/usr/local/bin:$PATH APP_ENV="prod mode"
COPY --from=build --chown=app:app /out/app /usr/local/bin/app
EXPOSE 8080/tcp 443
USER app
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD wget -q -O- http://localhost:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["serve", "--port", "8080"]
"#;

    #[test]
    fn multi_stage_dockerfile() {
        let file = parse(MULTI_STAGE).unwrap();
        assert_eq!(file.escape, '\\');
        assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(
            file.args,
            vec![
                ArgDecl {
                    name: s("GO_VERSION"),
                    default: Some(s("1.22"))
                },
                ArgDecl {
                    name: s("BASE"),
                    default: Some(s("\"alpine:3.19\""))
                },
            ]
        );
        assert_eq!(file.stages.len(), 2);

        let build = &file.stages[0];
        assert_eq!(build.base, "golang:${GO_VERSION}");
        assert_eq!(build.name.as_deref(), Some("build"));
        assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(build.line, 5);
        assert_eq!(
            build.original,
            "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build"
        );
        let lines: Vec<usize> = build.steps.iter().map(|step| step.line).collect();
        assert_eq!(lines, vec![6, 7, 9, 11, 12, 13]);
        assert_eq!(build.steps[0].instruction, Instruction::Workdir(s("/src")));
        assert_eq!(
            build.steps[2].original,
            "RUN --mount=type=cache,target=/go/pkg/mod     go mod download"
        );
        assert_eq!(
            build.steps[2].instruction,
            Instruction::Run {
                command: Command::Shell(s("go mod download")),
                heredocs: vec![],
                network: None,
                security: None,
                mounts: strings(&["type=cache,target=/go/pkg/mod"]),
            }
        );
        assert_eq!(
            build.steps[4].instruction,
            Instruction::Arg(vec![ArgDecl {
                name: s("VERSION"),
                default: None
            }])
        );

        let app = &file.stages[1];
        assert_eq!(app.base, "${BASE}");
        assert_eq!(app.name, None);
        assert_eq!(app.line, 15);
        let instructions: Vec<&Instruction> = app.steps.iter().map(|s| &s.instruction).collect();
        assert_eq!(
            instructions[0],
            &Instruction::Label(vec![
                (s("org.opencontainers.image.title"), s("\"app\"")),
                (s("version"), s("1.0")),
            ])
        );
        assert_eq!(
            instructions[1],
            &Instruction::Env(vec![
                (s("PATH"), s("/usr/local/bin:$PATH")),
                (s("APP_ENV"), s("\"prod mode\"")),
            ])
        );
        let copy = copy_of(instructions[2].clone());
        assert_eq!(copy.from.as_deref(), Some("build"));
        assert_eq!(copy.chown.as_deref(), Some("app:app"));
        assert_eq!(copy.sources, strings(&["/out/app"]));
        assert_eq!(copy.dest, "/usr/local/bin/app");
        assert_eq!(
            instructions[3],
            &Instruction::Expose(strings(&["443", "8080/tcp"]))
        );
        assert_eq!(instructions[4], &Instruction::User(s("app")));
        assert_eq!(
            instructions[5],
            &Instruction::Healthcheck(Health::Check {
                test: Command::Shell(s("wget -q -O- http://localhost:8080/health || exit 1")),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(5)),
                start_period: None,
                start_interval: None,
                retries: Some(3),
            })
        );
        assert_eq!(app.steps[5].line, 21);
        assert_eq!(
            instructions[6],
            &Instruction::Entrypoint(Command::Exec(strings(&["/usr/local/bin/app"])))
        );
        assert_eq!(
            instructions[7],
            &Instruction::Cmd(Command::Exec(strings(&["serve", "--port", "8080"])))
        );
        assert_eq!(app.steps[7].original, r#"CMD ["serve", "--port", "8080"]"#);
    }

    #[test]
    fn escape_directive() {
        let file = parse("# escape=`\nFROM windows\nRUN dir c:\\ `\n  && echo hi\n").unwrap();
        assert_eq!(file.escape, '`');
        let step = &file.stages[0].steps[0];
        assert_eq!(step.original, "RUN dir c:\\   && echo hi");
        assert_eq!(
            step.instruction,
            Instruction::Run {
                command: Command::Shell(s("dir c:\\   && echo hi")),
                heredocs: vec![],
                network: None,
                security: None,
                mounts: vec![],
            }
        );
        // The escape character also escapes in ENV words.
        let file = parse("#escape=`\nFROM x\nENV A=a` b\n").unwrap();
        assert_eq!(
            file.stages[0].steps[0].instruction,
            Instruction::Env(vec![(s("A"), s("a` b"))])
        );
    }

    #[test]
    fn directive_keys_and_spacing() {
        let file = parse("#  ESCAPE = `  \n# Syntax=foo/bar:1 \nFROM x\n").unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(file.syntax.as_deref(), Some("foo/bar:1"));
        // `check` is a directive too: it does not end the directives.
        let file = parse("# check=skip=all\n# escape=`\nFROM x\n").unwrap();
        assert_eq!(file.escape, '`');
    }

    #[test]
    fn directives_only_at_the_very_top() {
        for text in [
            "# a comment\n# escape=`\nFROM x\n",
            "\n# escape=`\nFROM x\n",
            "# unknown=1\n# escape=`\nFROM x\n",
            "FROM x\n# escape=`\n",
            "FROM x\n# syntax=a\n",
        ] {
            let file = parse(text).unwrap();
            assert_eq!(file.escape, '\\', "{text:?}");
            assert_eq!(file.syntax, None, "{text:?}");
        }
    }

    #[test]
    fn directive_errors() {
        let err = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(
            err,
            ParseError {
                line: 1,
                message: s("invalid escape token 'x' does not match ` or \\")
            }
        );
        let err = parse("# escape=\\\n# escape=`\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "only one escape parser directive can be used");
        let err = parse("# syntax=a\n# syntax=b\nFROM a\n").unwrap_err();
        assert_eq!(err.message, "only one syntax parser directive can be used");
    }

    #[test]
    fn comments_and_blank_lines() {
        let file = parse(
            "\n# comment\n   # indented comment\nFROM alpine\n\n\t\nRUN apk add \\\n# dropped\n  # dropped too\n    curl \\\n\n    git\n# end\n",
        )
        .unwrap();
        let steps = &file.stages[0].steps;
        assert_eq!(file.stages[0].line, 4);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].line, 7);
        assert_eq!(steps[0].original, "RUN apk add     curl     git");
        // A `#` that is not at the start of a line is not a comment.
        assert_eq!(
            only("RUN echo # not a comment\n"),
            Instruction::Run {
                command: Command::Shell(s("echo # not a comment")),
                heredocs: vec![],
                network: None,
                security: None,
                mounts: vec![],
            }
        );
    }

    #[test]
    fn line_continuations() {
        // Blanks after the escape are allowed.
        let steps = steps("RUN echo a \\  \t\n  b\nRUN echo c\\\n\\\n d\n");
        assert_eq!(steps[0].original, "RUN echo a   b");
        assert_eq!(steps[1].original, "RUN echo c d");
        assert_eq!(steps[1].line, 4);
        // An escaped escape at the end of the line does not continue it.
        let steps = self::steps("RUN echo foo\\\\\nRUN echo bar\n");
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].original, "RUN echo foo\\\\");
        // A continuation at the end of the file ends the instruction.
        assert_eq!(only("WORKDIR /a\\\n"), Instruction::Workdir(s("/a")));
        // CRLF line ends.
        let file = parse("FROM a\r\nRUN x \\\r\n  y\r\n").unwrap();
        assert_eq!(file.stages[0].steps[0].original, "RUN x   y");
    }

    #[test]
    fn instructions_are_case_insensitive() {
        let file =
            parse("from alpine as Base\nrun echo hi\nCoPy a b\nEnTrYpOiNt [\"x\"]\n").unwrap();
        let stage = &file.stages[0];
        assert_eq!(stage.name.as_deref(), Some("base"));
        assert_eq!(stage.steps.len(), 3);
        assert_eq!(stage.steps[0].original, "run echo hi");
        assert!(matches!(stage.steps[1].instruction, Instruction::Copy(_)));
        assert_eq!(
            stage.steps[2].instruction,
            Instruction::Entrypoint(Command::Exec(strings(&["x"])))
        );
    }

    #[test]
    fn unknown_instruction() {
        let err = parse("FROM a\nRUN x\nFOO bar\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.message, "unknown instruction: FOO");
        assert_eq!(
            err.to_string(),
            "Dockerfile parse error line 3: unknown instruction: FOO"
        );
        assert_eq!(message("foo bar"), "unknown instruction: foo");
        // Line errors come before instruction errors, whatever their order.
        let err = parse("FROM a\nFOO bar\nRUN <<EOF\nno end\n").unwrap_err();
        assert_eq!(err.message, "unterminated heredoc");
    }

    #[test]
    fn argument_count_errors() {
        for (body, expected) in [
            ("COPY a", "COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
            ("ADD a", "ADD requires at least two arguments, but only one was provided. Destination could not be determined"),
            ("COPY --from=x", "COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
            ("COPY [\"a\"]", "COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
            ("ENV", "ENV requires at least one argument"),
            ("LABEL", "LABEL requires at least one argument"),
            ("ONBUILD", "ONBUILD requires at least one argument"),
            ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
            ("EXPOSE", "EXPOSE requires at least one argument"),
            ("VOLUME", "VOLUME requires at least one argument"),
            ("VOLUME []", "VOLUME requires at least one argument"),
            ("ARG", "ARG requires at least one argument"),
            ("MAINTAINER", "MAINTAINER requires exactly one argument"),
            ("WORKDIR", "WORKDIR requires exactly one argument"),
            ("USER", "USER requires exactly one argument"),
            ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
            ("SHELL", "SHELL requires at least one argument"),
            ("SHELL []", "SHELL requires at least one argument"),
            ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
            ("ENV a", "ENV must have two arguments"),
            ("LABEL a", "LABEL must have two arguments"),
            ("ENV a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
            ("ENV =x", "ENV names can not be blank"),
            ("LABEL =x", "LABEL names can not be blank"),
            ("ARG =x", "ARG names can not be blank"),
            ("RUN [1, 2]", "when using JSON array syntax, arrays must be comprised of strings only"),
            ("CMD [\"a\", null]", "when using JSON array syntax, arrays must be comprised of strings only"),
            ("COPY [\"a\", 1]", "when using JSON array syntax, arrays must be comprised of strings only"),
            ("VOLUME [\"\"]", "VOLUME specified can not be an empty string"),
            ("VOLUME [\" \", \"/a\"]", "VOLUME specified can not be an empty string"),
        ] {
            assert_eq!(message(body), expected, "{body}");
            assert_eq!(error(body).line, 2, "{body}");
        }
    }

    #[test]
    fn from_forms() {
        for text in [
            "FROM",
            "FROM a b",
            "FROM a AS",
            "FROM a AS b c",
            "FROM a FROM b",
        ] {
            assert_eq!(
                parse(text).unwrap_err().message,
                "FROM requires either one or three arguments",
                "{text}"
            );
        }
        assert_eq!(
            parse("FROM a AS 1st").unwrap_err().message,
            "invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
        );
        assert_eq!(
            parse("FROM a AS b@c").unwrap_err().message,
            "invalid name for build stage: \"b@c\", name can't start with a number or contain symbols"
        );
        let file = parse("FROM\ta\tas\tMy-Stage_1.x\nFROM --platform=linux/arm64 b").unwrap();
        assert_eq!(file.stages[0].name.as_deref(), Some("my-stage_1.x"));
        assert_eq!(file.stages[1].platform.as_deref(), Some("linux/arm64"));
        assert_eq!(file.stages[1].line, 2);
        assert_eq!(
            parse("FROM --foo=bar alpine").unwrap_err().message,
            "Unknown flag: foo"
        );
        // `--platform=` empty is no platform.
        let file = parse("FROM --platform= a").unwrap();
        assert_eq!(file.stages[0].platform, None);
    }

    #[test]
    fn copy_and_add_flags() {
        let copy = copy_of(only(
            "COPY --parents --exclude=*.md --exclude=tmp/ --link=false --chmod=755 --chown=\"app user\" src/ a.txt /dest/\n",
        ));
        assert_eq!(
            copy,
            CopySpec {
                sources: strings(&["src/", "a.txt"]),
                dest: s("/dest/"),
                from: None,
                chown: Some(s("app user")),
                chmod: Some(s("755")),
                link: false,
                keep_git_dir: false,
                checksum: None,
                exclude: strings(&["*.md", "tmp/"]),
                parents: true,
                heredocs: vec![],
            }
        );
        let add = only(
            "ADD --checksum=sha256:abc --keep-git-dir=true --link --chmod=644 --exclude=*.md https://example.com/a.tar.gz /z/\n",
        );
        assert!(matches!(add, Instruction::Add(_)));
        let add = copy_of(add);
        assert_eq!(add.checksum.as_deref(), Some("sha256:abc"));
        assert!(add.keep_git_dir);
        assert!(add.link);
        assert_eq!(add.chmod.as_deref(), Some("644"));
        assert_eq!(add.exclude, strings(&["*.md"]));
        assert_eq!(add.sources, strings(&["https://example.com/a.tar.gz"]));

        // JSON form.
        let copy = copy_of(only("COPY [\"a b.txt\", \"c\", \"/dest dir/\"]\n"));
        assert_eq!(copy.sources, strings(&["a b.txt", "c"]));
        assert_eq!(copy.dest, "/dest dir/");
        // Shell form splits on blanks only.
        let copy = copy_of(only("COPY \"a b\" /c\n"));
        assert_eq!(copy.sources, strings(&["\"a", "b\""]));
    }

    #[test]
    fn flag_errors() {
        for (body, expected) in [
            ("ADD --from=build a b", "Unknown flag: from"),
            ("ADD --parents a b", "Unknown flag: parents"),
            ("COPY --checksum=sha256:x a b", "Unknown flag: checksum"),
            ("COPY --keep-git-dir a b", "Unknown flag: keep-git-dir"),
            ("COPY --chown a b", "Missing a value on flag: chown"),
            ("COPY --exclude a b", "Missing a value on flag: exclude"),
            ("COPY --link= a b", "Missing a value on flag: link"),
            (
                "COPY --link=yes a b",
                "Expecting boolean value for flag link, not: yes",
            ),
            (
                "COPY --from=a --from=b x y",
                "Duplicate flag specified: from",
            ),
            (
                "RUN --network=bogus make",
                "unsupported network mode \"bogus\"",
            ),
            (
                "RUN --security=root make",
                "unsupported security mode \"root\"",
            ),
            ("RUN --bogus make", "Unknown flag: bogus"),
            ("WORKDIR --x=1 /a", "Unknown flag: x"),
            ("MAINTAINER --boo joe@example.com", "Unknown flag: boo"),
            ("ENV --a=b c=d", "Unknown flag: a"),
            ("CMD --a x", "Unknown flag: a"),
            ("ONBUILD --a RUN x", "Unknown flag: a"),
            ("HEALTHCHECK --bogus=1 CMD x", "Unknown flag: bogus"),
        ] {
            assert_eq!(message(body), expected, "{body}");
        }
        // Docker reads no flags for STOPSIGNAL and ARG.
        assert_eq!(
            only("STOPSIGNAL --x=1 SIGKILL\n"),
            Instruction::StopSignal(s("SIGKILL"))
        );
        assert_eq!(
            only("ARG --x=1 a\n"),
            Instruction::Arg(vec![ArgDecl {
                name: s("a"),
                default: None
            }])
        );
    }

    #[test]
    fn run_forms() {
        assert_eq!(
            only("RUN --mount=type=bind,source=a,target=/a --mount=type=cache,target=/c --network=none --security=insecure make all\n"),
            Instruction::Run {
                command: Command::Shell(s("make all")),
                heredocs: vec![],
                network: Some(s("none")),
                security: Some(s("insecure")),
                mounts: strings(&["type=bind,source=a,target=/a", "type=cache,target=/c"]),
            }
        );
        let run = |body: &str| match only(body) {
            Instruction::Run { command, .. } => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run("RUN [\"echo\", \"a b\"]\n"),
            Command::Exec(strings(&["echo", "a b"]))
        );
        assert_eq!(run("RUN [ \"a\" \n"), Command::Shell(s("[ \"a\"")));
        assert_eq!(run("RUN ['a']\n"), Command::Shell(s("['a']")));
        assert_eq!(run("RUN\techo   hi   \n"), Command::Shell(s("echo   hi")));
        assert_eq!(run("RUN -x\n"), Command::Shell(s("-x")));
        // `--` ends the flags.
        assert_eq!(run("RUN -- --version\n"), Command::Shell(s("--version")));
        assert_eq!(run("RUN\n"), Command::Shell(s("")));
    }

    #[test]
    fn cmd_entrypoint_shell_forms() {
        assert_eq!(
            only("CMD echo hi\n"),
            Instruction::Cmd(Command::Shell(s("echo hi")))
        );
        assert_eq!(only("CMD\n"), Instruction::Cmd(Command::Shell(s(""))));
        assert_eq!(only("CMD []\n"), Instruction::Cmd(Command::Exec(vec![])));
        assert_eq!(
            only("ENTRYPOINT [\"a\", 'b']\n"),
            Instruction::Entrypoint(Command::Shell(s("[\"a\", 'b']")))
        );
        assert_eq!(
            only("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n"),
            Instruction::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))
        );
    }

    #[test]
    fn env_label_arg_forms() {
        assert_eq!(
            only("ENV A=1 B=\"two words\" C=three\\ words D= E=''\n"),
            Instruction::Env(vec![
                (s("A"), s("1")),
                (s("B"), s("\"two words\"")),
                (s("C"), s("three\\ words")),
                (s("D"), s("")),
                (s("E"), s("''")),
            ])
        );
        assert_eq!(
            only("ENV LEGACY value with  spaces \"and quotes\"\n"),
            Instruction::Env(vec![(s("LEGACY"), s("value with  spaces \"and quotes\""))])
        );
        assert_eq!(
            only("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1\n"),
            Instruction::Label(vec![
                (s("\"com.example.vendor\""), s("\"ACME Inc\"")),
                (s("version"), s("1")),
            ])
        );
        assert_eq!(
            only("ARG A B=2 C=\"x y\" D=a=b\n"),
            Instruction::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: None
                },
                ArgDecl {
                    name: s("B"),
                    default: Some(s("2"))
                },
                ArgDecl {
                    name: s("C"),
                    default: Some(s("\"x y\""))
                },
                ArgDecl {
                    name: s("D"),
                    default: Some(s("a=b"))
                },
            ])
        );
    }

    #[test]
    fn single_argument_instructions() {
        assert_eq!(only("USER app user\n"), Instruction::User(s("app user")));
        assert_eq!(
            only("WORKDIR /a/$DIR\n"),
            Instruction::Workdir(s("/a/$DIR"))
        );
        assert_eq!(
            only("MAINTAINER Jane <j@x>\n"),
            Instruction::Maintainer(s("Jane <j@x>"))
        );
        assert_eq!(
            only("STOPSIGNAL SIGQUIT\n"),
            Instruction::StopSignal(s("SIGQUIT"))
        );
        assert_eq!(
            only("EXPOSE 80 53/udp 443\n"),
            Instruction::Expose(strings(&["443", "53/udp", "80"]))
        );
        assert_eq!(
            only("VOLUME /a /b\n"),
            Instruction::Volume(strings(&["/a", "/b"]))
        );
        assert_eq!(
            only("VOLUME [\"/a\", \" /b \"]\n"),
            Instruction::Volume(strings(&["/a", "/b"]))
        );
    }

    #[test]
    fn heredocs_in_run() {
        let steps = steps(
            "RUN <<EOF\napt-get update\n# not a comment\nFROM not-an-instruction\nEOF\nRUN echo after\n",
        );
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].original, "RUN <<EOF");
        assert_eq!(
            steps[0].instruction,
            Instruction::Run {
                command: Command::Shell(s("<<EOF")),
                heredocs: vec![Heredoc {
                    name: s("EOF"),
                    content: s("apt-get update\n# not a comment\nFROM not-an-instruction\n"),
                    expand: true,
                    strip_tabs: false,
                }],
                network: None,
                security: None,
                mounts: vec![],
            }
        );
        assert_eq!(steps[1].line, 7);

        let heredocs = |body: &str| match only(body) {
            Instruction::Run { heredocs, .. } => heredocs,
            other => panic!("{other:?}"),
        };
        let h = heredocs("RUN <<-EOT bash\n\techo $HOME\n\t\tdone\n\tEOT\n");
        assert_eq!(h.len(), 1);
        assert!(h[0].strip_tabs && h[0].expand);
        assert_eq!(h[0].content, "\techo $HOME\n\t\tdone\n");
        assert_eq!(h[0].body(), "echo $HOME\ndone\n");

        for (marker, name) in [
            ("<<'EOF'", "EOF"),
            ("<<\"EOF\"", "EOF"),
            ("<<E\"O\"F", "EOF"),
        ] {
            let h = heredocs(&format!("RUN {marker}\nx $Y\n{name}\n"));
            assert_eq!(h[0].name, name);
            assert!(!h[0].expand, "{marker}");
            assert_eq!(h[0].content, "x $Y\n");
        }
        // An escaped quote does not turn expansion off.
        let h = heredocs("RUN <<eo\\'f\nx\neo'f\n");
        assert_eq!(h[0].name, "eo'f");
        assert!(h[0].expand);
        // Blanks between << and the delimiter.
        let h = heredocs("RUN cat <<  EOF\nx\nEOF\n");
        assert_eq!(h[0].name, "EOF");

        // Several heredocs are read one after the other.
        let h = heredocs("RUN cat <<A > /a && cat <<B > /b\nB\nA\nA\nB\n");
        assert_eq!(
            h.iter()
                .map(|h| (h.name.as_str(), h.content.as_str()))
                .collect::<Vec<_>>(),
            vec![("A", "B\n"), ("B", "A\n")]
        );
        // CRLF.
        let h = heredocs("RUN <<EOF\r\nhi\r\nEOF\r\n");
        assert_eq!(h[0].content, "hi\r\n");
    }

    #[test]
    fn not_heredocs() {
        // JSON form, quoted markers, `<<` inside a word, instructions without heredocs.
        for body in [
            "RUN [\"cat\", \"<<EOF\"]\n",
            "RUN echo \"<<EOF\"\n",
            "RUN echo a<<EOF\n",
            "RUN echo <<\n",
            "ENV A=<<EOF\n",
        ] {
            let steps = steps(&format!("{body}RUN next\n"));
            assert_eq!(steps.len(), 2, "{body}");
        }
    }

    #[test]
    fn heredocs_in_copy() {
        let copy = copy_of(only("COPY <<EOF /etc/motd\nhello $USER\nEOF\n"));
        assert_eq!(copy.sources, Vec::<String>::new());
        assert_eq!(copy.dest, "/etc/motd");
        assert_eq!(
            copy.heredocs,
            vec![Heredoc {
                name: s("EOF"),
                content: s("hello $USER\n"),
                expand: true,
                strip_tabs: false
            }]
        );
        let copy = copy_of(only(
            "COPY --chmod=755 <<A file.txt <<'B' /dest/\na\nA\nb\nB\n",
        ));
        assert_eq!(copy.sources, strings(&["file.txt"]));
        assert_eq!(copy.chmod.as_deref(), Some("755"));
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(
            (copy.heredocs[1].name.as_str(), copy.heredocs[1].expand),
            ("B", false)
        );
        assert_eq!(copy.heredocs[1].content, "b\n");

        assert_eq!(
            message("COPY a <<EOF\nx\nEOF\n"),
            "COPY cannot accept a heredoc as a destination"
        );
        assert_eq!(
            message("ADD a <<EOF\nx\nEOF\n"),
            "ADD cannot accept a heredoc as a destination"
        );
    }

    #[test]
    fn repeated_heredoc_markers_are_listed_once() {
        // Every `<<A` takes the body of the line's last heredoc named A.
        let copy = copy_of(only("COPY <<A x <<A /d/\nfirst\nA\nsecond\nA\n"));
        assert_eq!(copy.sources, strings(&["x"]));
        assert_eq!(
            copy.heredocs,
            vec![Heredoc {
                name: s("A"),
                content: s("second\n"),
                expand: true,
                strip_tabs: false
            }]
        );
        // Another quoting or `<<-` makes another content: each stays, at its last place.
        let copy = copy_of(only(
            "COPY <<A <<-A <<'A' <<A /d/\n1\nA\n2\nA\n3\nA\n\t4\nA\n",
        ));
        let shapes: Vec<_> = copy
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.strip_tabs))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("A", "\t4\n", true, true),
                ("A", "\t4\n", false, false),
                ("A", "\t4\n", true, false),
            ]
        );
        // As regressions/dockerfile/copy-repeated-heredoc-marker (24 000 markers, a body
        // of 140 kB: 3.4 GB when the body was copied for each marker), smaller.
        let markers = 2_000;
        let body = "x".repeat(10_000);
        let text = format!(
            "COPY {}/d/\n{}{body}\nA\n",
            "<<A ".repeat(markers),
            "A\n".repeat(markers - 1)
        );
        let copy = copy_of(only(&text));
        assert_eq!(copy.heredocs.len(), 1);
        assert_eq!(copy.heredocs[0].content.len(), body.len() + 1);
        // Many names: each marker gets its own body.
        let names: Vec<String> = (0..20_000).map(|i| format!("H{i}")).collect();
        let text = format!(
            "COPY <<{} /d/\n{}",
            names.join(" <<"),
            names
                .iter()
                .map(|n| format!("{n}.body\n{n}\n"))
                .collect::<String>()
        );
        let copy = copy_of(only(&text));
        assert_eq!(copy.heredocs.len(), names.len());
        for (heredoc, name) in copy.heredocs.iter().zip(&names) {
            assert_eq!(heredoc.name, *name);
            assert_eq!(heredoc.content, format!("{name}.body\n"));
        }
    }

    #[test]
    fn unterminated_heredoc() {
        let err = parse("FROM a\nRUN x\nRUN <<EOF\nline\nEOF \n").unwrap_err();
        assert_eq!(
            err,
            ParseError {
                line: 3,
                message: s("unterminated heredoc")
            }
        );
    }

    #[test]
    fn instruction_before_from() {
        let err = parse("ARG X\nRUN echo\nFROM a\n").unwrap_err();
        assert_eq!(
            err,
            ParseError {
                line: 2,
                message: s("no build stage in current context")
            }
        );
        assert_eq!(
            parse("LABEL a=b\nFROM x\n").unwrap_err().message,
            "no build stage in current context"
        );
        // ARGs between stages belong to the stage before.
        let file = parse("ARG A=1\nFROM a\nARG B\nFROM b\n").unwrap();
        assert_eq!(file.args.len(), 1);
        assert_eq!(file.stages[0].steps.len(), 1);
        assert!(file.stages[1].steps.is_empty());
    }

    #[test]
    fn empty_files() {
        for text in [
            "",
            "\n\n",
            "# just a comment\n",
            "   \n\t\n",
            "# escape=`\n",
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.message, "file with no instructions", "{text:?}");
        }
        let err = parse("\n\n# c\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(
            parse("ARG A\nARG B=1\n").unwrap_err().message,
            "No image was generated. Is your Dockerfile empty?"
        );
    }

    #[test]
    fn byte_order_mark() {
        let file = parse("\u{feff}# escape=`\nFROM a\n").unwrap();
        assert_eq!(file.escape, '`');
        let file = parse("\u{feff}FROM a\n").unwrap();
        assert_eq!(file.stages[0].base, "a");
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            only("HEALTHCHECK NONE\n"),
            Instruction::Healthcheck(Health::None)
        );
        assert_eq!(
            only("healthcheck none\n"),
            Instruction::Healthcheck(Health::None)
        );
        // Docker reads no flags for NONE.
        assert_eq!(
            only("HEALTHCHECK --interval=5s NONE\n"),
            Instruction::Healthcheck(Health::None)
        );
        assert_eq!(
            only("HEALTHCHECK --interval=1m30s --start-period=500ms --start-interval=2s --timeout=0s --retries=0 CMD [\"curl\", \"-f\", \"http://x\"]\n"),
            Instruction::Healthcheck(Health::Check {
                test: Command::Exec(strings(&["curl", "-f", "http://x"])),
                interval: Some(Duration::from_secs(90)),
                timeout: None,
                start_period: Some(Duration::from_millis(500)),
                start_interval: Some(Duration::from_secs(2)),
                retries: Some(0),
            })
        );
        for (body, expected) in [
            ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
            ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
            (
                "HEALTHCHECK CMD []",
                "Missing command after HEALTHCHECK CMD",
            ),
            (
                "HEALTHCHECK FOO x",
                "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
            ),
            (
                "HEALTHCHECK --interval=10 CMD x",
                "time: missing unit in duration \"10\"",
            ),
            (
                "HEALTHCHECK --timeout=abc CMD x",
                "time: invalid duration \"abc\"",
            ),
            (
                "HEALTHCHECK --interval=5x CMD x",
                "time: unknown unit \"x\" in duration \"5x\"",
            ),
            (
                "HEALTHCHECK --interval=1us CMD x",
                "Interval \"interval\" cannot be less than 1ms",
            ),
            (
                "HEALTHCHECK --start-period=-1s CMD x",
                "Interval \"start-period\" cannot be less than 1ms",
            ),
            (
                "HEALTHCHECK --retries=-1 CMD x",
                "--retries cannot be negative (-1)",
            ),
            (
                "HEALTHCHECK --retries=x CMD x",
                "strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            (
                "HEALTHCHECK --retries=4294967296 CMD x",
                "strconv.ParseInt: parsing \"4294967296\": value out of range",
            ),
        ] {
            assert_eq!(message(body), expected, "{body}");
        }
    }

    #[test]
    fn go_durations() {
        for (text, nanos) in [
            ("0", 0),
            ("-0", 0),
            ("1h2m3.5s", 3_723_500_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-1s", -1_000_000_000),
            ("+5ms", 5_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("3ns", 3),
            ("2562047h47m16.854775807s", i64::MAX),
        ] {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for text in [
            "",
            "5",
            "1x",
            ".s",
            "-",
            "1 s",
            "9223372036854775808ns",
            "3000000h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn onbuild() {
        assert_eq!(
            only("onbuild  copy . /app\n"),
            Instruction::OnBuild(s("copy . /app"))
        );
        assert_eq!(
            only("ONBUILD RUN <<EOF\necho hi\nEOF\n"),
            Instruction::OnBuild(s("RUN <<EOF\necho hi\nEOF"))
        );
        assert_eq!(
            message("ONBUILD ONBUILD RUN touch foobar"),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(
            message("ONBUILD FROM scratch"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            message("ONBUILD maintainer me"),
            "MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        let chain = "ONBUILD ".repeat(100_000) + "RUN x";
        assert_eq!(
            message(&chain),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        // The trigger's line is parsed now: its JSON errors are reported.
        assert_eq!(
            message("ONBUILD RUN [1]"),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn onbuild_triggers() {
        let step = parse_onbuild("COPY . /app", '\\').unwrap();
        assert_eq!(step.line, 1);
        assert_eq!(step.original, "COPY . /app");
        assert_eq!(copy_of(step.instruction).sources, strings(&["."]));

        let step = parse_onbuild("RUN <<EOF\necho hi\nEOF", '\\').unwrap();
        match step.instruction {
            Instruction::Run { heredocs, .. } => assert_eq!(heredocs[0].content, "echo hi\n"),
            other => panic!("{other:?}"),
        }
        let step = parse_onbuild("RUN a `\n b", '`').unwrap();
        assert_eq!(step.original, "RUN a  b");

        for (text, expected) in [
            (
                "ONBUILD RUN x",
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ),
            ("FROM x", "FROM isn't allowed as an ONBUILD trigger"),
            (
                "MAINTAINER x",
                "MAINTAINER isn't allowed as an ONBUILD trigger",
            ),
            ("", "file with no instructions"),
            ("NOPE x", "unknown instruction: NOPE"),
            ("RUN a\nRUN b", "an ONBUILD trigger must be one instruction"),
        ] {
            assert_eq!(
                parse_onbuild(text, '\\').unwrap_err().message,
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn split_helpers() {
        assert_eq!(
            split_command("  COPY   --from=a --chown=\"x y\" \\\"q src dst  "),
            (
                s("COPY"),
                strings(&["--from=a", "--chown=x y"]),
                s("\\\"q src dst")
            )
        );
        assert_eq!(split_command("RUN"), (s("RUN"), vec![], s("")));
        assert_eq!(
            extract_builder_flags("--a --b=c -- --d e"),
            (s(" --d e"), strings(&["--a", "--b=c"]))
        );
        assert_eq!(extract_builder_flags("--a --"), (s(""), strings(&["--a"])));
        assert_eq!(
            parse_words("a \"b c\" 'd\\' e\\ f\\", '\\'),
            strings(&["a", "\"b c\"", "'d\\'", "e\\ f"])
        );
        assert_eq!(trim_continuation("a \\ \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '\\'), ("a`", true));
        assert_eq!(directive("escape = ` "), Some(("escape", "`")));
        assert_eq!(directive("escape= "), Some(("escape", " ")));
        assert_eq!(directive("escape="), None);
        assert_eq!(directive("1x=a"), None);
    }
}
