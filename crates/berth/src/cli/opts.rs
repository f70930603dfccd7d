//! Parsers for the option values of `create`, `run`, `update`, `logs` and `events`,
//! spelled and checked as the docker CLI checks them: sizes (`512m`), Go durations
//! (`1m30s`), env files, restart policies, ports, `--mount`, `--ulimit`, timestamps.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};

/// go-units `RAMInBytes`: `512m`, `1g`, `1.5GiB`, `100` (binary multiples).
pub fn ram_in_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, rest) = t.split_at(num_end);
    let rest = rest.trim_start_matches(' ').to_ascii_lowercase();
    let invalid = || anyhow::anyhow!("invalid size: '{s}'");
    if num.is_empty() {
        return Err(invalid());
    }
    let n: f64 = num.parse().map_err(|_| invalid())?;
    let unit = rest.strip_suffix('b').unwrap_or(&rest);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(invalid()),
    };
    Ok((n * mult) as i64)
}

/// `--memory-swap`: a size, or `-1` for unlimited.
pub fn mem_swap(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    ram_in_bytes(s)
}

/// Go's `time.ParseDuration`, in nanoseconds: `300ms`, `1m30s`, `2h`, `1.5s`.
pub fn go_duration(s: &str) -> anyhow::Result<i64> {
    let invalid = || anyhow::anyhow!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| anyhow::anyhow!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..end].parse().map_err(|_| invalid())?;
        rest = &rest[end..];
        let uend = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..uend] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => bail!("time: unknown unit {u:?} in duration {s:?}"),
        };
        total += n * mult;
        rest = &rest[uend..];
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// `KEY=VALUE`, or `KEY` alone: the value of the local environment when set (docker's
/// `ValidateEnv`), else `KEY` as is.
pub fn env_entry(s: &str) -> anyhow::Result<String> {
    let (k, _) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        bail!("invalid environment variable: {s}");
    }
    if !s.contains('=') {
        if let Ok(v) = std::env::var(s) {
            return Ok(format!("{s}={v}"));
        }
    }
    Ok(s.to_string())
}

/// The lines of an `--env-file` / `--label-file`: blank lines and `#` comments are
/// skipped, leading whitespace is trimmed.
pub fn read_kv_file(path: &str, env_lookup: bool) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("open {path}: {}", super::os_message(&e)))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') || !line.is_char_boundary(0) {
            bail!("{path}:{}: invalid line", i + 1);
        }
        if let Some((k, _)) = line.split_once('=') {
            if k.is_empty() {
                bail!("invalid environment variable: {line}");
            }
            if k.contains(char::is_whitespace) {
                bail!("variable '{k}' contains whitespaces");
            }
            out.push(line.to_string());
        } else if env_lookup {
            let k = line.trim_end();
            if let Ok(v) = std::env::var(k) {
                out.push(format!("{k}={v}"));
            }
        } else {
            out.push(line.trim_end().to_string());
        }
    }
    Ok(out)
}

/// Labels from `-l k=v` / `--label-file` entries (a key alone has an empty value).
pub fn labels(entries: &[String]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// `--restart no|always|unless-stopped|on-failure[:N]` as the API's RestartPolicy.
pub fn restart_policy(s: &str) -> anyhow::Result<Value> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let max: i64 = match count {
        None => 0,
        Some(c) => c.parse().map_err(|_| {
            anyhow::anyhow!("invalid restart policy format: maximum retry count must be an integer")
        })?,
    };
    match name {
        "" | "no" | "always" | "unless-stopped" if count.is_some() => {
            bail!("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
        }
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => bail!("invalid restart policy format: unknown policy '{other}'"),
    }
    Ok(json!({ "Name": if name.is_empty() { "no" } else { name }, "MaximumRetryCount": max }))
}

/// `--ulimit name=soft[:hard]`.
pub fn ulimit(s: &str) -> anyhow::Result<Value> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (a, b),
        None => (limits, limits),
    };
    let parse = |v: &str| -> anyhow::Result<i64> {
        v.parse()
            .map_err(|_| anyhow::anyhow!("invalid ulimit argument: {s}: bad value {v:?}"))
    };
    let (soft, hard) = (parse(soft)?, parse(hard)?);
    if soft > hard {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(json!({ "Name": name, "Hard": hard, "Soft": soft }))
}

/// `--device-read-bps /dev/sda:1mb`.
pub fn throttle_bps(s: &str) -> anyhow::Result<Value> {
    let (path, rate) = s
        .rsplit_once(':')
        .filter(|(p, _)| p.starts_with("/dev/"))
        .ok_or_else(|| anyhow::anyhow!("bad format: {s}"))?;
    let rate = ram_in_bytes(rate)
        .map_err(|_| anyhow::anyhow!("invalid rate for device: {s}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb"))?;
    Ok(json!({ "Path": path, "Rate": rate }))
}

/// `--sysctl k=v`.
pub fn sysctl(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("sysctl '{s}' is not allowed"),
    }
}

/// `--device /dev/x[:/dev/y[:rwm]]`.
pub fn device(s: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.chars().all(|x| "rwm".contains(x)) && !c.is_empty() => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => bail!("invalid device specification: {s}"),
    };
    Ok(json!({ "PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms }))
}

/// `-v` entries: `/path` is an anonymous volume (Config.Volumes); `src:dst[:opts]` a
/// bind or a named volume (HostConfig.Binds). A relative source (`./x`) is made
/// absolute, as the docker CLI does.
pub fn volume(s: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [""] => bail!("invalid empty volume spec"),
        [one] => Ok((Some((*one).to_string()), None)),
        [src, rest @ ..] if rest.len() <= 2 => {
            if src.is_empty() {
                bail!("invalid spec: {s}: empty section between colons");
            }
            let src = if src.starts_with('.') {
                let cwd = std::env::current_dir().context("the current directory")?;
                let joined = cwd.join(src);
                joined.to_string_lossy().into_owned()
            } else {
                (*src).to_string()
            };
            Ok((None, Some(format!("{src}:{}", rest.join(":")))))
        }
        _ => bail!("invalid spec: {s}: too many colons"),
    }
}

/// `--tmpfs /path[:options]`.
pub fn tmpfs(s: &str) -> (String, String) {
    match s.split_once(':') {
        Some((p, o)) => (p.to_string(), o.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `--mount type=bind,source=/x,target=/y,readonly` as an API Mount.
pub fn mount(s: &str) -> anyhow::Result<Value> {
    let mut m = Map::new();
    let mut kind = "volume".to_string();
    let mut bind = Map::new();
    let mut vol = Map::new();
    let mut tmp = Map::new();
    let mut vol_labels = Map::new();
    for field in s.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let flag = |v: Option<&str>| -> anyhow::Result<bool> {
            match v {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(x) => bail!("invalid value for {k}: {x}"),
            }
        };
        let need = |v: Option<&str>| -> anyhow::Result<String> {
            v.map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("invalid field '{field}' must be a key=value pair"))
        };
        match k.as_str() {
            "type" => kind = need(v)?,
            "source" | "src" => {
                m.insert("Source".into(), json!(need(v)?));
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), json!(need(v)?));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(flag(v)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(need(v)?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(need(v)?));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(flag(v)?));
            }
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), json!(flag(v)?));
            }
            "volume-driver" => {
                vol.insert("DriverConfig".into(), json!({ "Name": need(v)? }));
            }
            "volume-label" => {
                let l = need(v)?;
                let (lk, lv) = l.split_once('=').unwrap_or((&l, ""));
                vol_labels.insert(lk.to_string(), json!(lv));
            }
            "volume-subpath" => {
                vol.insert("Subpath".into(), json!(need(v)?));
            }
            "tmpfs-size" => {
                tmp.insert("SizeBytes".into(), json!(ram_in_bytes(&need(v)?)?));
            }
            "tmpfs-mode" => {
                let mode = need(v)?;
                let n = u32::from_str_radix(&mode, 8)
                    .map_err(|_| anyhow::anyhow!("invalid value for {k}: {mode}"))?;
                tmp.insert("Mode".into(), json!(n));
            }
            _ => bail!("unexpected key '{k}' in '{field}'"),
        }
    }
    if !m.contains_key("Target") {
        bail!("target is required");
    }
    m.insert("Type".into(), json!(kind));
    if !vol_labels.is_empty() {
        vol.insert("Labels".into(), Value::Object(vol_labels));
    }
    match kind.as_str() {
        "bind" => {
            if !vol.is_empty() || !tmp.is_empty() {
                bail!("cannot mix 'volume-*' or 'tmpfs-*' options with mount type 'bind'");
            }
            if !bind.is_empty() {
                m.insert("BindOptions".into(), Value::Object(bind));
            }
        }
        "volume" => {
            if !bind.is_empty() || !tmp.is_empty() {
                bail!("cannot mix 'bind-*' or 'tmpfs-*' options with mount type 'volume'");
            }
            if !vol.is_empty() {
                m.insert("VolumeOptions".into(), Value::Object(vol));
            }
        }
        "tmpfs" => {
            if !bind.is_empty() || !vol.is_empty() {
                bail!("cannot mix 'bind-*' or 'volume-*' options with mount type 'tmpfs'");
            }
            if !tmp.is_empty() {
                m.insert("TmpfsOptions".into(), Value::Object(tmp));
            }
        }
        _ => {}
    }
    Ok(Value::Object(m))
}

/// `-p [ip:][hostPort:]containerPort[/proto]` (port ranges `8000-8001:80-81`):
/// `(exposed "80/tcp", binding {"HostIp","HostPort"})` pairs.
pub fn publish(s: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| anyhow::anyhow!("invalid ip address: {s}"))?;
        (
            ip.to_string(),
            after.strip_prefix(':').unwrap_or(after).to_string(),
        )
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_] | [_, _] => (String::new(), spec.to_string()),
            [ip, h, c] => ((*ip).to_string(), format!("{h}:{c}")),
            _ => bail!("invalid port format for --publish: {s}"),
        }
    };
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h.to_string(), c.to_string()),
        None => (String::new(), rest.clone()),
    };
    let range = |r: &str| -> anyhow::Result<(u16, u16)> {
        let bad = || anyhow::anyhow!("invalid containerPort: {r}");
        match r.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                Ok((a, b))
            }
            None => {
                let p = r.parse().map_err(|_| bad())?;
                Ok((p, p))
            }
        }
    };
    if ctr.is_empty() {
        bail!("no port specified: {s}<empty>");
    }
    let (c0, c1) = range(&ctr)?;
    let hosts: Vec<String> = if host.is_empty() {
        vec![String::new(); usize::from(c1 - c0) + 1]
    } else {
        let (h0, h1) = range(&host).map_err(|_| anyhow::anyhow!("invalid hostPort: {host}"))?;
        if h1 - h0 == c1 - c0 {
            (h0..=h1).map(|p| p.to_string()).collect()
        } else if c0 == c1 {
            // A host range for one container port: the daemon picks one of them.
            vec![format!("{h0}-{h1}")]
        } else {
            bail!("invalid ranges specified for container and host Ports: {ctr} and {host}");
        }
    };
    Ok((c0..=c1)
        .zip(hosts.into_iter().chain(std::iter::repeat(String::new())))
        .map(|(c, h)| {
            (
                format!("{c}/{proto}"),
                json!({ "HostIp": ip, "HostPort": h }),
            )
        })
        .collect())
}

/// `--add-host host:ip` (or `host=ip`), checked as the docker CLI checks it and sent as
/// given.
pub fn add_host(s: &str) -> anyhow::Result<String> {
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| anyhow::anyhow!("bad format for add-host: {s:?}"))?;
    if host.is_empty() {
        bail!("bad format for add-host: {s:?}");
    }
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    if bare != "host-gateway" && bare.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid IP address in add-host: {ip:?}");
    }
    Ok(s.to_string())
}

/// `--expose 80[-81][/proto]`.
pub fn expose(s: &str) -> anyhow::Result<Vec<String>> {
    let (p, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let bad = || anyhow::anyhow!("invalid range format for --expose: {s}");
    let (a, b): (u16, u16) = match p.split_once('-') {
        Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
        None => {
            let x = p.parse().map_err(|_| bad())?;
            (x, x)
        }
    };
    Ok((a..=b).map(|x| format!("{x}/{proto}")).collect())
}

/// docker's `timetypes.GetTimestamp`: a Go duration (`10m`, relative to now), Unix
/// seconds (`1700000000[.5]`), or a date (`2026-01-02`, `2026-01-02T15:04:05[Z]`,
/// RFC 3339), as the `seconds.nanoseconds` the API takes.
pub fn timestamp(value: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    if let Ok(d) = go_duration(value) {
        if value.chars().any(|c| c.is_ascii_alphabetic()) {
            let t = now - chrono::Duration::nanoseconds(d);
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if !value.contains(['-', ':', 'T', 'Z'])
        || value.starts_with('-') && value[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
        if secs.parse::<i64>().is_ok()
            && frac.chars().all(|c| c.is_ascii_digit())
            && frac.len() <= 9
        {
            return Ok(if frac.is_empty() {
                secs.to_string()
            } else {
                format!("{secs}.{frac:0<9}")
            });
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    // Dates without a zone are local time, as Go's time.ParseInLocation(..., time.Local).
    use chrono::TimeZone as _;
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H",
        "%Y-%m-%d",
    ] {
        let parsed = if f == "%Y-%m-%d" {
            chrono::NaiveDate::parse_from_str(value, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        } else if f == "%Y-%m-%dT%H" {
            chrono::NaiveDateTime::parse_from_str(&format!("{value}:00"), "%Y-%m-%dT%H:%M").ok()
        } else {
            chrono::NaiveDateTime::parse_from_str(value, f).ok()
        };
        if let Some(naive) = parsed {
            if let Some(t) = chrono::Local.from_local_datetime(&naive).earliest() {
                return Ok(format!(
                    "{}.{:09}",
                    t.timestamp(),
                    t.timestamp_subsec_nanos()
                ));
            }
        }
    }
    bail!("invalid value for \"since\"/\"until\": {value:?}: expected a duration (10m), a Unix timestamp or an RFC 3339 date")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(ram_in_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("100").unwrap(), 100);
        assert_eq!(ram_in_bytes("1.5k").unwrap(), 1536);
        assert!(ram_in_bytes("12x").is_err());
        assert!(ram_in_bytes("m").is_err());
        assert_eq!(mem_swap("-1").unwrap(), -1);
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration("0").unwrap(), 0);
        assert!(go_duration("10").is_err());
        assert!(go_duration("5x").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            restart_policy("on-failure:3").unwrap(),
            json!({"Name":"on-failure","MaximumRetryCount":3})
        );
        assert_eq!(restart_policy("no").unwrap()["Name"], "no");
        assert!(restart_policy("always:2").is_err());
        assert!(restart_policy("sometimes").is_err());
    }

    #[test]
    fn ports() {
        let p = publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(p[0].0, "80/tcp");
        assert_eq!(p[0].1, json!({"HostIp":"127.0.0.1","HostPort":"8080"}));
        let p = publish("8000-8001:80-81/udp").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].0, "81/udp");
        assert_eq!(p[1].1["HostPort"], "8001");
        let p = publish("80").unwrap();
        assert_eq!(p[0].1, json!({"HostIp":"","HostPort":""}));
        let p = publish("[::1]:8080:80").unwrap();
        assert_eq!(p[0].1["HostIp"], "::1");
        assert!(publish("x:80:80:80").is_err());
        let p = publish("127.0.0.1::80").unwrap();
        assert_eq!(p[0].1, json!({"HostIp":"127.0.0.1","HostPort":""}));
        let p = publish("8000-8010:80").unwrap();
        assert_eq!(
            p,
            [(
                "80/tcp".to_string(),
                json!({"HostIp":"","HostPort":"8000-8010"})
            )]
        );
        assert!(publish("8000-8001:80-82").is_err());
        assert!(publish("80/sctpx").is_err());
        assert!(publish("81-80").is_err());
        assert!(publish("").is_err());
        assert_eq!(add_host("db:10.0.0.1").unwrap(), "db:10.0.0.1");
        assert_eq!(add_host("db=::1").unwrap(), "db=::1");
        assert_eq!(add_host("gw:host-gateway").unwrap(), "gw:host-gateway");
        assert!(add_host("db").is_err());
        assert!(add_host(":1.2.3.4").is_err());
        assert_eq!(expose("80-81").unwrap(), ["80/tcp", "81/tcp"]);
    }

    #[test]
    fn mounts() {
        let m = mount("type=bind,source=/srv,target=/data,readonly").unwrap();
        assert_eq!(
            m,
            json!({"Source":"/srv","Target":"/data","ReadOnly":true,"Type":"bind"})
        );
        let m = mount("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1777").unwrap();
        assert_eq!(m["TmpfsOptions"]["SizeBytes"], 64 << 20);
        assert_eq!(m["TmpfsOptions"]["Mode"], 0o1777);
        assert!(mount("type=bind,source=/x").is_err());
        assert!(mount("type=bind,target=/x,bogus=1").is_err());
    }

    #[test]
    fn misc() {
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            json!({"Name":"nofile","Hard":2048,"Soft":1024})
        );
        assert!(ulimit("nofile=2:1").is_err());
        assert_eq!(
            throttle_bps("/dev/sda:1mb").unwrap(),
            json!({"Path":"/dev/sda","Rate":1048576})
        );
        assert_eq!(volume("/data").unwrap(), (Some("/data".into()), None));
        assert_eq!(
            volume("/srv:/data:ro").unwrap(),
            (None, Some("/srv:/data:ro".into()))
        );
        assert_eq!(tmpfs("/run:size=1m"), ("/run".into(), "size=1m".into()));
        assert_eq!(device("/dev/fuse").unwrap()["CgroupPermissions"], "rwm");
    }

    #[test]
    fn timestamps() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(timestamp("10s", now).unwrap(), "999990.000000000");
        assert_eq!(timestamp("1700000000", now).unwrap(), "1700000000");
        assert_eq!(
            timestamp("1700000000.5", now).unwrap(),
            "1700000000.500000000"
        );
        assert_eq!(
            timestamp("2026-01-01T00:00:00Z", now).unwrap(),
            "1767225600.000000000"
        );
        assert!(timestamp("yesterday", now).is_err());
    }
}
