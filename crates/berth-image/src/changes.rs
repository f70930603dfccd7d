//! Dockerfile instructions accepted by `import --change`: CMD, ENTRYPOINT, ENV, EXPOSE,
//! LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::{HealthConfig, RunConfig};

const ALLOWED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Instructions `docker commit --change` takes (Docker 20.10's list, plus STOPSIGNAL,
/// which `import` takes too).
const COMMIT_ALLOWED: [&str; 11] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Applies one `docker commit --change` instruction to `cfg`. Another instruction is
/// refused in Docker's words (`run is not a valid change command`).
pub fn apply_commit_change(cfg: &mut RunConfig, line: &str) -> Result<(), String> {
    let line = line.trim();
    let (word, rest) = match line.split_once(|c: char| c.is_whitespace()) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let upper = word.to_ascii_uppercase();
    if !COMMIT_ALLOWED.contains(&upper.as_str()) {
        return Err(format!(
            "{} is not a valid change command",
            word.to_ascii_lowercase()
        ));
    }
    let err = |rule: &str| format!("change '{line}': {rule}");
    match upper.as_str() {
        "ONBUILD" => {
            if rest.is_empty() {
                return Err(err("instruction needs an argument"));
            }
            let first = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(err(&format!("{first} isn't allowed as an ONBUILD trigger")));
            }
            cfg.on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string());
            Ok(())
        }
        "HEALTHCHECK" => {
            cfg.healthcheck = Some(parse_healthcheck(rest).map_err(|e| err(&e))?);
            Ok(())
        }
        "WORKDIR" if !rest.is_empty() && !unquote(rest).starts_with('/') => {
            let base = cfg.working_dir.clone().unwrap_or_default();
            let joined = format!("{}/{}", base.trim_end_matches('/'), unquote(rest));
            let joined = if joined.starts_with('/') {
                joined
            } else {
                format!("/{joined}")
            };
            cfg.working_dir = Some(joined);
            Ok(())
        }
        _ => apply_change(cfg, line),
    }
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--retries=N] CMD ...`
/// or `HEALTHCHECK NONE`.
fn parse_healthcheck(rest: &str) -> Result<HealthConfig, String> {
    let mut h = HealthConfig::default();
    let mut rest = rest.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (word, tail) = flag
            .split_once(|c: char| c.is_whitespace())
            .unwrap_or((flag, ""));
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("flag --{word} needs a value"))?;
        let dur = || parse_duration_ns(v).ok_or_else(|| format!("--{k}: {v:?} is not a duration"));
        match k {
            "interval" => h.interval = Some(dur()?),
            "timeout" => h.timeout = Some(dur()?),
            "start-period" => h.start_period = Some(dur()?),
            "start-interval" => h.start_interval = Some(dur()?),
            "retries" => {
                h.retries = Some(
                    v.parse()
                        .map_err(|_| format!("--retries: {v:?} is not a number"))?,
                )
            }
            other => return Err(format!("unknown flag: --{other}")),
        }
        rest = tail.trim_start();
    }
    let (word, cmd) = rest
        .split_once(|c: char| c.is_whitespace())
        .map(|(w, c)| (w, c.trim()))
        .unwrap_or((rest, ""));
    match word.to_ascii_uppercase().as_str() {
        "NONE" if cmd.is_empty() => h.test = Some(vec!["NONE".into()]),
        "CMD" if !cmd.is_empty() => {
            let exec = cmd
                .starts_with('[')
                .then(|| serde_json::from_str::<Vec<String>>(cmd).ok())
                .flatten();
            h.test = Some(match exec {
                Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                None => vec!["CMD-SHELL".to_string(), cmd.to_string()],
            });
        }
        _ => return Err("expected NONE or CMD followed by a command".into()),
    }
    Ok(h)
}

/// Go's `time.ParseDuration` for the units a health check uses (ns, us, ms, s, m, h).
fn parse_duration_ns(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest.get(..num_end)?.parse().ok()?;
        rest = rest.get(num_end..)?;
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match rest.get(..unit_end)? {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" if n == 0.0 => 0.0,
            _ => return None,
        };
        total += n * mult;
        rest = rest.get(unit_end..)?;
    }
    Some(total as i64)
}

/// Applies one instruction to `cfg`; the error names the change and the rule.
pub fn apply_change(cfg: &mut RunConfig, line: &str) -> Result<(), String> {
    let line = line.trim();
    let (word, rest) = match line.split_once(|c: char| c.is_whitespace()) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let err = |rule: &str| format!("change '{line}': {rule}");
    if rest.is_empty() {
        return Err(err("instruction needs an argument"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(exec_or_shell(rest).map_err(|e| err(&e))?),
        "ENTRYPOINT" => cfg.entrypoint = Some(exec_or_shell(rest).map_err(|e| err(&e))?),
        "ENV" => {
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest).map_err(|e| err(&e))? {
                // Replaced where it stands, else appended (Docker's dispatchEnv).
                let new = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(slot) => *slot = new,
                    None => env.push(new),
                }
            }
        }
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(rest).map_err(|e| err(&e))? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in rest.split_whitespace() {
                for key in expand_port(p).map_err(|e| err(&e))? {
                    ports.insert(key, Value::Object(Default::default()));
                }
            }
        }
        "WORKDIR" => cfg.working_dir = Some(unquote(rest)),
        "USER" => cfg.user = Some(unquote(rest)),
        "STOPSIGNAL" => cfg.stop_signal = Some(unquote(rest)),
        "VOLUME" => {
            let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
            let list: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest)
                    .map_err(|e| err(&format!("not a JSON string array: {e}")))?
            } else {
                rest.split_whitespace().map(unquote).collect()
            };
            for v in list {
                if !v.starts_with('/') {
                    return Err(err(&format!("volume path {v:?} must be absolute")));
                }
                vols.insert(v, Value::Object(Default::default()));
            }
        }
        other => {
            return Err(err(&format!(
                "instruction {other} is not supported (allowed: {ALLOWED})"
            )))
        }
    }
    Ok(())
}

fn exec_or_shell(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return Ok(v);
        }
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Splits `k=v k2="v 2"` (or the legacy `k v w` form) into pairs.
fn key_values(rest: &str) -> Result<Vec<(String, String)>, String> {
    let words = split_words(rest)?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        // Legacy form: `ENV key the rest of the value`.
        let (k, v) = rest
            .split_once(|c: char| c.is_whitespace())
            .ok_or_else(|| "expected key=value or key value".to_string())?;
        return Ok(vec![(k.to_string(), unquote(v))]);
    }
    let mut out = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("{w:?} is not key=value"))?;
        if k.is_empty() {
            return Err(format!("{w:?}: empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn expand_port(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("port {p:?}: protocol must be tcp, udp or sctp"));
    }
    let parse = |x: &str| {
        x.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {p:?}: {x:?} is not a port number"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let n = parse(ports)?;
            (n, n)
        }
    };
    if hi < lo || hi - lo > 1024 {
        return Err(format!("port {p:?}: invalid range"));
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_instructions() {
        let mut c = RunConfig::default();
        for ch in [
            r#"CMD ["/bin/app", "--serve"]"#,
            "ENTRYPOINT /bin/sh -c",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY value with spaces",
            "WORKDIR /srv",
            "USER 1000:1000",
            "EXPOSE 8080 53/udp",
            "LABEL team=platform \"x y\"=z",
            "STOPSIGNAL SIGINT",
            "VOLUME /data",
        ] {
            apply_change(&mut c, ch).expect(ch);
        }
        assert_eq!(
            c.cmd,
            Some(vec!["/bin/app".to_string(), "--serve".to_string()])
        );
        assert_eq!(c.entrypoint.as_deref().map(|e| e.len()), Some(3));
        let env = c.env.expect("env");
        assert!(env.contains(&"B=two words".to_string()));
        assert!(env.contains(&"LEGACY=value with spaces".to_string()));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        let ports = c.exposed_ports.expect("ports");
        assert!(ports.contains_key("8080/tcp") && ports.contains_key("53/udp"));
        assert_eq!(
            c.labels.expect("labels").get("x y").map(String::as_str),
            Some("z")
        );
        assert!(c.volumes.expect("vols").contains_key("/data"));
    }

    #[test]
    fn commit_changes_as_docker() {
        let mut c = RunConfig {
            env: Some(vec!["PATH=/bin".into()]),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        for ch in [
            "ENV DEBUG true",
            "ENV PATH /foo",
            "WORKDIR app",
            "ONBUILD RUN make",
            "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost",
        ] {
            apply_commit_change(&mut c, ch).expect(ch);
        }
        assert_eq!(
            c.env,
            Some(vec!["PATH=/foo".to_string(), "DEBUG=true".to_string()])
        );
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.on_build, Some(vec!["RUN make".to_string()]));
        let h = c.healthcheck.clone().expect("healthcheck");
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(2));
        assert_eq!(
            h.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "wget -q localhost".to_string()
            ])
        );
        assert_eq!(
            apply_commit_change(&mut c, "RUN rm -rf /").expect_err("run"),
            "run is not a valid change command"
        );
        assert!(apply_commit_change(&mut c, "ONBUILD FROM x").is_err());
    }

    #[test]
    fn refuses_bad_changes() {
        let mut c = RunConfig::default();
        for bad in [
            "RUN rm -rf /",
            "EXPOSE 99999",
            "EXPOSE 80/icmp",
            "ENV",
            "VOLUME data",
            "ENV A=\"x",
        ] {
            let e = apply_change(&mut c, bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
