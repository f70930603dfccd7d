//! Trust at the door: where images may come from.
//!
//! A [`Policy`] is a list of [`Rule`]s, each asked about every image that enters the
//! store (a pull, a load) or is about to be used (a run, later). The first rule that
//! refuses wins, and its error names the rule. Rules today: the allow list of
//! registries/repositories and the requirement to pull by digest; a signature rule
//! slots in as another variant checked at the same points.
//!
//! Safe default: with no allow list configured, **pulls are refused** (a production host
//! must not fetch from wherever a reference points, Docker Hub included) and loads are
//! allowed (an operator hands the daemon an archive on purpose). With an allow list,
//! pulls must match it, and so must every name an archive gives its images (an archive
//! cannot smuggle in `registry.example/team/app` from elsewhere); unnamed images in an
//! archive have no origin to check and are allowed.

use berth_types::{ErrorKind, Reference};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The `[policy]` section of the daemon config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Registries (`127.0.0.1:5000`) or repositories (`127.0.0.1:5000/team/*`,
    /// `registry.example/team/app`) images may come from.
    pub allow: Vec<String>,
    /// Pulls must name a digest (`repo@sha256:…`), never only a tag.
    pub require_digest: bool,
}

/// What is being done with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pull,
    Load,
    Run,
}

impl Operation {
    fn verb(self) -> &'static str {
        match self {
            Operation::Pull => "pull",
            Operation::Load => "load",
            Operation::Run => "run",
        }
    }
}

/// One rule of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The reference must match one of the patterns. An empty list refuses pulls and
    /// allows loads and runs (see the module doc).
    Allow(Vec<String>),
    /// Pulls must be by digest.
    RequireDigest,
}

/// Whether `reference` matches `pattern`: a registry (`host[:port]`, no slash) matches
/// every repository on it; `host/path/*` every repository under `host/path/` (any
/// depth); anything else the whole repository, with `*` and `?` within a component.
pub fn pattern_matches(pattern: &str, reference: &Reference) -> bool {
    let repo = reference.repository();
    let pattern = pattern.trim().trim_end_matches('/');
    if !pattern.contains('/') {
        return reference.domain() == pattern;
    }
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return repo.starts_with(&format!("{prefix}/"));
    }
    crate::images::glob_match(pattern, &repo)
}

impl Rule {
    fn check(&self, op: Operation, reference: &Reference) -> Result<(), EngineError> {
        let name = reference.to_string();
        match self {
            Rule::Allow(list) if list.is_empty() => {
                if op == Operation::Pull {
                    return Err(forbidden(format!(
                        "image {name}: registry {} is not allowed by policy (no registry is allowed: pulls are refused until one is listed in [policy] allow or with --allow-registry)",
                        reference.domain()
                    )));
                }
                Ok(())
            }
            Rule::Allow(list) => {
                if list.iter().any(|p| pattern_matches(p, reference)) {
                    return Ok(());
                }
                let registry_listed = list
                    .iter()
                    .any(|p| p.split('/').next() == Some(reference.domain()));
                let what = if registry_listed {
                    format!("repository {}", reference.repository())
                } else {
                    format!("registry {}", reference.domain())
                };
                Err(forbidden(format!(
                    "image {name}: {what} is not allowed by policy (allow: {}); refusing to {}",
                    list.join(", "),
                    op.verb()
                )))
            }
            Rule::RequireDigest => {
                if op == Operation::Pull && reference.digest().is_none() {
                    return Err(forbidden(format!(
                        "image {name}: policy requires pulling by digest (require_digest = true): use NAME@sha256:…"
                    )));
                }
                Ok(())
            }
        }
    }
}

fn forbidden(message: String) -> EngineError {
    EngineError::new(ErrorKind::Forbidden, message)
}

/// The daemon's policy: rules checked in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn from_config(c: &PolicyConfig) -> Policy {
        let mut rules = vec![Rule::Allow(c.allow.clone())];
        if c.require_digest {
            rules.push(Rule::RequireDigest);
        }
        Policy { rules }
    }

    /// `Ok` when every rule admits `reference` for `op`; else the first refusal.
    pub fn check(&self, op: Operation, reference: &Reference) -> Result<(), EngineError> {
        for r in &self.rules {
            r.check(op, reference)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse_with_default_tag(s).unwrap()
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches(
            "127.0.0.1:5000/team/*",
            &r("127.0.0.1:5000/team/app:1")
        ));
        assert!(pattern_matches(
            "127.0.0.1:5000/team/*",
            &r("127.0.0.1:5000/team/a/b")
        ));
        assert!(!pattern_matches(
            "127.0.0.1:5000/team/*",
            &r("127.0.0.1:5000/other/app")
        ));
        assert!(!pattern_matches(
            "127.0.0.1:5000/team/*",
            &r("127.0.0.1:5000/teamx/app")
        ));
        assert!(pattern_matches("127.0.0.1:5000", &r("127.0.0.1:5000/x/y")));
        assert!(!pattern_matches("127.0.0.1:5000", &r("127.0.0.1:5001/x/y")));
        assert!(pattern_matches("docker.io/library/busybox", &r("busybox")));
        assert!(pattern_matches(
            "registry.example/team/app-*",
            &r("registry.example/team/app-x")
        ));
    }

    #[test]
    fn default_refuses_pulls_allows_loads() {
        let p = Policy::from_config(&PolicyConfig::default());
        let e = p.check(Operation::Pull, &r("busybox")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(e.message.starts_with(
            "image docker.io/library/busybox:latest: registry docker.io is not allowed by policy"
        ), "{}", e.message);
        p.check(Operation::Load, &r("busybox")).unwrap();
    }

    #[test]
    fn allow_list_names_the_rule() {
        let p = Policy::from_config(&PolicyConfig {
            allow: vec!["127.0.0.1:5000/team/*".into()],
            require_digest: false,
        });
        p.check(Operation::Pull, &r("127.0.0.1:5000/team/app:1"))
            .unwrap();
        let e = p.check(Operation::Pull, &r("busybox")).unwrap_err();
        assert_eq!(
            e.message,
            "image docker.io/library/busybox:latest: registry docker.io is not allowed by policy (allow: 127.0.0.1:5000/team/*); refusing to pull"
        );
        let e = p
            .check(Operation::Load, &r("127.0.0.1:5000/other/app:1"))
            .unwrap_err();
        assert!(
            e.message
                .contains("repository 127.0.0.1:5000/other/app is not allowed"),
            "{}",
            e.message
        );
    }

    #[test]
    fn digest_required() {
        let p = Policy::from_config(&PolicyConfig {
            allow: vec!["127.0.0.1:5000".into()],
            require_digest: true,
        });
        let e = p
            .check(Operation::Pull, &r("127.0.0.1:5000/a:1"))
            .unwrap_err();
        assert!(e.message.contains("require_digest"), "{}", e.message);
        let d = "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617";
        p.check(Operation::Pull, &r(&format!("127.0.0.1:5000/a@{d}")))
            .unwrap();
    }
}
