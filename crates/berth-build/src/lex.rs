//! Docker's shell-word processing for Dockerfile words.
//!
//! This is the behaviour of BuildKit's `frontend/dockerfile/shell/lex.go` (`ProcessWord`,
//! `ProcessWords`), which both of Docker's builders use to expand the words of ADD, COPY,
//! ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults and ONBUILD
//! triggers when a step is evaluated:
//!
//! - single quotes keep everything literal up to the next `'` (nothing escapes inside);
//! - double quotes keep everything literal except `$` expansions, and the escape
//!   character there only escapes `"`, `$` and itself (any other escape stays as is);
//! - outside quotes the escape character (`\`, or `` ` `` with `# escape=``) makes the next
//!   character literal; a lone escape at the end of the word is dropped;
//! - `$NAME`, `${NAME}` and the modifiers `${NAME:-word}`, `${NAME-word}`,
//!   `${NAME:+word}`, `${NAME+word}`, `${NAME:?message}`, `${NAME?message}`, the pattern
//!   removals `${NAME#pattern}`, `${NAME##pattern}`, `${NAME%pattern}`,
//!   `${NAME%%pattern}` and the substitutions `${NAME/pattern/replacement}`,
//!   `${NAME//pattern/replacement}` (`*` and `?` wildcards, no bracket expressions);
//!   `$1`-style digit names and the special parameters `$@ $* $# $? $- $$ $!` are looked
//!   up like any other name; an unset variable expands to nothing;
//! - [`expand_words`] splits the result on unquoted whitespace, and the value of an
//!   unquoted variable is split too (`$X` with `X="a b"` gives two words), while
//!   quoted text never splits.
//!
//! Lex.go's quirks are kept on purpose so that a Dockerfile builds the same here as with
//! Docker: `${X:-"a b"}` loses its quotes and splits in [`expand_words`]; `""` alone
//! yields no word at all; `<<` keeps the blanks after it in its word (heredoc markers);
//! a `${X:?msg}` failure is an error of the whole word.
//!
//! Known approximation: lex.go classifies name characters with Go's `unicode.IsLetter`
//! and `unicode.IsDigit` (categories L and Nd); this module uses Rust's
//! `char::is_alphabetic` and `char::is_numeric`, which also accept letter-like numbers
//! and marks. Names outside ASCII are rare enough in Dockerfiles for this not to matter.

use thiserror::Error;

/// A word that could not be expanded. Every message names the word, in Docker's wording
/// (`failed to process "…": …`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LexError {
    /// A quote (or the `}` / `/` of a `${…}`) was opened and never closed.
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching {what}"
    )]
    Unterminated {
        /// The word as given.
        word: String,
        /// `single-quote`, `double-quote`, or the missing character.
        what: String,
    },
    /// `${` without its closing `}`.
    #[error("failed to process {word:?}: syntax error: missing '}}'")]
    MissingBrace {
        /// The word as given.
        word: String,
    },
    /// `${…}` nested deeper than [`MAX_NESTING`] (a guard for the daemon's stack; Go's
    /// growable stacks need none).
    #[error("failed to process {word:?}: ${{…}} nested deeper than {MAX_NESTING} levels")]
    TooDeep {
        /// The word as given.
        word: String,
    },
    /// `${NAME/pattern` without the `/` that ends the pattern.
    #[error("failed to process {word:?}: syntax error: missing '/' in ${{}}")]
    MissingSlash {
        /// The word as given.
        word: String,
    },
    /// `${}`, `${{…}`, `${:…}`.
    #[error("failed to process {word:?}: syntax error: bad substitution")]
    BadSubstitution {
        /// The word as given.
        word: String,
    },
    /// A `${NAME…}` modifier lex.go does not know, such as `:=` or `=`.
    #[error("failed to process {word:?}: unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The word as given.
        word: String,
        /// The modifier as written (`:=`, `=`, `:#`…).
        modifier: String,
    },
    /// `${NAME?message}` with NAME unset, or `${NAME:?message}` with NAME unset or empty.
    #[error("failed to process {word:?}: {name}: {message}")]
    Required {
        /// The word as given.
        word: String,
        /// The variable that must be set.
        name: String,
        /// The expanded message, or Docker's default (`is not allowed to be unset`,
        /// `is not allowed to be empty`).
        message: String,
    },
    /// A `#`, `%` or `/` pattern with an escape lex.go refuses (only `\*`, `\?`, `\\`,
    /// `\}` and `\/` are allowed).
    #[error("failed to process {word:?}: invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The word as given.
        word: String,
        /// The pattern after expansion.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How deep `${…}` may nest (`${A:-${B:-…}}`); real Dockerfiles use two or three levels.
pub const MAX_NESTING: usize = 100;

/// Expands one word: removes quotes and escapes, substitutes variables; whitespace inside
/// the word is kept as is. `lookup` returns a variable's value, `None` when it is unset
/// (which is not the same as set and empty for `${X-…}`, `${X+…}` and `${X?…}`).
///
/// This is lex.go's `ProcessWord`.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, LexError> {
    Shell::new(word, escape, Options::default(), lookup)
        .process()
        .map(|(result, _)| result)
}

/// Expands a text and splits it into words on unquoted whitespace, after expansion: the
/// value of an unquoted variable splits, quoted text does not, and empty words are
/// dropped.
///
/// This is lex.go's `ProcessWords`.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, LexError> {
    Shell::new(text, escape, Options::default(), lookup)
        .process()
        .map(|(_, words)| words)
}

/// Expands the body of a heredoc whose delimiter was not quoted (`COPY <<EOF`): only `$`
/// expansions are done, quotes are left alone since the body is a file or a script, not
/// Dockerfile words. The escape character is always `\`, whatever `# escape=` says, as
/// BuildKit does.
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, LexError> {
    let options = Options {
        skip_quotes: true,
        ..Options::default()
    };
    Shell::new(content, '\\', options, lookup)
        .process()
        .map(|(result, _)| result)
}

/// The knobs of lex.go's `Lex` that the Dockerfile parser needs to find heredoc markers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Keep the quote characters in the result (`RawQuotes`).
    pub raw_quotes: bool,
    /// Keep the escape characters in the result (`RawEscapes`).
    pub raw_escapes: bool,
    /// Leave `$NAME` / `${NAME…}` as written when NAME is unset (`SkipUnsetEnv`).
    pub skip_unset: bool,
    /// Do not treat quotes as quotes (`SkipProcessQuotes`).
    pub skip_quotes: bool,
}

/// [`expand_words`] with lex.go's options and no variables set, for the parser.
pub(crate) fn words_with(
    text: &str,
    escape: char,
    options: Options,
) -> Result<Vec<String>, LexError> {
    let unset = |_: &str| -> Option<String> { None };
    Shell::new(text, escape, options, &unset)
        .process()
        .map(|(_, words)| words)
}

/// What went wrong, before the word is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    Unterminated(String),
    MissingBrace,
    MissingSlash,
    TooDeep,
    BadSubstitution,
    UnsupportedModifier(String),
    Required { name: String, message: String },
    InvalidPattern { pattern: String, reason: String },
}

impl Fault {
    fn with_word(self, word: &str) -> LexError {
        let word = word.to_string();
        match self {
            Fault::Unterminated(what) => LexError::Unterminated { word, what },
            Fault::MissingBrace => LexError::MissingBrace { word },
            Fault::MissingSlash => LexError::MissingSlash { word },
            Fault::TooDeep => LexError::TooDeep { word },
            Fault::BadSubstitution => LexError::BadSubstitution { word },
            Fault::UnsupportedModifier(modifier) => {
                LexError::UnsupportedModifier { word, modifier }
            }
            Fault::Required { name, message } => LexError::Required {
                word,
                name,
                message,
            },
            Fault::InvalidPattern { pattern, reason } => LexError::InvalidPattern {
                word,
                pattern,
                reason,
            },
        }
    }
}

/// lex.go's `wordsStruct`: collects the words of [`expand_words`].
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A character that splits when it is whitespace.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A character that never splits (escaped).
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    /// Expanded text: splits on its whitespace.
    fn add_string(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    /// Quoted text: never splits.
    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// lex.go's `shellWord`: a scanner over one word with the current options.
struct Shell<'a> {
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    escape: char,
    options: Options,
    /// `RawEscapes` as currently in force (pattern words turn it on).
    raw_escapes: bool,
    /// How many `$` expansions are being processed (they nest through `${X:-…}`).
    depth: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Shell<'a> {
    fn new(
        source: &'a str,
        escape: char,
        options: Options,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Shell {
            source,
            chars: source.chars().collect(),
            pos: 0,
            escape,
            options,
            raw_escapes: options.raw_escapes,
            depth: 0,
            lookup,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process(mut self) -> Result<(String, Vec<String>), LexError> {
        let raw = self.options.raw_escapes;
        let source = self.source;
        self.stop_on(None, raw)
            .map_err(|fault| fault.with_word(source))
    }

    /// Processes up to `stop` (consumed) or the end of the word when `stop` is `None`;
    /// returns the text and its words. `raw_escapes` is in force meanwhile.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Fault> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let outcome = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        outcome
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Fault> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let marker = self.possible_heredoc();
                    result.push_str(&marker);
                    words.add_raw_string(&marker);
                }
                '\'' if !self.options.skip_quotes => {
                    let text = self.single_quote()?;
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                '"' if !self.options.skip_quotes => {
                    let text = self.double_quote()?;
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape makes the next character literal; at the end of the
                        // word it is dropped.
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(Fault::Unterminated(stop.to_string())),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quote(&mut self) -> Result<String, Fault> {
        let mut result = String::new();
        self.next();
        if self.options.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(Fault::Unterminated("single-quote".to_string())),
                Some('\'') => {
                    if self.options.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, Fault> {
        let mut result = String::new();
        self.next();
        if self.options.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(Fault::Unterminated("double-quote".to_string())),
                Some('"') => {
                    self.next();
                    if self.options.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end is ignored (and the quote is
                            // then unterminated).
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.next();
                                ch = next;
                            }
                            // Any other escape stays as written.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<` is special for word splitting only: `<<` keeps the blanks after it, so that
    /// `<<  EOF` stays one word (a heredoc marker). The text itself is unchanged.
    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut marker = "<<".to_string();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.peek() {
            marker.push(ch);
            self.next();
        }
        marker
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn dollar(&mut self) -> Result<String, Fault> {
        if self.depth >= MAX_NESTING {
            return Err(Fault::TooDeep);
        }
        self.depth += 1;
        let outcome = self.dollar_inner();
        self.depth -= 1;
        outcome
    }

    fn dollar_inner(&mut self) -> Result<String, Fault> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }

        self.next();
        match self.peek() {
            None => return Err(Fault::MissingBrace),
            Some('{' | '}' | ':') => return Err(Fault::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else {
            return Err(Fault::MissingBrace);
        };
        let mut modifier = ch.to_string();

        if ch == '}' {
            return Ok(match self.get(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            });
        }

        let mut null_is_unset = false;
        if ch == ':' {
            null_is_unset = true;
            // `${X:` at the end: lex.go then fails looking for `}`.
            let Some(next) = self.next() else {
                return Err(Fault::MissingBrace);
            };
            ch = next;
            modifier.push(ch);
        }

        if null_is_unset || matches!(ch, '+' | '-' | '?' | '#' | '%') {
            let pattern_word = ch == '#' || ch == '%';
            if null_is_unset && pattern_word {
                return Err(Fault::UnsupportedModifier(modifier));
            }
            let word = self.word_until_brace(pattern_word)?;
            let value = self.get(&name);
            if self.options.skip_unset && value.is_none() {
                return Ok(format!("${{{name}{modifier}{word}}}"));
            }
            let set = value.is_some();
            let value = value.unwrap_or_default();
            let null = !set || (null_is_unset && value.is_empty());
            return match ch {
                '-' => Ok(if null { word } else { value }),
                '+' => Ok(if null { String::new() } else { word }),
                '?' => {
                    if !set {
                        Err(Fault::Required {
                            name,
                            message: or_default(word, "is not allowed to be unset"),
                        })
                    } else if null {
                        Err(Fault::Required {
                            name,
                            message: or_default(word, "is not allowed to be empty"),
                        })
                    } else {
                        Ok(value)
                    }
                }
                '#' | '%' => {
                    // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                    let (pattern, greedy) = match word.strip_prefix(ch) {
                        Some(rest) => (rest, true),
                        None => (word.as_str(), false),
                    };
                    let trimmed = if ch == '%' {
                        trim_suffix(pattern, &value, greedy)
                    } else {
                        trim_prefix(pattern, &value, greedy)
                    };
                    trimmed.map_err(|reason| Fault::InvalidPattern {
                        pattern: pattern.to_string(),
                        reason,
                    })
                }
                _ => Err(Fault::UnsupportedModifier(modifier)),
            };
        }

        if ch == '/' {
            return self.substitute(&name);
        }
        Err(Fault::UnsupportedModifier(modifier))
    }

    /// The word of `${NAME<modifier>word}`, up to its `}`.
    fn word_until_brace(&mut self, raw_escapes: bool) -> Result<String, Fault> {
        match self.stop_on(Some('}'), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(Fault::MissingBrace),
            Err(fault) => Err(fault),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`, after the first
    /// `/`.
    fn substitute(&mut self, name: &str) -> Result<String, Fault> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.stop_on(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(_) if self.peek().is_none() => return Err(Fault::MissingSlash),
            Err(fault) => return Err(fault),
        };
        let replacement = self.word_until_brace(true)?;
        let value = self.get(name);
        if self.options.skip_unset && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let tokens = compile_pattern(&pattern).map_err(|reason| Fault::InvalidPattern {
            pattern: pattern.clone(),
            reason,
        })?;
        let text: Vec<char> = value.chars().collect();
        let table = MatchTable::new(&tokens, &text, true);
        if replace_all {
            return Ok(table.replace_all(&text, &replacement));
        }
        Ok(match table.find(0) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(&replacement);
                out.extend(&text[end..]);
                out
            }
            None => value,
        })
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one special
    /// parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(digit);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

fn or_default(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word
    }
}

fn is_digit(ch: char) -> bool {
    ch.is_numeric()
}

/// POSIX special parameters (`$@`, `$#`…), as lex.go lists them.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// One element of a `${X#pattern}` / `${X/pattern/…}` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: any one character but a newline (lex.go turns it into the regexp `.`).
    Any,
    /// `*`: any run of characters without a newline (`.*` or `.*?`).
    Star,
}

/// lex.go's `convertShellPatternToRegex`, as tokens. The escape here is always `\`.
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        let token = match ch {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => match chars.get(i) {
                // `}` and `/` are escaped for `${…}`; the escape is not part of the
                // pattern.
                Some('}' | '/') => continue,
                Some(&next @ ('*' | '?' | '\\')) => {
                    i += 1;
                    Tok::Lit(next)
                }
                Some(&next) => return Err(format!("invalid escape '\\{next}'")),
                None => return Err("invalid escape '\\\u{fffd}'".to_string()),
            },
            ch => Tok::Lit(ch),
        };
        // Consecutive stars match what one star does, in the same order.
        if token == Tok::Star && tokens.last() == Some(&Tok::Star) {
            continue;
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// For every start position, the end of the match a backtracking regexp engine finds
/// first (Go's leftmost-first semantics), computed without recursion: column `t` holds
/// the results of the pattern's suffix from token `t`.
struct MatchTable {
    ends: Vec<Option<usize>>,
}

impl MatchTable {
    fn new(tokens: &[Tok], text: &[char], greedy: bool) -> Self {
        let n = text.len();
        // next_newline[p]: where a star starting at p must stop.
        let mut next_newline = vec![n; n + 1];
        for p in (0..n).rev() {
            next_newline[p] = if text[p] == '\n' {
                p
            } else {
                next_newline[p + 1]
            };
        }
        let mut column: Vec<Option<usize>> = (0..=n).map(Some).collect();
        for token in tokens.iter().rev() {
            let mut prev = vec![None; n + 1];
            match *token {
                Tok::Lit(c) => {
                    for p in 0..n {
                        if text[p] == c {
                            prev[p] = column[p + 1];
                        }
                    }
                }
                Tok::Any => {
                    for p in 0..n {
                        if text[p] != '\n' {
                            prev[p] = column[p + 1];
                        }
                    }
                }
                Tok::Star if greedy => {
                    // The star first takes as much as it can, up to the next newline:
                    // from each start, the largest end in its line from which the rest
                    // of the pattern matches.
                    let mut p = 0;
                    while p <= n {
                        let end = next_newline[p];
                        let largest = (p..=end).rev().find(|e| column[*e].is_some());
                        for (q, slot) in prev.iter_mut().enumerate().take(end + 1).skip(p) {
                            *slot = largest.filter(|e| *e >= q).and_then(|e| column[e]);
                        }
                        p = end + 1;
                    }
                }
                Tok::Star => {
                    // Lazy: the star takes as little as it can.
                    let mut nearest: Option<usize> = None;
                    for p in (0..=n).rev() {
                        if p < n && text[p] == '\n' {
                            nearest = None;
                        }
                        if column[p].is_some() {
                            nearest = Some(p);
                        }
                        prev[p] = nearest.and_then(|e| column[e]);
                    }
                }
            }
            column = prev;
        }
        MatchTable { ends: column }
    }

    /// The leftmost match starting at or after `from`.
    fn find(&self, from: usize) -> Option<(usize, usize)> {
        (from..self.ends.len()).find_map(|start| self.ends[start].map(|end| (start, end)))
    }

    /// Go's `Regexp.ReplaceAllString`, including its `$0`/`$name` template expansion of
    /// the replacement (the pattern has no groups, so only `$0` and `$$` give text).
    fn replace_all(&self, text: &[char], replacement: &str) -> String {
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find(search) else {
                break;
            };
            out.extend(&text[last_end..start]);
            // No replacement for an empty match right after the previous match.
            if end > last_end || start == 0 {
                let matched: String = text[start..end].iter().collect();
                out.push_str(&expand_template(replacement, &matched));
            }
            last_end = end;
            search = if end > search { end } else { search + 1 };
        }
        out.extend(&text[last_end.min(text.len())..]);
        out
    }
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0`/`${0}` the whole
/// match, any other `$name` nothing, a malformed `$` stays.
fn expand_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let len: usize = body
            .chars()
            .take_while(|c| c.is_alphabetic() || c.is_numeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        if len == 0 || (braced && !body[len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..len];
        if name == "0" {
            out.push_str(matched);
        }
        rest = &body[len + usize::from(braced)..];
    }
    out.push_str(rest);
    out
}

/// `${X#pattern}` (`##` when greedy).
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let tokens = compile_pattern(pattern)?;
    let text: Vec<char> = value.chars().collect();
    let table = MatchTable::new(&tokens, &text, greedy);
    Ok(match table.ends.first().copied().flatten() {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${X%pattern}` (`%%` when greedy): lex.go reverses the pattern and the value and
/// removes a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern without splitting its escape pairs (`a\*c` gives `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let n = chars.len();
    let mut out = vec!['\0'; n];
    let mut i = 0;
    while i < n {
        let at = n - 1 - i;
        if chars[i] == '\\' && i + 1 < n {
            out[at - 1] = '\\';
            out[at] = chars[i + 1];
            i += 2;
        } else {
            out[at] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    /// The environment of BuildKit's envVarTest.
    const ENV: &[(&str, &str)] = &[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];

    fn word(input: &str) -> Result<String, LexError> {
        expand(input, '\\', &vars(ENV))
    }

    /// (input, environment, expected expansion)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    fn word_with(input: &str, env: &[(&str, &str)]) -> Result<String, LexError> {
        expand(input, '\\', &vars(env))
    }

    fn words(input: &str, env: &[(&str, &str)]) -> Result<Vec<String>, LexError> {
        expand_words(input, '\\', &vars(env))
    }

    #[test]
    fn quotes_and_escapes() {
        let cases = [
            (r#"hello"#, "hello"),
            (r#"he'll'o"#, "hello"),
            (r#"he\'llo"#, "he'llo"),
            (r#"abc\tdef"#, "abctdef"),
            (r#""abc\tdef""#, r"abc\tdef"),
            (r#""abc\\tdef""#, r"abc\tdef"),
            (r#"'abc\tdef'"#, r"abc\tdef"),
            (r#"hello\"#, "hello"),
            (r#"hello\\"#, r"hello\"),
            (r#""hel'lo""#, "hel'lo"),
            (r#"'hello\'"#, r"hello\"),
            (r#"'hello\there'"#, r"hello\there"),
            (r#"'hello\\there'"#, r"hello\\there"),
            (r#""''""#, "''"),
            (r#"'"hello"'"#, r#""hello""#),
            ("a  b", "a  b"),
            ("안'녕'하세요", "안녕하세요"),
            (r#""안녕'하세요""#, "안녕'하세요"),
        ];
        for (input, expected) in cases {
            assert_eq!(word(input).as_deref(), Ok(expected), "input {input}");
        }
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        for input in [
            r#"he'llo"#,
            r#"he\\'llo"#,
            r#""hello"#,
            r#""hello\""#,
            r#"'hello"#,
            "안'녕하세요",
        ] {
            assert!(word(input).is_err(), "input {input}");
        }
        assert_eq!(
            word("'abc").unwrap_err().to_string(),
            r#"failed to process "'abc": unexpected end of statement while looking for matching single-quote"#
        );
        assert_eq!(
            word("\"abc").unwrap_err().to_string(),
            r#"failed to process "\"abc": unexpected end of statement while looking for matching double-quote"#
        );
    }

    #[test]
    fn variables() {
        let cases = [
            ("$.", "$."),
            ("he$1x", "hex"),
            ("he$.x", "he$.x"),
            ("he$pwd.", "he."),
            ("he$PWD", "he/home"),
            (r"he\$PWD", "he$PWD"),
            (r"he\\$PWD", r"he\/home"),
            (r#""he\$PWD""#, "he$PWD"),
            (r#""he\\$PWD""#, r"he\/home"),
            (r"\${}", "${}"),
            (r"\${}aaa", "${}aaa"),
            (r"he\${}", "he${}"),
            (r"he\${}xx", "he${}xx"),
            ("he${hi}", "he"),
            ("he${hi}xx", "hexx"),
            ("he${PWD}", "he/home"),
            ("'he${XX}'", "he${XX}"),
            (r#""he${PWD}""#, "he/home"),
            (r#""he'$PWD'""#, "he'/home'"),
            (r#""$PWD""#, "/home"),
            ("'$PWD'", "$PWD"),
            (r"'\$PWD'", r"\$PWD"),
            (r"'he\$PWD'", r"he\$PWD"),
            ("${KOREAN}", "한국어"),
            ("안녕${KOREAN}", "안녕한국어"),
            ("a$@b", "ab"),
            ("$", "$"),
            ("$PWD$SHELL", "/homebash"),
        ];
        for (input, expected) in cases {
            assert_eq!(word(input).as_deref(), Ok(expected), "input {input}");
        }
    }

    #[test]
    fn modifiers() {
        let cases = [
            ("he${XXX:-000}xx", "he000xx"),
            ("he${PWD:-000}xx", "he/homexx"),
            ("he${XXX:-$PWD}xx", "he/homexx"),
            ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
            ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
            ("he${PWD?}", "he/home"),
            ("he${PWD:?}", "he/home"),
            ("he${NULL?}", "he"),
            ("he${XXX:+${PWD}}xx", "hexx"),
            ("he${PWD:+${XXX}}xx", "hexx"),
            ("he${PWD:+${SHELL}}xx", "hebashxx"),
            ("he${XXX:+000}xx", "hexx"),
            ("he${PWD:+000}xx", "he000xx"),
            ("he${PWD:+${PWD}:}xx", "he/home:xx"),
            (r"he${XXX:-\$PWD:}xx", "he$PWD:xx"),
            (r"he${XXX:-\${PWD}z}xx", "he${PWDz}xx"),
            ("${NULL-x}", ""),
            ("${NULL:-x}", "x"),
            ("${NULL+x}", "x"),
            ("${NULL:+x}", ""),
            ("${XXX-x}", "x"),
            ("${XXX+x}", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(word(input).as_deref(), Ok(expected), "input {input}");
        }
    }

    #[test]
    fn modifier_errors() {
        for input in [
            "${}",
            "${}aaa",
            "he${}",
            "he${}xx",
            "he${.}",
            "he${XXX:YYY}",
            "he${XXX?}",
            "he${XXX:?}",
            "he${NULL:?}",
            "he${PWD",
            "he${PWD:=000}xx",
            "${FOO=aaa}",
            "${FOO=:aaa}",
            "${FOO=}",
            "${",
            "${PWD:",
            "${PWD:-abc",
        ] {
            assert!(word(input).is_err(), "input {input}");
        }
        assert_eq!(
            word("${}").unwrap_err(),
            LexError::BadSubstitution {
                word: "${}".to_string()
            }
        );
        assert_eq!(
            word("he${PWD:-abc").unwrap_err().to_string(),
            r#"failed to process "he${PWD:-abc": syntax error: missing '}'"#
        );
        assert_eq!(
            word("${X:=1}").unwrap_err().to_string(),
            r#"failed to process "${X:=1}": unsupported modifier (:=) in substitution"#
        );
        assert_eq!(
            word("${X:?}").unwrap_err().to_string(),
            r#"failed to process "${X:?}": X: is not allowed to be unset"#
        );
        assert_eq!(
            word("${NULL:?}").unwrap_err().to_string(),
            r#"failed to process "${NULL:?}": NULL: is not allowed to be empty"#
        );
        // `:#` and `:%` are not modifiers.
        assert!(matches!(
            word("${PWD:#x}"),
            Err(LexError::UnsupportedModifier { modifier, .. }) if modifier == ":#"
        ));
    }

    #[test]
    fn mandatory_variables() {
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";

        assert_eq!(word_with(no_empty, &set).unwrap(), "plain");
        let err = word_with(no_empty, &empty).unwrap_err();
        assert!(err.to_string().contains("VAR: message herex"), "{err}");
        assert!(word_with(no_empty, &unset)
            .unwrap_err()
            .to_string()
            .contains("message herex"));

        assert_eq!(word_with(no_unset, &set).unwrap(), "plain");
        assert_eq!(word_with(no_unset, &empty).unwrap(), "");
        assert_eq!(
            word_with(no_unset, &unset).unwrap_err(),
            LexError::Required {
                word: no_unset.to_string(),
                name: "VAR".to_string(),
                message: "message herex".to_string(),
            }
        );
    }

    #[test]
    fn pattern_removal() {
        let cases: &[Case] = &[
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                "x",
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO%.*}", &[("FOO", "archive.tar.gz")], "archive.tar"),
            ("${FOO%%.*}", &[("FOO", "archive.tar.gz")], "archive"),
            ("${FOO#*/}", &[("FOO", "a/b/c")], "b/c"),
            ("${FOO##*/}", &[("FOO", "a/b/c")], "c"),
            ("${FOO%/*}", &[("FOO", "a/b/c")], "a/b"),
            // `*` does not cross a newline, as Go's `.` does not.
            ("${FOO##*b}", &[("FOO", "ab\nab")], "\nab"),
            ("${UNSET#x}", &[], ""),
        ];
        for (input, env, expected) in cases {
            assert_eq!(
                word_with(input, env).as_deref(),
                Ok(*expected),
                "input {input}"
            );
        }
        assert!(matches!(
            word_with(r"${FOO#\x}", &[("FOO", "x")]),
            Err(LexError::InvalidPattern { .. })
        ));
    }

    #[test]
    fn substitution() {
        let cases: &[Case] = &[
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                "/foo/b/c.txt - /foo/c.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                "https://google.de",
            ),
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                r"\/tmp\/foo.txt",
            ),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
            ("${FOO//y/Y}", &[("FOO", "xxyy")], "xxYY"),
            ("${FOO/x*/Z}", &[("FOO", "axxb")], "aZ"),
            // The replacement of a replace-all is a Go template: `$$` is `$`, `$0`
            // the match.
            ("${FOO//x/$R}", &[("FOO", "xax"), ("R", "$$")], "$a$"),
            ("${FOO//x/$R}", &[("FOO", "xax"), ("R", "<$0>")], "<x>a<x>"),
            ("${FOO/x/$R}", &[("FOO", "xax"), ("R", "$$")], "$$ax"),
        ];
        for (input, env, expected) in cases {
            assert_eq!(
                word_with(input, env).as_deref(),
                Ok(*expected),
                "input {input}"
            );
        }
        assert!(matches!(
            word_with("${FOO//ww}", &[("FOO", "xxyy")]),
            Err(LexError::MissingSlash { .. })
        ));
        assert!(word_with("${FOO//}", &[("FOO", "xxyy")]).is_err());
    }

    #[test]
    fn release_file_name() {
        let env = [
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ];
        let release =
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        assert_eq!(
            word_with(release, &env).unwrap(),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            word_with(release, &env[..3]).unwrap(),
            "something-v1.2.3.linux-arm.tar.gz"
        );
    }

    #[test]
    fn word_splitting() {
        let env = [("hi", "hi"), ("space", "abc  def"), ("leading", "  ab c")];
        let cases: &[(&str, &[&str])] = &[
            ("hello", &["hello"]),
            ("hello${hi}bye", &["hellohibye"]),
            ("hello${space}bye", &["helloabc", "defbye"]),
            (r#"hello"${space}"bye"#, &["helloabc  defbye"]),
            (r#"hello "${space}"bye"#, &["hello", "abc  defbye"]),
            ("hello${leading}def", &["hello", "ab", "cdef"]),
            (r#"hello"${leading}" def"#, &["hello  ab c", "def"]),
            (r#"hello"${leading}""#, &["hello  ab c"]),
            ("hello${leading}", &["hello", "ab", "c"]),
            ("${leading}", &["ab", "c"]),
            (r#""${leading}""#, &["  ab c"]),
            ("  a   b  ", &["a", "b"]),
            (r"a\ b c", &["a b", "c"]),
            (r#"a "b c" d"#, &["a", "b c", "d"]),
            ("a 'b  c' d", &["a", "b  c", "d"]),
            (r#""""#, &[]),
            (r#"a "" b"#, &["a", "b"]),
            // A default's quotes are removed before the value is split.
            (r#"${unset:-"x y"}"#, &["x", "y"]),
            // `<<` keeps the blanks after it (heredoc markers).
            ("cat <<  EOF > x", &["cat", "<<  EOF", ">", "x"]),
            ("a < b", &["a", "<", "b"]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                words(input, &env).unwrap(),
                expected.to_vec(),
                "input {input}"
            );
        }
        assert!(words(r#"a "b"#, &env).is_err());
        // expand() keeps the text whole.
        assert_eq!(word_with("cat <<  EOF", &env).unwrap(), "cat <<  EOF");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let nested = |levels: usize| {
            let mut word = "x".to_string();
            for _ in 0..levels {
                word = format!("${{A:-\"{word}\"}}");
            }
            word
        };
        assert_eq!(word(&nested(MAX_NESTING)).unwrap(), "x");
        assert!(matches!(
            word(&nested(MAX_NESTING + 1)),
            Err(LexError::TooDeep { .. })
        ));
        assert!(matches!(
            word(&nested(5_000)),
            Err(LexError::TooDeep { .. })
        ));
    }

    #[test]
    fn backtick_escape() {
        let env = vars(ENV);
        let tick = |input: &str| expand(input, '`', &env);
        assert_eq!(tick(r"C:\path\to").unwrap(), r"C:\path\to");
        assert_eq!(tick("a`$PWD").unwrap(), "a$PWD");
        assert_eq!(tick("a`` b").unwrap(), "a` b");
        assert_eq!(tick(r#""a`"b""#).unwrap(), r#"a"b"#);
        assert_eq!(tick(r#""a`b""#).unwrap(), "a`b");
        assert_eq!(
            expand_words("a` b c", '`', &env).unwrap(),
            vec!["a b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn heredoc_content_keeps_quotes() {
        let env = vars(ENV);
        assert_eq!(
            expand_heredoc("echo \"$PWD\" '$SHELL' \\$HOME\n", &env).unwrap(),
            "echo \"/home\" 'bash' $HOME\n"
        );
    }

    #[test]
    fn parser_options() {
        let raw = Options {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: true,
            skip_quotes: false,
        };
        assert_eq!(
            words_with(r#"RUN "a b" \x $X ${Y:-z} <<'EOF'"#, '\\', raw).unwrap(),
            vec!["RUN", "\"a b\"", r"\x", "$X", "${Y:-z}", "<<'EOF'"]
        );
    }

    #[test]
    fn go_pattern_helpers() {
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern(r"\\b"), r"b\\");
        for invalid in ["\\", "\\x", "\\\\\\"] {
            assert!(compile_pattern(invalid).is_err(), "{invalid}");
        }
        assert_eq!(
            compile_pattern(r"a\}*?").unwrap(),
            vec![Tok::Lit('a'), Tok::Lit('}'), Tok::Star, Tok::Any]
        );
        assert_eq!(expand_template("[$0]${0}$1$x$$", "m"), "[m]m$");
        assert_eq!(expand_template("a$", "m"), "a$");
    }
}
