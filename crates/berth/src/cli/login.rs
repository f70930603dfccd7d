//! `login` and `logout`: credentials kept as Docker keeps them, in
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), `auths.SERVER.auth` =
//! base64 of `user:password`; other keys of the file are left as they are. Pull and push
//! send them to the daemon as `X-Registry-Auth`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};

use http_body_util::BodyExt as _;

use crate::client::{read_all, Client};

/// The key Docker uses for Docker Hub.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug, Args)]
#[command(about = "Log in to a registry")]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: a flag shows in the process list)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
#[command(about = "Log out from a registry")]
pub struct LogoutArgs {
    /// Registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set: set DOCKER_CONFIG to say where credentials live")?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

fn read_config() -> anyhow::Result<Value> {
    let p = config_path()?;
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(json!({})),
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is not JSON", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    }
}

fn write_config(v: &Value) -> anyhow::Result<()> {
    let p = config_path()?;
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    let bytes = serde_json::to_vec_pretty(v).context("encode config.json")?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("replace {}", p.display()))
}

/// The `auths` key for a server as typed (`127.0.0.1:5000`, `https://…`).
fn server_key(server: Option<&str>) -> String {
    match server.map(str::trim).filter(|s| !s.is_empty()) {
        None => DOCKER_HUB_SERVER.to_string(),
        Some(s) => {
            let host = s
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(s);
            if matches!(
                host,
                "docker.io" | "index.docker.io" | "registry-1.docker.io"
            ) {
                DOCKER_HUB_SERVER.to_string()
            } else {
                host.to_string()
            }
        }
    }
}

/// `X-Registry-Auth` for images on `registry` (a reference's domain), from config.json.
pub fn registry_auth_header(registry: &str) -> Option<String> {
    let (user, pass) = credentials(registry)?;
    Some(encode_auth(&user, &pass, &server_key(Some(registry))))
}

/// Docker's `X-Registry-Config` (what `docker build` sends): every stored credential,
/// base64url of the JSON map server → auth config; None when none is stored.
pub fn registry_config_header() -> Option<String> {
    let cfg = read_config().ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let mut out = serde_json::Map::new();
    for (server, entry) in auths {
        let Some(decoded) = entry
            .get("auth")
            .and_then(Value::as_str)
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            continue;
        };
        let Some((user, pass)) = decoded.split_once(':') else {
            continue;
        };
        out.insert(
            server.clone(),
            json!({ "username": user, "password": pass, "serveraddress": server }),
        );
    }
    (!out.is_empty())
        .then(|| base64::engine::general_purpose::URL_SAFE.encode(Value::Object(out).to_string()))
}

/// The stored user and password for images on `registry`.
pub fn credentials(registry: &str) -> Option<(String, String)> {
    let cfg = read_config().ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let key = server_key(Some(registry));
    let entry = auths
        .get(&key)
        .or_else(|| auths.get(&format!("https://{key}")))
        .or_else(|| auths.get(&format!("http://{key}")))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Docker's X-Registry-Auth: base64url of the JSON auth config.
pub fn encode_auth(username: &str, password: &str, server: &str) -> String {
    let v = json!({ "username": username, "password": password, "serveraddress": server });
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

fn prompt(label: &str, hide: bool) -> anyhow::Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let echo_off = hide
        && std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success());
    let mut line = String::new();
    let res = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    res.context("read from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn login(client: &Client, args: LoginArgs) -> anyhow::Result<()> {
    let key = server_key(args.server.as_deref());
    let interactive = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if interactive && !args.password_stdin => prompt("Username: ", false)?,
        None => bail!("must provide --username with --password-stdin"),
    };
    let password = if args.password_stdin {
        if args.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .context("read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match args.password {
            Some(p) => p,
            None if interactive => prompt("Password: ", true)?,
            None => bail!("no password given: use --password-stdin"),
        }
    };
    if username.is_empty() {
        bail!("username is empty");
    }
    let body = json!({ "username": username, "password": password, "serveraddress": key });
    let resp = client
        .post(
            "/auth",
            http_body_util::Full::new(bytes::Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed_unsync(),
            Some("application/json"),
        )
        .await?;
    let answer: Value = serde_json::from_slice(&read_all(resp).await?).unwrap_or_default();
    let mut cfg = read_config()?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    cfg["auths"] = match cfg.get("auths").filter(|a| a.is_object()) {
        Some(a) => a.clone(),
        None => json!({}),
    };
    cfg["auths"][key.as_str()] = json!({ "auth": auth });
    write_config(&cfg)?;
    super::out(&format!(
        "{}\n",
        answer["Status"].as_str().unwrap_or("Login Succeeded")
    ))
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let key = server_key(args.server.as_deref());
    let mut cfg = read_config()?;
    let removed = cfg
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .is_some_and(|a| a.remove(&key).is_some());
    if !removed {
        return super::out(&format!("Not logged in to {key}\n"));
    }
    write_config(&cfg)?;
    super::out(&format!("Removing login credentials for {key}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys() {
        assert_eq!(server_key(None), DOCKER_HUB_SERVER);
        assert_eq!(server_key(Some("docker.io")), DOCKER_HUB_SERVER);
        assert_eq!(server_key(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(
            server_key(Some("https://reg.example:5000/v2/")),
            "reg.example:5000"
        );
    }
}
