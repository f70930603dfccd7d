//! `docker commit`: a container's filesystem changes and config as a new image.
//!
//! As Docker 20.10 (`daemon/commit.go`): the config is the request's (else the
//! container's), the `changes` (Dockerfile instructions) are applied to it, then what it
//! leaves empty is filled from the container's config (Docker's `merge`). The new layer
//! is the container's upper directory without berth's own mount points (Docker's init
//! layer); an unchanged container adds an empty-layer history entry and no layer. With
//! `pause` a running container is frozen while its changes are read (a failure to
//! freeze is logged and the commit goes on, as Docker ignores it).

use std::collections::BTreeMap;

use berth_image::derive::{derive_image, Derivation, Step};
use berth_image::model::{History, RunConfig};
use berth_types::Reference;
use serde_json::{json, Map, Value};
use tracing::{info, instrument, warn};

use crate::containers::ContainerState;
use crate::error::{EngineError, Result};
use crate::Engine;

/// What `POST /commit` asks.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub repo: String,
    pub tag: String,
    pub author: String,
    pub comment: String,
    pub pause: bool,
    /// Dockerfile instructions (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR).
    pub changes: Vec<String>,
    /// The request body's config, when one was sent.
    pub config: Option<RunConfig>,
}

/// Docker's `merge(userConf, imageConf)`: what `user` leaves empty comes from `base`.
fn merge(user: &mut RunConfig, base: &RunConfig) {
    if user.user.as_deref().unwrap_or("").is_empty() {
        user.user = base.user.clone();
    }
    match (&mut user.exposed_ports, &base.exposed_ports) {
        (Some(u), Some(b)) if !u.is_empty() => {
            for (k, v) in b {
                u.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        (u, b) => {
            if u.as_ref().is_none_or(|m| m.is_empty()) {
                *u = b.clone();
            }
        }
    }
    match &mut user.env {
        Some(env) if !env.is_empty() => {
            for e in base.env.iter().flatten() {
                let key = e.split('=').next().unwrap_or("");
                if !env.iter().any(|u| u.split('=').next().unwrap_or("") == key) {
                    env.push(e.clone());
                }
            }
        }
        _ => user.env = base.env.clone(),
    }
    let labels = user.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in base.labels.iter().flatten() {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if user.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = base.cmd.clone();
            user.args_escaped = base.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = base.entrypoint.clone();
        }
    }
    if let Some(b) = &base.healthcheck {
        match &mut user.healthcheck {
            None => user.healthcheck = Some(b.clone()),
            Some(u) => {
                if u.test.as_ref().is_none_or(|t| t.is_empty()) {
                    u.test = b.test.clone();
                }
                for (dst, src) in [
                    (&mut u.interval, b.interval),
                    (&mut u.timeout, b.timeout),
                    (&mut u.start_period, b.start_period),
                    (&mut u.retries, b.retries),
                ] {
                    if dst.unwrap_or(0) == 0 {
                        *dst = src;
                    }
                }
            }
        }
    }
    if user.working_dir.as_deref().unwrap_or("").is_empty() {
        user.working_dir = base.working_dir.clone();
    }
    match &mut user.volumes {
        Some(v) if !v.is_empty() => {
            for (k, x) in base.volumes.iter().flatten() {
                v.insert(k.clone(), x.clone());
            }
        }
        _ => user.volumes = base.volumes.clone(),
    }
    if user.stop_signal.as_deref().unwrap_or("").is_empty() {
        user.stop_signal = base.stop_signal.clone();
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Engine {
    /// The container's config as Docker keeps it (`Config` of inspect): the image's
    /// merged with what the container was created with.
    fn container_run_config(&self, rec: &crate::ContainerRecord) -> RunConfig {
        let run = &rec.run;
        let image = self
            .run_config(&rec.image_id.to_string())
            .unwrap_or_default();
        let mut labels = image.labels.clone().unwrap_or_default();
        labels.extend(rec.labels.clone());
        let mut other = Map::new();
        let hostname = if run.hostname.is_empty() {
            rec.id.get(..12).unwrap_or("").to_string()
        } else {
            run.hostname.clone()
        };
        for (k, v) in [
            ("Hostname", json!(hostname)),
            ("Domainname", json!("")),
            ("AttachStdin", json!(rec.attach_stdin)),
            ("AttachStdout", json!(rec.attach_stdout)),
            ("AttachStderr", json!(rec.attach_stderr)),
            ("Tty", json!(rec.tty)),
            ("OpenStdin", json!(rec.open_stdin)),
            ("StdinOnce", json!(rec.stdin_once)),
            ("Image", json!(rec.image)),
        ] {
            other.insert(k.to_string(), v);
        }
        let set = |v: Vec<String>| {
            (!v.is_empty()).then(|| v.into_iter().map(|k| (k, json!({}))).collect())
        };
        RunConfig {
            user: non_empty(&run.user),
            exposed_ports: set(rec.net.exposed_ports.clone()),
            env: Some(run.env.clone()).filter(|e| !e.is_empty()),
            entrypoint: run.entrypoint.clone(),
            cmd: run.cmd.clone(),
            healthcheck: run.healthcheck.clone(),
            volumes: set(rec.mount_config.volumes.clone()),
            working_dir: non_empty(&run.working_dir),
            labels: Some(labels).filter(|l| !l.is_empty()),
            stop_signal: run.stop_signal.clone(),
            on_build: None,
            shell: None,
            args_escaped: None,
            other,
        }
    }

    /// The container's filesystem changes as a layer: its overlay upper directory
    /// without berth's own mount points.
    fn container_layer(
        &self,
        rec: &crate::containers::ContainerRecord,
        clamp_mtime: Option<u64>,
    ) -> Result<berth_image::layer::IngestedLayer> {
        let overlay = self.overlay(rec);
        let upper = overlay.container_dir.join("upper");
        let mut ingest = self.load_options().ingest();
        // The container's own files: its setuid bits and file capabilities are kept
        // (they are already on this host's disk, in its upper directory).
        ingest.unpack.preserve_privileged_bits = true;
        berth_image::diff::ingest_upper_diff_clamped(
            self.store(),
            &upper,
            &overlay.lower_dirs(),
            &crate::changes::INIT_LAYER,
            crate::changes::owner_shift(rec),
            &ingest,
            clamp_mtime,
        )
        .map_err(|e| {
            let msg = format!("commit of container {}: {e}", rec.id);
            if e.is_no_space() {
                EngineError::new(berth_types::ErrorKind::Unavailable, msg)
            } else {
                EngineError::internal(msg)
            }
        })
    }

    /// A build step's commit (Docker's `CommitBuildStep`): the stopped container's
    /// changes over its image, with `config` as the new image's config as it is (no
    /// merge with the container's), `container_config` kept as Docker keeps it (the
    /// build cache compares it) and `created_by` in the history. No event.
    pub(crate) fn commit_build_step(
        &self,
        container: &str,
        config: RunConfig,
        container_config: &RunConfig,
        created_by: String,
        author: Option<String>,
        epoch: Option<u64>,
    ) -> Result<berth_types::Digest> {
        let rec = self.container(container)?;
        let (base, _) = self.resolve(&rec.image_id.to_string())?;
        let layer = self.container_layer(&rec, epoch)?;
        let mut extra = Map::new();
        // A reproducible build names no container (its ID is random).
        if epoch.is_none() {
            extra.insert("container".into(), json!(rec.id));
        }
        extra.insert(
            "container_config".into(),
            serde_json::to_value(container_config).unwrap_or(Value::Null),
        );
        Ok(derive_image(
            self.store(),
            Derivation {
                base: Some(base),
                steps: vec![Step {
                    layer: Some(layer),
                    stored: None,
                    history: History {
                        created_by: Some(created_by),
                        ..Default::default()
                    },
                }],
                config,
                author,
                extra,
                tags: Vec::new(),
                source: "build".into(),
                created: epoch.map(crate::build::epoch_rfc3339),
            },
        )?)
    }

    /// `POST /commit` (see the module docs); returns the new image's ID.
    #[instrument(skip_all, fields(container.id = %name))]
    pub fn commit_container(&self, name: &str, opts: &CommitOptions) -> Result<String> {
        let rec = self.container(name)?;
        let state = self.container_state(&rec.id)?;
        if state == ContainerState::Dead {
            return Err(EngineError::conflict(format!(
                "You cannot commit container {} which is Dead",
                rec.id
            )));
        }
        let reference = if opts.repo.is_empty() {
            None
        } else {
            let tag = (!opts.tag.is_empty()).then_some(opts.tag.as_str());
            let r = Reference::from_repo_tag(&opts.repo, tag)?;
            if r.digest().is_some() {
                return Err(EngineError::invalid(format!(
                    "refusing to create a tag with a digest reference: {}",
                    r.familiar()
                )));
            }
            Some(r)
        };
        let container_config = self.container_run_config(&rec);
        let mut config = opts
            .config
            .clone()
            .unwrap_or_else(|| container_config.clone());
        for c in &opts.changes {
            berth_image::changes::apply_commit_change(&mut config, c)
                .map_err(EngineError::invalid)?;
        }
        merge(&mut config, &container_config);
        let (base, _) = self.resolve(&rec.image_id.to_string()).map_err(|_| {
            EngineError::conflict(format!(
                "container {}: its image {} was removed; nothing to commit upon",
                rec.id, rec.image_id
            ))
        })?;
        // Freeze a running container while its changes are read (Docker ignores a
        // failure to pause).
        let running = matches!(state, ContainerState::Running { .. });
        let paused_here = opts.pause
            && running
            && !self.container_paused(&rec)
            && {
                match self.pause_container(&rec.id) {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(container.id = %rec.id, error = %e, "commit: could not pause the container; committing it running");
                        false
                    }
                }
            };
        let layer = self.container_layer(&rec, None);
        let unpause = |engine: &Engine| {
            if paused_here {
                if let Err(e) = engine.unpause_container(&rec.id) {
                    warn!(container.id = %rec.id, error = %e, "commit: could not unpause the container");
                }
            }
        };
        let layer = match layer {
            Ok(l) => l,
            Err(e) => {
                unpause(self);
                return Err(e);
            }
        };
        let created_by = container_config.cmd.clone().unwrap_or_default().join(" ");
        let mut extra = Map::new();
        extra.insert("container".into(), json!(rec.id));
        extra.insert(
            "container_config".into(),
            serde_json::to_value(&container_config).unwrap_or(Value::Null),
        );
        let derived = derive_image(
            self.store(),
            Derivation {
                base: Some(base),
                steps: vec![Step {
                    layer: Some(layer),
                    stored: None,
                    history: History {
                        created_by: Some(created_by),
                        author: non_empty(&opts.author),
                        comment: non_empty(&opts.comment),
                        ..Default::default()
                    },
                }],
                config,
                author: non_empty(&opts.author),
                extra,
                tags: reference.iter().cloned().collect(),
                source: "commit".into(),
                created: None,
            },
        );
        let id = match derived {
            Ok(id) => id,
            Err(e) => {
                unpause(self);
                return Err(e.into());
            }
        };
        let image_ref = reference.as_ref().map(|r| r.familiar()).unwrap_or_default();
        self.emit_container(
            &rec,
            "commit",
            &[
                ("comment", opts.comment.clone()),
                ("imageID", id.to_string()),
                ("imageRef", image_ref.clone()),
            ],
        );
        unpause(self);
        info!(container.id = %rec.id, image.id = %id, tag = %image_ref, "container committed");
        Ok(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_fills_what_the_user_config_leaves_empty() {
        let base = RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("/srv".into()),
            labels: Some(BTreeMap::from([("a".into(), "1".into())])),
            ..Default::default()
        };
        let mut user = RunConfig {
            env: Some(vec!["A=2".into()]),
            labels: Some(BTreeMap::from([("a".into(), "2".into())])),
            ..Default::default()
        };
        merge(&mut user, &base);
        assert_eq!(
            user.env,
            Some(vec!["A=2".to_string(), "PATH=/bin".to_string()])
        );
        assert_eq!(user.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(user.working_dir.as_deref(), Some("/srv"));
        assert_eq!(
            user.labels.and_then(|l| l.get("a").cloned()).as_deref(),
            Some("2")
        );
    }
}
