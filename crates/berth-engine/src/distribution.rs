//! Images over the network: pull, push and registry login, with the policy checked
//! before anything is fetched.

use std::sync::Arc;

use berth_image::registry::{
    self, PullEvent, PullOptions, PushEvent, RegistryAuth, RegistryClient,
};
use berth_image::NameCheck;
use berth_store::ImageRecord;
use berth_types::Reference;
use tracing::{info, instrument, warn};

use crate::error::{EngineError, Result};
use crate::policy::{Operation, Policy};
use crate::Engine;

/// Layers fetched at once by a pull.
const PULL_PARALLEL: usize = 3;

/// Receives the progress of each tag a push sends.
pub type PushProgress = dyn Fn(&Reference, PushEvent) + Send + Sync;

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub reference: Reference,
    pub pulled: registry::Pulled,
}

/// The result of pushing one tag.
#[derive(Debug, Clone)]
pub struct PushResult {
    pub reference: Reference,
    pub pushed: registry::Pushed,
}

/// `fromImage` and `tag` as the Docker API sends them: `tag` may be a tag or a digest,
/// or empty when `image` carries its own.
pub fn pull_reference(image: &str, tag: Option<&str>) -> Result<Reference> {
    Ok(match tag.filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => Reference::parse(&format!("{image}@{t}"))?,
        Some(t) => Reference::parse(&format!("{image}:{t}"))?,
        None => Reference::parse_with_default_tag(image)?,
    })
}

/// A registry as a login names it (`127.0.0.1:5000`, `https://index.docker.io/v1/`).
pub fn registry_of_server(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            berth_types::reference::DEFAULT_DOMAIN.to_string()
        }
        h => h.to_string(),
    }
}

impl Engine {
    /// The policy in force (from the config).
    pub fn policy(&self) -> Policy {
        Policy::from_config(&self.config().policy)
    }

    /// Asks the policy whether `reference` may be used for `op` (runs call this too).
    pub fn check_policy(&self, op: Operation, reference: &Reference) -> Result<()> {
        self.policy().check(op, reference)
    }

    /// The check loads run on every name an archive gives its images.
    pub(crate) fn load_admit(&self) -> NameCheck {
        let policy = self.policy();
        NameCheck(Arc::new(move |r: &Reference| {
            policy.check(Operation::Load, r).map_err(|e| e.message)
        }))
    }

    fn connect(&self, registry: &str, auth: RegistryAuth) -> Result<RegistryClient> {
        Ok(RegistryClient::connect(registry, auth, &[])?)
    }

    /// Pulls `reference` (policy first) and tags it.
    #[instrument(skip_all, fields(reference = %reference))]
    pub fn pull(
        &self,
        reference: &Reference,
        platform: Option<&str>,
        auth: RegistryAuth,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<PullResult> {
        self.check_policy(Operation::Pull, reference)?;
        let platform = match platform.filter(|p| !p.is_empty()) {
            Some(p) => Some(crate::images::parse_platform(p)?),
            None => None,
        };
        let opts = PullOptions {
            load: self.load_options(),
            platform,
            parallel: PULL_PARALLEL,
        };
        // Mirrors first, in order, then the origin. The policy was checked above on the
        // reference as given; a mirror only changes where bytes come from (every digest
        // is verified as from the origin), and RepoDigests name the original repository.
        let domain = reference.domain();
        let mirrors = self
            .config()
            .registry_mirrors
            .get(domain)
            .cloned()
            .unwrap_or_default();
        let mut failures = Vec::new();
        for endpoint in &mirrors {
            let shown = registry::endpoint_display(endpoint);
            let attempt = RegistryClient::connect_mirror(domain, endpoint)
                .and_then(|c| registry::pull(self.store(), &c, reference, &opts, progress));
            match attempt {
                Ok(pulled) => {
                    info!(%reference, mirror = %shown, "pulled through a mirror");
                    return Ok(PullResult {
                        reference: reference.clone(),
                        pulled,
                    });
                }
                Err(e) => {
                    warn!(%reference, mirror = %shown, error = %e, "mirror failed; trying the next endpoint");
                    failures.push(format!("mirror {shown}: {e}"));
                }
            }
        }
        let origin = self.connect(domain, auth).and_then(|client| {
            Ok(registry::pull(
                self.store(),
                &client,
                reference,
                &opts,
                progress,
            )?)
        });
        let pulled = match origin {
            Ok(p) => p,
            Err(e) if failures.is_empty() => return Err(e),
            Err(e) => {
                failures.push(format!("origin {domain}: {e}"));
                let mut err = e;
                err.message = format!(
                    "pull of {reference} failed on every endpoint: {}",
                    failures.join("; ")
                );
                return Err(err);
            }
        };
        Ok(PullResult {
            reference: reference.clone(),
            pulled,
        })
    }

    /// The local images a push of `name` (`repo[:tag]`; with no tag, every tag of the
    /// repository) would send, with the tag each goes under.
    pub fn push_targets(
        &self,
        name: &str,
        tag: Option<&str>,
    ) -> Result<Vec<(Reference, ImageRecord)>> {
        let missing = |r: &Reference| {
            EngineError::not_found(format!(
                "An image does not exist locally with the tag: {}",
                r.familiar_repository()
            ))
        };
        let targets: Vec<Reference> = match tag.filter(|t| !t.is_empty()) {
            Some(t) => vec![Reference::parse(&format!("{name}:{t}"))?],
            None => {
                let r = Reference::parse(name)?;
                if r.tag().is_some() {
                    vec![r]
                } else {
                    let repo = r.repository();
                    let mut all: Vec<Reference> = self
                        .store()
                        .meta
                        .tags()?
                        .into_iter()
                        .map(|(t, _)| t)
                        .filter(|t| t.repository() == repo)
                        .collect();
                    all.sort();
                    if all.is_empty() {
                        return Err(missing(&r));
                    }
                    all
                }
            }
        };
        let mut out = Vec::new();
        for target in targets {
            let rec = match self.store().meta.resolve_tag(&target)? {
                Some(id) => self.store().meta.image(&id)?,
                None => None,
            }
            .ok_or_else(|| missing(&target))?;
            out.push((target, rec));
        }
        Ok(out)
    }

    /// Pushes the local image `name` (see [`push_targets`](Self::push_targets)) to the
    /// registry its name points at, recording the repo digest.
    #[instrument(skip_all, fields(image = %name))]
    pub fn push(
        &self,
        name: &str,
        tag: Option<&str>,
        auth: RegistryAuth,
        progress: Arc<PushProgress>,
    ) -> Result<Vec<PushResult>> {
        let targets = self.push_targets(name, tag)?;
        let Some((first, _)) = targets.first() else {
            return Ok(Vec::new());
        };
        let client = self.connect(first.domain(), auth)?;
        let mut out = Vec::new();
        for (target, rec) in targets {
            let p = progress.clone();
            let t2 = target.clone();
            let pushed = registry::push(
                self.store(),
                &client,
                &rec,
                &target,
                Arc::new(move |ev| p(&t2, ev)),
            )?;
            let mut updated = rec.clone();
            let rd = format!("{}@{}", target.repository(), pushed.digest);
            if !updated.repo_digests.contains(&rd) {
                updated.repo_digests.push(rd);
                self.store().meta.put_image(&updated, &[])?;
            }
            out.push(PushResult {
                reference: target,
                pushed,
            });
        }
        Ok(out)
    }

    /// Checks credentials against a registry (docker login).
    #[instrument(skip_all, fields(server = %server))]
    pub fn registry_login(&self, server: &str, auth: RegistryAuth) -> Result<()> {
        let registry = registry_of_server(server);
        let client = self.connect(&registry, auth)?;
        client.login()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_from_the_api() {
        assert_eq!(
            pull_reference("127.0.0.1:5000/a/b", Some("1"))
                .unwrap()
                .to_string(),
            "127.0.0.1:5000/a/b:1"
        );
        let d = "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617";
        assert_eq!(
            pull_reference("127.0.0.1:5000/a/b", Some(d))
                .unwrap()
                .to_string(),
            format!("127.0.0.1:5000/a/b@{d}")
        );
        assert_eq!(
            pull_reference("busybox", None).unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            registry_of_server("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(registry_of_server("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            registry_of_server("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
    }
}
