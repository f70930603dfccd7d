//! `.dockerignore`: which paths of a build context are left out, by Docker's rules
//! (moby/patternmatcher `ignorefile.ReadAll` reads the file, `patternmatcher.New` compiles
//! the patterns, `MatchesOrParentMatches` answers for a path).
//!
//! # Reading the file (`ignorefile.ReadAll`)
//! - Lines are split at `\n` (a trailing `\r` is dropped); a UTF-8 BOM before the first
//!   line is dropped.
//! - A line starting with `#` (before any trimming) is a comment; `  # x` is the pattern
//!   `# x`.
//! - Each line is trimmed of white space; empty lines are skipped. A leading `!` marks an
//!   exception (white space after it is trimmed too).
//! - The pattern is cleaned like Go's `filepath.Clean` (`a//b/../c/` is `a/c`) and one
//!   leading `/` is removed (`/foo` is `foo`; `/` alone stays `/` and matches nothing).
//! - `!` alone is an error (`illegal exclusion pattern: "!"`), as is a pattern that is not
//!   valid `filepath.Match` syntax (`[a`, `a\`, `[]`, `[-a]`, `[a-]`).
//!
//! # Matching (`MatchesOrParentMatches`)
//! Patterns are evaluated in order; a later pattern overrides an earlier one, so
//! `*.md` then `!README.md` keeps `README.md`. A pattern excludes a path when it matches
//! the path or any of its parent directories (`docs` excludes `docs/a/b.md`). The context
//! root itself (`.`) is never excluded.
//!
//! Pattern syntax, as moby translates it to a regular expression:
//! - `*` any run of characters except `/`; `?` one character except `/`;
//! - `[...]` a class (`[a-z]`, `[^0-9]`, `\` escapes inside), as in `filepath.Match`;
//! - `\c` the character `c`;
//! - `**` any number of directories: `**/x` matches `x`, `a/x` and `a/b/x`; `a/**` matches
//!   everything below `a`; `**` alone matches everything;
//! - everything else literally.
//!
//! Deliberate differences from moby, for patterns nobody writes on purpose: an escaped
//! letter (`\d`, `\w`, `\b`) is the letter (as in `filepath.Match`), where moby's regexp
//! gives it its regexp meaning; inside `[...]`, `*`, `?` and `[:alpha:]` are plain
//! characters (moby turns them into regexp fragments); a class range going backwards
//! (`[z-a]`, `[Local-Only]`) is refused when the file is read, where moby fails on the
//! first path it matches.

/// Why a `.dockerignore` file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore line {line}: illegal exclusion pattern: \"!\"")]
    LoneExclamation { line: usize },
    #[error(".dockerignore line {line}: pattern {pattern:?}: {rule}")]
    BadPattern {
        line: usize,
        pattern: String,
        rule: &'static str,
    },
}

const SYNTAX_ERROR: &str = "syntax error in pattern";
const BAD_RANGE: &str = "syntax error in pattern (character class range goes backwards)";

/// The compiled patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    cleaned: String,
    exception: bool,
    kind: Kind,
}

/// moby's four ways of matching (`exactMatch`, `prefixMatch`, `suffixMatch`,
/// `regexpMatch`), chosen from the pattern's characters.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `abc**`: the path starts with `abc`.
    Prefix(String),
    /// `**abc` with nothing special after: the path ends with `abc`.
    Suffix(String),
    Tokens(Vec<Tok>),
}

impl Matcher {
    /// Parses the content of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Matcher, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        let mut exceptions = false;
        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx.saturating_add(1);
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            // ignorefile.ReadAll
            if raw.starts_with('#') {
                continue;
            }
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let (invert, p) = match p.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, p),
            };
            let mut p = if p.is_empty() {
                String::new()
            } else {
                clean(p)
            };
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
            let p = if invert { format!("!{p}") } else { p };
            // patternmatcher.New
            let p = clean(p.trim());
            let (exception, p) = match p.strip_prefix('!') {
                Some("") => return Err(IgnoreError::LoneExclamation { line }),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            let bad = |rule| IgnoreError::BadPattern {
                line,
                pattern: raw.trim().to_string(),
                rule,
            };
            parse_glob(&p).map_err(|_| bad(SYNTAX_ERROR))?;
            let kind = compile(&p).map_err(bad)?;
            exceptions |= exception;
            patterns.push(Pattern {
                cleaned: p,
                exception,
                kind,
            });
        }
        Ok(Matcher {
            patterns,
            exceptions,
        })
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded: the
    /// last pattern that matches it or one of its parent directories decides.
    pub fn excluded(&self, rel_path: &str) -> bool {
        let cleaned = clean(rel_path);
        let file = cleaned.trim_start_matches('/');
        if file.is_empty() || file == "." {
            return false;
        }
        let mut matched = false;
        for p in &self.patterns {
            // An exception only matters once something matched, a pattern only when
            // nothing has.
            if p.exception != matched {
                continue;
            }
            if p.matches_or_parent_matches(file) {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether any pattern is an exception (`!`): a walker must then look below excluded
    /// directories (see [`Matcher::may_descend`]).
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// Whether a walker must look inside the excluded directory `dir` because an
    /// exception may bring back something below it. Docker's client rule
    /// (`archive.TarWithOptions`): only when an exception pattern, as written, starts with
    /// `dir/` (`!node_modules/keep` for `node_modules`, not `!**/keep`).
    pub fn may_descend(&self, dir: &str) -> bool {
        if !self.exceptions {
            return false;
        }
        let cleaned = clean(dir);
        let dir = cleaned.trim_start_matches('/');
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.cleaned).starts_with(&dir_slash))
    }

    /// Whether the file has no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl Pattern {
    /// Whether the pattern matches `path` or one of its parent directories (`path` cut
    /// before one of its `/`).
    fn matches_or_parent_matches(&self, path: &str) -> bool {
        match &self.kind {
            // One pass of the automaton over the path answers for all its parents (they
            // are its prefixes): matching each parent on its own would take time cubic
            // in the length of the path (a parent per `/`, each as long as the path, times
            // the pattern's length).
            Kind::Tokens(toks) => simulate(toks, path, true),
            // A parent starting with the prefix means the path does.
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            _ => {
                self.matches(path)
                    || path
                        .match_indices('/')
                        .any(|(i, _)| self.matches(path.get(..i).unwrap_or("")))
            }
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Tokens(toks) => run(toks, path),
        }
    }
}

/// moby's `Pattern.compile`: the kind of match, and the tokens of its regexp.
fn compile(p: &str) -> Result<Kind, &'static str> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut kind = Detected::Exact;
    let mut i = 0usize;
    let mut first = true;
    while let Some(&ch) = chars.get(i) {
        i = i.saturating_add(1);
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i = i.saturating_add(1);
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i = i.saturating_add(1);
                }
                if i >= chars.len() {
                    if kind == Detected::Exact {
                        kind = Detected::Prefix;
                    } else {
                        toks.push(Tok::Any);
                        kind = Detected::Regexp;
                    }
                } else {
                    toks.push(Tok::Dirs);
                    kind = Detected::Regexp;
                }
                if first {
                    kind = Detected::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                kind = Detected::Regexp;
            }
            '?' => {
                toks.push(Tok::One);
                kind = Detected::Regexp;
            }
            '\\' => match chars.get(i) {
                Some(&c) => {
                    i = i.saturating_add(1);
                    toks.push(Tok::Lit(c));
                    kind = Detected::Regexp;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                let (class, next) = parse_class(&chars, i).map_err(|_| SYNTAX_ERROR)?;
                // RE2 refuses `[z-a]`; moby reports it as a bad pattern.
                if class.ranges.iter().any(|&(lo, hi)| lo > hi) {
                    return Err(BAD_RANGE);
                }
                toks.push(Tok::Class(class));
                i = next;
                kind = Detected::Regexp;
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                kind = Detected::Regexp;
            }
            // Not escaped by moby: a `^` reaches the regexp as a start-of-text anchor.
            '^' => toks.push(Tok::Start),
            c => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    Ok(match kind {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(p.get(..p.len().saturating_sub(2)).unwrap_or("").into()),
        Detected::Suffix => Kind::Suffix(p.get(2..).unwrap_or("").into()),
        Detected::Regexp => Kind::Tokens(toks),
    })
}

// ---------------------------------------------------------------------------------------------
// Go's path/filepath pieces, shared with the COPY source wildcards

/// Go's `filepath.Clean` (Unix): the shortest equivalent path, lexically. `""` is `"."`;
/// `..` above a rooted path is dropped, above a relative one kept.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A pattern is not valid `filepath.Match` syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(char),
    /// One character other than `/` (`?`; the regexp `[^/]`).
    One,
    Class(Class),
    /// Any run of characters other than `/` (`*`; the regexp `[^/]*`).
    Star,
    /// Any run of characters other than a newline (a trailing `**`; the regexp `.*`).
    Any,
    /// Nothing, or any run of characters other than a newline ending in `/` (`**/`; the
    /// regexp `(.*/)?`).
    Dirs,
    /// The start of the text (a `^` outside a class in moby's regexp).
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Parses a `filepath.Match` pattern: `*`, `?`, `[...]`, `\c`, literals. The syntax
/// checks are Go's (`getEsc`): a class is not empty, a range has both ends, `-` and `]`
/// open no range, nothing ends with a lone `\`.
pub(crate) fn parse_glob(pattern: &str) -> Result<Vec<Tok>, BadPattern> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0usize;
    while let Some(&c) = chars.get(i) {
        i = i.saturating_add(1);
        match c {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '[' => {
                let (class, next) = parse_class(&chars, i)?;
                toks.push(Tok::Class(class));
                i = next;
            }
            '\\' => {
                let &e = chars.get(i).ok_or(BadPattern)?;
                i = i.saturating_add(1);
                toks.push(Tok::Lit(e));
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Parses a class whose `[` is just before `chars[i]`; returns it and the index after
/// its `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Class, usize), BadPattern> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i = i.saturating_add(1);
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i.saturating_add(1)));
        }
        let (lo, next) = get_esc(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = get_esc(chars, i.saturating_add(1))?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// Go's `getEsc`: one (possibly escaped) character of a class.
fn get_esc(chars: &[char], mut i: usize) -> Result<(char, usize), BadPattern> {
    match chars.get(i) {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => i = i.saturating_add(1),
        Some(_) => {}
    }
    let &c = chars.get(i).ok_or(BadPattern)?;
    i = i.saturating_add(1);
    // The class must go on (at least its `]`).
    if i >= chars.len() {
        return Err(BadPattern);
    }
    Ok((c, i))
}

/// Whether the whole of `text` matches `toks` (a simulation of the automaton, linear in
/// the text, without recursion).
pub(crate) fn run(toks: &[Tok], text: &str) -> bool {
    simulate(toks, text, false)
}

/// [`run`]; with `or_parent`, also true when a part of `text` before one of its `/`
/// matches (the automaton accepts just before the `/`).
fn simulate(toks: &[Tok], text: &str, or_parent: bool) -> bool {
    let n = toks.len();
    // States 0..=n: before token i; n+1+i: inside the `.*/` of `Dirs` token i.
    let size = n.saturating_add(1).saturating_mul(2);
    let inner = |i: usize| n.saturating_add(1).saturating_add(i);
    let closure = |set: &mut Vec<bool>, at_start: bool| {
        for (i, tok) in toks.iter().enumerate() {
            if !set.get(i).copied().unwrap_or(false) {
                continue;
            }
            let skip = match tok {
                Tok::Star | Tok::Any => true,
                Tok::Dirs => {
                    if let Some(s) = set.get_mut(inner(i)) {
                        *s = true;
                    }
                    true
                }
                Tok::Start => at_start,
                _ => false,
            };
            if skip {
                if let Some(s) = set.get_mut(i.saturating_add(1)) {
                    *s = true;
                }
            }
        }
    };
    let mut cur = vec![false; size];
    let mut next = vec![false; size];
    if let Some(s) = cur.get_mut(0) {
        *s = true;
    }
    closure(&mut cur, true);
    for c in text.chars() {
        if or_parent && c == '/' && cur.get(n).copied().unwrap_or(false) {
            return true;
        }
        next.fill(false);
        let mut set = |i: usize| {
            if let Some(s) = next.get_mut(i) {
                *s = true;
            }
        };
        for (i, tok) in toks.iter().enumerate() {
            if cur.get(i).copied().unwrap_or(false) {
                let after = i.saturating_add(1);
                match tok {
                    Tok::Lit(x) if c == *x => set(after),
                    Tok::One if c != '/' => set(after),
                    Tok::Class(k) if k.matches(c) => set(after),
                    Tok::Star if c != '/' => set(i),
                    Tok::Any if c != '\n' => set(i),
                    _ => {}
                }
            }
            if cur.get(inner(i)).copied().unwrap_or(false) {
                if c == '/' {
                    set(i.saturating_add(1));
                }
                if c != '\n' {
                    set(inner(i));
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
        closure(&mut cur, false);
        if !cur.iter().any(|s| *s) {
            return false;
        }
    }
    cur.get(n).copied().unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> Matcher {
        Matcher::parse(&patterns.join("\n")).unwrap()
    }

    /// Go's `filepath.Match`, through [`parse_glob`] and [`run`].
    fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
        Ok(run(&parse_glob(pattern)?, name))
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("/a/b/../../..", "/"),
            ("**/", "**"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    // patternmatcher_test.go TestMatch: Go's filepath.Match cases, through Matches (a
    // pattern or one parent).
    #[test]
    fn go_filepath_match_cases() {
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            // The bare filepath.Match (no parent matching) ...
            let got = go_match(pattern, name);
            match want {
                Err(_) => assert_eq!(got, Err(BadPattern), "Match({pattern:?}, {name:?})"),
                Ok(_) => assert!(got.is_ok(), "Match({pattern:?}, {name:?}): {got:?}"),
            }
            // ... and through a .dockerignore (which matches parents too: `a*` excludes
            // `ab/c`).
            match Matcher::parse(pattern) {
                Err(e) => assert!(want.is_err(), "{pattern:?}: {e}"),
                Ok(matcher) => {
                    let parent_hit = name.contains('/') && *pattern == "a*";
                    assert_eq!(
                        Ok(matcher.excluded(name)),
                        want.map(|w| w || parent_hit),
                        "{pattern:?} vs {name:?}"
                    );
                }
            }
        }
        assert_eq!(go_match("a*", "ab/c"), Ok(false));
    }

    #[test]
    fn go_match_is_whole_name() {
        assert_eq!(go_match("*.py", "a.py"), Ok(true));
        assert_eq!(go_match("*.py", "src/a.py"), Ok(false));
        assert_eq!(go_match("src/*.py", "src/a.py"), Ok(true));
        assert_eq!(go_match("src/*", "src"), Ok(false));
        assert_eq!(go_match("[z-a]", "m"), Ok(false));
        assert_eq!(go_match("a[^x]b", "a/b"), Ok(true));
    }

    // patternmatcher_test.go TestMatches, MatchesOrParentMatches flavour.
    #[test]
    fn moby_matches_cases() {
        let exact = true;
        let inexact = true;
        let fail = false;
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", exact),
            ("**", "file/", exact),
            ("**/", "file", exact),
            ("**/", "file/", exact),
            // ("**", "/") and ("**/", "/"): moby matches the raw "/"; here it cleans to
            // the context root, which is never excluded.
            ("**", "dir/file", exact),
            ("**/", "dir/file", exact),
            ("**", "dir/file/", exact),
            ("**/", "dir/file/", exact),
            ("**/**", "dir/file", exact),
            ("**/**", "dir/file/", exact),
            ("dir/**", "dir/file", exact),
            ("dir/**", "dir/file/", exact),
            ("dir/**", "dir/dir2/file", exact),
            ("dir/**", "dir/dir2/file/", exact),
            ("**/dir", "dir", exact),
            ("**/dir", "dir/file", inexact),
            ("**/dir2/*", "dir/dir2/file", exact),
            ("**/dir2/*", "dir/dir2/file/", inexact),
            ("**/dir2/**", "dir/dir2/dir3/file", exact),
            ("**/dir2/**", "dir/dir2/dir3/file/", exact),
            ("**file", "file", exact),
            ("**file", "dir/file", exact),
            ("**/file", "dir/file", exact),
            ("**file", "dir/dir/file", exact),
            ("**/file", "dir/dir/file", exact),
            ("**/file*", "dir/dir/file", exact),
            ("**/file*", "dir/dir/file.txt", exact),
            ("**/file*txt", "dir/dir/file.txt", exact),
            ("**/file*.txt", "dir/dir/file.txt", exact),
            ("**/file*.txt*", "dir/dir/file.txt", exact),
            ("**/**/*.txt", "dir/dir/file.txt", exact),
            ("**/**/*.txt2", "dir/dir/file.txt", fail),
            ("**/*.txt", "file.txt", exact),
            ("**/**/*.txt", "file.txt", exact),
            ("a**/*.txt", "a/file.txt", exact),
            ("a**/*.txt", "a/dir/file.txt", exact),
            ("a**/*.txt", "a/dir/dir/file.txt", exact),
            ("a/*.txt", "a/dir/file.txt", fail),
            ("a/*.txt", "a/file.txt", exact),
            ("a/*.txt**", "a/file.txt", exact),
            ("a[b-d]e", "ae", fail),
            ("a[b-d]e", "ace", exact),
            ("a[b-d]e", "aae", fail),
            ("a[^b-d]e", "aze", exact),
            (".*", ".foo", exact),
            (".*", "foo", fail),
            ("abc.def", "abcdef", fail),
            ("abc.def", "abc.def", exact),
            ("abc.def", "abcZdef", fail),
            ("abc?def", "abcZdef", exact),
            ("abc?def", "abcdef", fail),
            ("**/foo/bar", "foo/bar", exact),
            ("**/foo/bar", "dir/foo/bar", exact),
            ("**/foo/bar", "dir/dir2/foo/bar", exact),
            ("abc/**", "abc", fail),
            ("abc/**", "abc/def", exact),
            ("abc/**", "abc/def/ghi", exact),
            ("**/.foo", ".foo", exact),
            ("**/.foo", "bar.foo", fail),
            ("a(b)c/def", "a(b)c/def", exact),
            ("a(b)c/def", "a(b)c/xyz", fail),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", exact),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                exact,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                exact,
            ),
            ("a\\\\", "a\\", exact),
            ("a\\*b", "a*b", exact),
        ];
        for (pattern, text, want) in cases {
            // moby's tests feed the patterns straight to patternmatcher.New, which
            // cleans them too; the path is used as given there, cleaned here (a
            // trailing `/` never reaches a matcher from a walk).
            assert_eq!(
                m(&[pattern]).excluded(text),
                *want,
                "{pattern:?} vs {text:?}"
            );
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", fail),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                exact,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                fail,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                fail,
            ),
        ];
        for (patterns, text, want) in multi {
            assert_eq!(
                m(patterns).excluded(text),
                *want,
                "{patterns:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn compile_kinds_follow_moby() {
        let kind = |p: &str| match compile(&clean(p)).unwrap() {
            Kind::Exact => "exact",
            Kind::Prefix(_) => "prefix",
            Kind::Suffix(_) => "suffix",
            Kind::Tokens(_) => "regexp",
        };
        for (p, want) in [
            ("*", "regexp"),
            ("file*", "regexp"),
            ("**", "suffix"),
            ("**/**", "regexp"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "regexp"),
            ("**file", "suffix"),
            ("a[b-d]e", "regexp"),
            (".*", "regexp"),
            ("abc.def", "exact"),
            ("abc?def", "regexp"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
        ] {
            assert_eq!(kind(p), want, "{p:?}");
        }
        // A suffix match is a plain string suffix: `**foo` takes `barfoo` as moby does.
        assert!(m(&["**foo"]).excluded("x/barfoo"));
    }

    #[test]
    fn folder_patterns_and_exceptions() {
        // TestPatternMatchesFolderExclusions and friends.
        assert!(!m(&["docs", "!docs/README.md"]).excluded("docs/README.md"));
        assert!(!m(&["docs/", "!docs/README.md"]).excluded("docs/README.md"));
        assert!(!m(&["docs/*", "!docs/README.md"]).excluded("docs/README.md"));
        assert!(m(&["docs", "!docs/README.md"]).excluded("docs/other.md"));
        // TestExclusionPatternMatchesPatternBefore / After.
        assert!(m(&["!fileutils.go", "*.go"]).excluded("fileutils.go"));
        assert!(!m(&["*.go", "!fileutils.go"]).excluded("fileutils.go"));
        // The root is never excluded.
        assert!(!m(&["*.go"]).excluded("."));
        assert!(!m(&["**"]).excluded(""));
        // No patterns.
        assert!(!m(&[]).excluded("any/path/there"));
        assert!(Matcher::parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_pattern() {
        assert_eq!(
            Matcher::parse("ok\n!").unwrap_err(),
            IgnoreError::LoneExclamation { line: 2 }
        );
        assert_eq!(
            Matcher::parse("! ").unwrap_err(),
            IgnoreError::LoneExclamation { line: 1 }
        );
        let e = Matcher::parse("a\n\n  [abc  \n").unwrap_err();
        assert_eq!(
            e,
            IgnoreError::BadPattern {
                line: 3,
                pattern: "[abc".into(),
                rule: SYNTAX_ERROR
            }
        );
        assert_eq!(
            e.to_string(),
            ".dockerignore line 3: pattern \"[abc\": syntax error in pattern"
        );
        assert!(Matcher::parse("a\\").is_err());
        // Valid for filepath.Match, refused by moby's regexp.
        assert!(matches!(
            Matcher::parse("[Local-Only]/"),
            Err(IgnoreError::BadPattern {
                rule: BAD_RANGE,
                ..
            })
        ));
    }

    // ignorefile_test.go TestReadAll.
    #[test]
    fn reads_like_ignorefile() {
        let matcher = Matcher::parse(
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n",
        )
        .unwrap();
        let got: Vec<(String, bool)> = matcher
            .patterns
            .iter()
            .map(|p| (p.cleaned.clone(), p.exception))
            .collect();
        let want: Vec<(String, bool)> = [
            ("test1", false),
            ("test2", false),
            ("a/file/here", false),
            ("lastfile", false),
            ("inverted/abs/path", true),
        ]
        .iter()
        .map(|(p, e)| (p.to_string(), *e))
        .collect();
        assert_eq!(got, want);
        assert!(matcher.has_exceptions());
        assert!(!m(&["a", "b"]).has_exceptions());
    }

    #[test]
    fn line_handling() {
        // BOM, CRLF, comment only at the very start of a line, white space around `!`.
        let matcher = Matcher::parse(
            "\u{feff}*.log\r\n  # not a comment\r\n#comment\n\t!  keep.log \nbuild/../dist/\n/\n",
        )
        .unwrap();
        assert!(matcher.excluded("x.log"));
        assert!(!matcher.excluded("keep.log"));
        assert!(matcher.excluded("# not a comment"));
        assert!(!matcher.excluded("#comment"));
        assert!(matcher.excluded("dist/app.js"));
        assert!(!matcher.excluded("build/app.js"));
        // `/` alone cleans to `/` and matches nothing.
        assert!(!matcher.excluded("anything"));
        // A leading `/` or `./` in the path asked about does not matter.
        assert!(matcher.excluded("/dist/a"));
        assert!(matcher.excluded("./dist/a"));
    }

    #[test]
    fn realistic_node_project() {
        let matcher = Matcher::parse(
            "# deps\nnode_modules\n!node_modules/keep-me\n.git\n*.md\n!README.md\n**/*.test.js\ncoverage/\n.env*\n!.env.example\n",
        )
        .unwrap();
        for (path, want) in [
            ("node_modules", true),
            ("node_modules/left-pad/index.js", true),
            ("node_modules/keep-me/index.js", false),
            (".git/HEAD", true),
            ("CHANGELOG.md", true),
            ("README.md", false),
            ("docs/guide.md", false), // `*.md` has no `/`: top level only
            ("src/app.test.js", true),
            ("app.test.js", true),
            ("src/app.js", false),
            ("coverage/lcov.info", true),
            (".env", true),
            (".env.production", true),
            (".env.example", false),
            ("package.json", false),
        ] {
            assert_eq!(matcher.excluded(path), want, "{path}");
        }
        assert!(matcher.has_exceptions());
        assert!(matcher.may_descend("node_modules"));
        assert!(!matcher.may_descend(".git"));
        assert!(!matcher.may_descend("coverage"));
        // An exception that does not start with the directory does not open it (the
        // client skips the directory whole).
        let m2 = m(&["vendor", "!**/LICENSE"]);
        assert!(!m2.may_descend("vendor"));
        assert!(!m2.excluded("vendor/LICENSE"));
    }

    #[test]
    fn realistic_python_and_go_projects() {
        let matcher = Matcher::parse(
            "__pycache__\n**/__pycache__\n*.py[cod]\n.venv/\n.pytest_cache\n**/.DS_Store\nbin/*\n!bin/entrypoint.sh\n",
        )
        .unwrap();
        for (path, want) in [
            ("__pycache__/x.pyc", true),
            ("app/__pycache__/x.cpython-312.pyc", true),
            ("mod.pyc", true),
            ("mod.pyo", true),
            ("mod.py", false),
            ("pkg/mod.pyc", false), // `*.py[cod]` is top level only
            (".venv/lib/python3.12/site.py", true),
            ("a/b/.DS_Store", true),
            ("bin/tool", true),
            ("bin/entrypoint.sh", false),
            ("bin", false),
        ] {
            assert_eq!(matcher.excluded(path), want, "{path}");
        }
    }

    #[test]
    fn anchors_and_newlines_like_moby_regexp() {
        // `^` is a regexp anchor for moby once the pattern is a regexp...
        assert!(m(&["^a*"]).excluded("abc"));
        assert!(!m(&["x^a*"]).excluded("x^abc"));
        // ... and a plain character in an exact pattern.
        assert!(m(&["^a"]).excluded("^a"));
        // `**` (the regexp `.*`) does not cross a newline, `*` does.
        assert!(!m(&["a/**/b"]).excluded("a/x\ny/b"));
        assert!(m(&["a/*/b"]).excluded("a/x\ny/b"));
    }

    /// Moby's `MatchesOrParentMatches` for one pattern, as written: the path, then each
    /// parent on its own.
    fn matches_path_or_a_parent(p: &Pattern, path: &str) -> bool {
        let mut parent = String::new();
        let mut parents = Vec::new();
        if let Some((dirs, _)) = path.rsplit_once('/') {
            for (i, comp) in dirs.split('/').enumerate() {
                if i > 0 {
                    parent.push('/');
                }
                parent.push_str(comp);
                parents.push(parent.clone());
            }
        }
        p.matches(path) || parents.iter().any(|parent| p.matches(parent))
    }

    #[test]
    fn parents_are_matched_in_one_pass() {
        let patterns = [
            "a",
            "a/b",
            "a*",
            "*/b",
            "a/*",
            "**/b",
            "b/**",
            "a/**/c",
            "**/a/**",
            "?",
            "a?",
            "[ab]",
            "[^a]/b",
            "a**",
            "**a",
            "**",
            "**/**",
            "^a",
            "^a/*",
            "x/^a",
            "a\\*",
            "*/*/c",
            "a/**/**/d",
            "**b/c",
        ];
        let paths = [
            "a",
            "b",
            "a/b",
            "a/b/c",
            "b/a/c",
            "x/a/b/c/d",
            "ab/c",
            "a\n/b",
            "aa/bb/cc",
            "^a/b",
            "x/^a/y",
            "a*/z",
            "c/a",
            "a/x/y/c/d/e",
            "..",
            "../a/b",
        ];
        for pattern in patterns {
            let matcher = m(&[pattern]);
            let p = &matcher.patterns[0];
            for path in paths {
                assert_eq!(
                    p.matches_or_parent_matches(path),
                    matches_path_or_a_parent(p, path),
                    "{pattern:?} vs {path:?}"
                );
            }
        }
        // regressions/dockerignore/deep-path-regexp-pattern, smaller: each parent of a
        // deep path matched on its own took time cubic in its length (over 10 minutes for
        // 3 000 levels and a pattern of 1 000 `**a`).
        let pattern = format!("{}c", "**a".repeat(100));
        let path = format!("{}b", "a/".repeat(1_000));
        let matcher = m(&[&pattern]);
        assert!(matches!(matcher.patterns[0].kind, Kind::Tokens(_)));
        assert!(!matcher.excluded(&path));
        assert!(m(&[&format!("{}/a", "**a".repeat(100))]).excluded(&path));
    }
}
