//! Repository names, tags and references as the OCI Distribution Spec defines them.
//!
//! - name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
//!   at most 255 characters in all
//! - tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
//! - digest: `sha256:<64 lowercase hex>` (berth stores sha256 only)

use berth_types::Digest;

use crate::error::{Error, Result};

/// The longest repository name accepted.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a repository name against the spec's grammar.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |rule: &'static str| Error::NameInvalid {
        name: name.to_string(),
        rule,
    };
    if name.is_empty() {
        return Err(invalid("a repository name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("a repository name is at most 255 characters"));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(invalid(
                "each path component must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*",
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    if b.is_empty() || !alnum(b[0]) {
        return false;
    }
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Checks a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let b = tag.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || b.len() > 128 {
        return Err(Error::TagInvalid {
            tag: tag.to_string(),
        });
    }
    Ok(())
}

/// Parses a digest from a request, refusing algorithms other than sha256.
pub fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: berth_types::digest::DigestError| Error::DigestInvalid {
            reason: e.to_string(),
        })
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<ManifestRef> {
        if s.contains(':') {
            Ok(ManifestRef::Digest(parse_digest(s)?))
        } else {
            validate_tag(s)?;
            Ok(ManifestRef::Tag(s.to_string()))
        }
    }
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// What a `/v2/<rest>` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Catalog,
    TagsList {
        name: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    /// `uuid` is empty for `POST /v2/<name>/blobs/uploads/`.
    Upload {
        name: String,
        uuid: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
}

/// Splits the path after `/v2/` into the repository name and the endpoint. Names may
/// contain slashes (and even components like `blobs`), so the endpoint is recognized
/// from the end of the path; the name is validated afterwards by the caller.
pub fn parse_route(rest: &str) -> Option<Route> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::TagsList { name: name.into() });
    }
    let last = |marker: &str| -> Option<(String, String)> {
        let (name, tail) = rest.rsplit_once(marker)?;
        (!tail.contains('/') && !name.is_empty()).then(|| (name.to_string(), tail.to_string()))
    };
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload {
            name: name.into(),
            uuid: String::new(),
        });
    }
    if let Some((name, uuid)) = last("/blobs/uploads/") {
        return Some(Route::Upload { name, uuid });
    }
    if let Some((name, digest)) = last("/blobs/") {
        return Some(Route::Blob { name, digest });
    }
    if let Some((name, reference)) = last("/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = last("/referrers/") {
        return Some(Route::Referrers { name, digest });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "fixture/app",
            "a.b_c__d---e/f0",
            "library/busybox",
            "x/blobs/uploads",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a/../b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        assert!(validate_tag("1").is_ok());
        assert!(validate_tag("_v1.0-rc").is_ok());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn routes_are_found_from_the_end() {
        assert_eq!(
            parse_route("a/blobs/uploads/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a/blobs/uploads".into(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            parse_route("team/app/blobs/uploads/"),
            Some(Route::Upload {
                name: "team/app".into(),
                uuid: String::new()
            })
        );
        assert_eq!(
            parse_route("m/manifests/manifests/1"),
            Some(Route::Manifest {
                name: "m/manifests".into(),
                reference: "1".into()
            })
        );
        assert_eq!(
            parse_route("a/tags/list"),
            Some(Route::TagsList { name: "a".into() })
        );
        assert_eq!(parse_route("a/other"), None);
    }
}
