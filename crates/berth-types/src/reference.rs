//! Image references as Docker spells them: `[domain[:port]/]path[:tag][@digest]`.
//!
//! References are normalized the way Docker normalizes them (`busybox` is
//! `docker.io/library/busybox:latest`) and shown in Docker's familiar form.

use std::fmt;

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalized image reference. At least one of `tag` and `digest` may be absent, in
/// which case the reference names a repository only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("reference {0:?}: empty")]
    Empty(String),
    #[error("reference {reference:?}: {rule}")]
    Invalid {
        reference: String,
        rule: &'static str,
    },
}

fn invalid(reference: &str, rule: &'static str) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_string(),
        rule,
    }
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        let inner = &host[1..host.len() - 1];
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses and normalizes a reference as `docker pull` would accept it.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| invalid(s, "digest must be sha256:<64 hex>"))?,
                ),
            ),
            None => (s, None),
        };
        // A tag follows the last ':' only if no '/' comes after it (else it is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !is_tag(t) {
                return Err(invalid(
                    s,
                    "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                ));
            }
        }
        if name.is_empty() {
            return Err(invalid(s, "repository name is empty"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_domain(first) {
                    return Err(invalid(s, "registry host is not a valid host[:port]"));
                }
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if !path.split('/').all(is_path_component) {
            return Err(invalid(
                s,
                "repository name must be lowercase [a-z0-9] components separated by '/', '.', '_' or '-'",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(invalid(s, "repository name longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parses a reference and adds the tag `latest` when it has neither tag nor digest,
    /// as `docker tag`, `docker pull` and `docker rmi` do.
    pub fn parse_with_default_tag(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Builds `repo:tag` from Docker API `repo` and `tag` query parameters.
    pub fn from_repo_tag(repo: &str, tag: Option<&str>) -> Result<Reference, ReferenceError> {
        match tag.filter(|t| !t.is_empty()) {
            Some(t) => Reference::parse(&format!("{repo}:{t}")),
            None => Reference::parse_with_default_tag(repo),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The normalized repository name, `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it (`busybox`, `team/app`, `reg:5000/app`).
    ///
    /// As Docker: `library/` is dropped only when nothing nested follows it. Unlike
    /// Docker, `docker.io/` is kept when the first path component would read as a
    /// registry host (`docker.io/localhost/x`, `docker.io/a.b/c`), so the familiar form
    /// always parses back to the same repository.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        if let Some(rest) = self.path.strip_prefix(OFFICIAL_PREFIX) {
            if !rest.contains('/') {
                return rest.to_string();
            }
        }
        let first = self.path.split('/').next().unwrap_or_default();
        if self.path.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            return self.repository();
        }
        self.path.clone()
    }

    /// `repository:tag` in familiar form, or `None` when there is no tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_repository()))
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_tag(tag) {
            return Err(invalid(
                tag,
                "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
            ));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository with the given digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Familiar form of the whole reference.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully normalized form, `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let r = Reference::parse_with_default_tag("busybox").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("fixture/app:1").expect("valid");
        assert_eq!(r.to_string(), "docker.io/fixture/app:1");
        assert_eq!(r.familiar_tagged().as_deref(), Some("fixture/app:1"));
        let r = Reference::parse("localhost:5000/team/app").expect("valid");
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.tag(), None);
        assert_eq!(r.familiar_repository(), "localhost:5000/team/app");
        let r = Reference::parse("reg.example:5000/a/b:v1.2").expect("valid");
        assert_eq!(r.tag(), Some("v1.2"));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "-a",
            "a:",
            "a:-x",
            "a@sha256:12",
            ":tag",
            "a/../b",
            "a b",
            "/abs",
            "a/",
            "reg:99999x/a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn familiar_forms_parse_back_to_the_same_repository() {
        for r in [
            "library/x/o",
            "docker.io/b.8/t",
            "docker.io/localhost/x",
            "docker.io/a_b.c/d",
            "busybox",
            "team/app",
        ] {
            let parsed = Reference::parse_with_default_tag(r).expect("valid");
            let again = Reference::parse(&parsed.familiar()).expect("familiar form parses");
            assert_eq!(
                again,
                parsed,
                "{r}: familiar {} names another repository",
                parsed.familiar()
            );
        }
        let r = Reference::parse("library/x/o").expect("valid");
        assert_eq!(r.familiar_repository(), "library/x/o");
    }

    #[test]
    fn digest_references() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("app@{d}")).expect("valid");
        assert_eq!(r.digest().map(|x| x.to_string()), Some(d.to_string()));
        assert_eq!(r.tag(), None);
    }
}
