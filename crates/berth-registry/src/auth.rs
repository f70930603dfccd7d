//! Access control: users and their repository permissions, HTTP Basic credentials (with
//! a cache so bcrypt runs once per credential, not once per request), and the Docker
//! token flow (HS256 JWTs scoped to `repository:NAME:ACTIONS`).
//!
//! ```text
//! ROOT/users.toml    version = 1, [[user]] name, password_hash (bcrypt), pull/push/delete patterns
//! ROOT/users.lock    flock(2) held while `berth registry user add/rm` rewrites users.toml
//! ROOT/token.key     the HMAC key tokens are signed with (hex, mode 0600)
//! ```
//!
//! The server re-reads `users.toml` (and a configured htpasswd file) when its mtime
//! changes, at most once a second, and then forgets every cached credential.
//!
//! Patterns: `*` matches any run of characters, `/` included: `team/*` matches `team/a`
//! and `team/a/b`, `*` matches every repository, `team/app` only itself.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `users.toml` in the registry root.
pub const USERS_FILE: &str = "users.toml";
/// The format version written into `users.toml`.
pub const USERS_FORMAT_VERSION: u32 = 1;
/// The token signing key in the registry root.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// bcrypt cost of new password hashes.
pub const BCRYPT_COST: u32 = 11;
/// The `service` of issued tokens and of the `WWW-Authenticate` challenge.
pub const SERVICE: &str = "berth-registry";
/// Lifetime of an issued token.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// How long a verified Basic credential is trusted without running bcrypt again.
pub const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(300);
/// How long a credential that failed is refused without running bcrypt again (a client
/// with a stale password retrying in a loop must not eat the CPU).
pub const FAILED_CREDENTIAL_TTL: Duration = Duration::from_secs(10);
/// Entries of the credential cache at most.
pub const CREDENTIAL_CACHE_MAX: usize = 4096;

/// What the credential cache knows of a `user:password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid(Identity),
    Invalid,
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("user name {name:?} is invalid: {rule}")]
    UserName { name: String, rule: &'static str },
    #[error("repository pattern {pattern:?} is invalid: {rule}")]
    Pattern { pattern: String, rule: &'static str },
    #[error("user {0} already exists; remove it first (berth registry user rm {0})")]
    UserExists(String),
    #[error("user {0} does not exist")]
    UserUnknown(String),
    #[error("hashing the password: {0}")]
    Hash(String),
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> AuthError + 'a {
    move |source| AuthError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

// ---- patterns and permissions ----

/// A repository name pattern; `*` matches any run of characters, `/` included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, AuthError> {
        let bad = |rule| AuthError::Pattern {
            pattern: s.to_string(),
            rule,
        };
        if s.is_empty() || s.len() > 255 {
            return Err(bad("it must have 1 to 255 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b))
        {
            return Err(bad(
                "only lowercase letters, digits, '.', '_', '-', '/' and '*' are allowed",
            ));
        }
        Ok(Pattern(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, repo: &str) -> bool {
        glob(self.0.as_bytes(), repo.as_bytes())
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wildcard match, `*` = any run of bytes (greedy with one backtrack point).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

pub fn parse_patterns(v: &[String]) -> Result<Vec<Pattern>, AuthError> {
    v.iter().map(|s| Pattern::parse(s)).collect()
}

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// Repository patterns per action.
#[derive(Debug, Clone, Default)]
pub struct Perms {
    pub pull: Vec<Pattern>,
    pub push: Vec<Pattern>,
    pub delete: Vec<Pattern>,
}

impl Perms {
    pub fn from_strings(
        pull: &[String],
        push: &[String],
        delete: &[String],
    ) -> Result<Perms, AuthError> {
        Ok(Perms {
            pull: parse_patterns(pull)?,
            push: parse_patterns(push)?,
            delete: parse_patterns(delete)?,
        })
    }

    pub fn allows(&self, repo: &str, action: Action) -> bool {
        let list = match action {
            Action::Pull => &self.pull,
            Action::Push => &self.push,
            Action::Delete => &self.delete,
        };
        list.iter().any(|p| p.matches(repo))
    }
}

// ---- users.toml ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    pub version: u32,
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// bcrypt hash (`$2b$…`); never the password.
    pub password_hash: String,
    #[serde(default)]
    pub pull: Vec<String>,
    #[serde(default)]
    pub push: Vec<String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

pub fn validate_user_name(name: &str) -> Result<(), AuthError> {
    let bad = |rule| AuthError::UserName {
        name: name.to_string(),
        rule,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("it must have 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(bad(
            "only letters, digits, '.', '_', '-' and '@' are allowed",
        ));
    }
    Ok(())
}

impl UsersFile {
    /// Reads `ROOT/users.toml`; an absent file is no users.
    pub fn load(root: &Path) -> Result<UsersFile, AuthError> {
        let path = root.join(USERS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(UsersFile {
                    version: USERS_FORMAT_VERSION,
                    users: Vec::new(),
                })
            }
            Err(e) => return Err(io_err(&path, "read")(e)),
        };
        let f: UsersFile = toml::from_str(&text).map_err(|e| AuthError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if f.version != USERS_FORMAT_VERSION {
            return Err(AuthError::Invalid {
                path,
                reason: format!(
                    "format version {} is not supported (this berth reads version {USERS_FORMAT_VERSION})",
                    f.version
                ),
            });
        }
        for u in &f.users {
            validate_user_name(&u.name)?;
            Perms::from_strings(&u.pull, &u.push, &u.delete)?;
        }
        Ok(f)
    }

    /// Writes `ROOT/users.toml` atomically, mode 0600.
    pub fn save(&self, root: &Path) -> Result<(), AuthError> {
        let path = root.join(USERS_FILE);
        let tmp = root.join(format!("{USERS_FILE}.tmp"));
        let text = toml::to_string(self).map_err(|e| AuthError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
        std::fs::File::open(root)
            .and_then(|d| d.sync_all())
            .map_err(io_err(root, "fsync directory"))?;
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "create"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(path, "chmod 0600"))?;
    f.write_all(bytes).map_err(io_err(path, "write"))?;
    f.sync_all().map_err(io_err(path, "fsync"))
}

/// Runs `f` on the users file under `ROOT/users.lock`, then saves it.
fn edit_users(
    root: &Path,
    f: impl FnOnce(&mut UsersFile) -> Result<(), AuthError>,
) -> Result<(), AuthError> {
    std::fs::create_dir_all(root).map_err(io_err(root, "create registry root"))?;
    let lock_path = root.join("users.lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path, "open"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(&lock_path, "lock")(e.into()))?;
    let mut users = UsersFile::load(root)?;
    f(&mut users)?;
    users.save(root)
}

/// Adds a user with a bcrypt hash of `password`.
pub fn add_user(
    root: &Path,
    name: &str,
    password: &str,
    perms: &UserPerms,
) -> Result<(), AuthError> {
    validate_user_name(name)?;
    Perms::from_strings(&perms.pull, &perms.push, &perms.delete)?;
    let hash = bcrypt::hash(password, BCRYPT_COST).map_err(|e| AuthError::Hash(e.to_string()))?;
    edit_users(root, |f| {
        if f.users.iter().any(|u| u.name == name) {
            return Err(AuthError::UserExists(name.to_string()));
        }
        f.users.push(UserEntry {
            name: name.to_string(),
            password_hash: hash,
            pull: perms.pull.clone(),
            push: perms.push.clone(),
            delete: perms.delete.clone(),
        });
        f.users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    })
}

/// Removes a user.
pub fn remove_user(root: &Path, name: &str) -> Result<(), AuthError> {
    edit_users(root, |f| {
        let before = f.users.len();
        f.users.retain(|u| u.name != name);
        if f.users.len() == before {
            return Err(AuthError::UserUnknown(name.to_string()));
        }
        Ok(())
    })
}

/// Pattern strings of a user, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct UserPerms {
    pub pull: Vec<String>,
    pub push: Vec<String>,
    pub delete: Vec<String>,
}

// ---- the server side ----

/// Users read from an htpasswd file (bcrypt entries only) get these permissions.
#[derive(Debug, Clone)]
pub struct HtpasswdSource {
    pub file: PathBuf,
    pub perms: Perms,
}

/// Access settings of a serving registry.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Repositories anyone may pull without credentials (default: none).
    pub anonymous_pull: Vec<Pattern>,
    pub htpasswd: Option<HtpasswdSource>,
}

struct UserRec {
    hash: String,
    perms: Arc<Perms>,
}

type UserTable = HashMap<String, UserRec>;

/// Who is asking: a user, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(n) => n,
        }
    }
}

/// One granted access of a token (`repository`/`registry`, name, actions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Grant>,
}

/// A verified bearer token.
#[derive(Debug, Clone)]
pub struct Token {
    pub identity: Identity,
    pub access: Vec<Grant>,
}

impl Token {
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|g| g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action))
    }
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

/// salted sha256(user, password) -> (the user when valid, `None` when not; until when)
type CredentialCache = HashMap<[u8; 32], (Option<String>, Instant)>;

struct Stamp {
    checked: Instant,
    users_mtime: Option<SystemTime>,
    htpasswd_mtime: Option<SystemTime>,
}

/// The server's view of users, credentials and tokens.
pub struct AccessControl {
    root: PathBuf,
    config: AccessConfig,
    users: RwLock<Arc<UserTable>>,
    stamp: Mutex<Stamp>,
    cache: Mutex<CredentialCache>,
    cache_salt: [u8; 32],
    token_key: [u8; 32],
    bcrypt_slots: tokio::sync::Semaphore,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load_table(root: &Path, config: &AccessConfig) -> Result<UserTable, AuthError> {
    let mut table = UserTable::new();
    if let Some(h) = &config.htpasswd {
        let text = std::fs::read_to_string(&h.file).map_err(io_err(&h.file, "read htpasswd"))?;
        let perms = Arc::new(h.perms.clone());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(AuthError::Invalid {
                    path: h.file.clone(),
                    reason: format!("line {} is not NAME:HASH", i + 1),
                });
            };
            if !hash.starts_with("$2") {
                return Err(AuthError::Invalid {
                    path: h.file.clone(),
                    reason: format!(
                        "line {}: user {name} does not have a bcrypt hash (htpasswd -B); only bcrypt is accepted",
                        i + 1
                    ),
                });
            }
            table.insert(
                name.to_string(),
                UserRec {
                    hash: hash.to_string(),
                    perms: perms.clone(),
                },
            );
        }
    }
    for u in UsersFile::load(root)?.users {
        let perms = Perms::from_strings(&u.pull, &u.push, &u.delete)?;
        table.insert(
            u.name,
            UserRec {
                hash: u.password_hash,
                perms: Arc::new(perms),
            },
        );
    }
    Ok(table)
}

/// Reads (creating, mode 0600) the token signing key.
fn token_key(root: &Path) -> Result<[u8; 32], AuthError> {
    let path = root.join(TOKEN_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|e| AuthError::Invalid {
                path: path.clone(),
                reason: format!("not 64 hex digits: {e}"),
            })?;
            let mode = std::fs::metadata(&path)
                .map_err(io_err(&path, "stat"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(AuthError::Invalid {
                    path,
                    reason: format!(
                        "mode {:o} lets others read the token signing key; chmod 600 it",
                        mode & 0o777
                    ),
                });
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let tmp = root.join(format!("{TOKEN_KEY_FILE}.tmp"));
            write_private(&tmp, hex::encode(key).as_bytes())?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
            Ok(key)
        }
        Err(e) => Err(io_err(&path, "read")(e)),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl AccessControl {
    /// Loads users (and the htpasswd file) and the token key of the registry at `root`.
    pub fn open(root: &Path, config: AccessConfig) -> Result<AccessControl, AuthError> {
        let table = load_table(root, &config)?;
        let key = token_key(root)?;
        let stamp = Stamp {
            checked: Instant::now(),
            users_mtime: mtime(&root.join(USERS_FILE)),
            htpasswd_mtime: config.htpasswd.as_ref().and_then(|h| mtime(&h.file)),
        };
        Ok(AccessControl {
            root: root.to_path_buf(),
            config,
            users: RwLock::new(Arc::new(table)),
            stamp: Mutex::new(stamp),
            cache: Mutex::new(HashMap::new()),
            cache_salt: rand::random(),
            token_key: key,
            bcrypt_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
        })
    }

    pub fn user_count(&self) -> usize {
        self.table().len()
    }

    pub fn anonymous_pull(&self) -> &[Pattern] {
        &self.config.anonymous_pull
    }

    /// The user table, re-read when a file changed (checked at most once a second).
    fn table(&self) -> Arc<UserTable> {
        self.refresh();
        self.users.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn refresh(&self) {
        let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        stamp.checked = Instant::now();
        let um = mtime(&self.root.join(USERS_FILE));
        let hm = self.config.htpasswd.as_ref().and_then(|h| mtime(&h.file));
        if um == stamp.users_mtime && hm == stamp.htpasswd_mtime {
            return;
        }
        match load_table(&self.root, &self.config) {
            Ok(t) => {
                stamp.users_mtime = um;
                stamp.htpasswd_mtime = hm;
                *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                tracing::info!("registry users reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading registry users failed; keeping the previous ones");
            }
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_salt);
        h.update(user.as_bytes());
        h.update([0u8]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// What the cache knows of a credential: no bcrypt.
    pub fn check_cached(&self, user: &str, password: &str) -> Checked {
        // Reload first: a removed user or a changed password must not stay cached.
        self.refresh();
        let key = self.cache_key(user, password);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(&key) {
            Some((Some(name), until)) if *until > Instant::now() && name == user => {
                Checked::Valid(Identity::User(name.clone()))
            }
            Some((None, until)) if *until > Instant::now() => Checked::Invalid,
            _ => Checked::Unknown,
        }
    }

    /// Bounds concurrent bcrypt runs (to the number of CPUs): the server stays responsive
    /// while logins are checked.
    pub fn bcrypt_slots(&self) -> &tokio::sync::Semaphore {
        &self.bcrypt_slots
    }

    /// Verifies a credential with bcrypt (slow: run it off the async threads) and caches
    /// the outcome.
    pub fn verify(&self, user: &str, password: &str) -> Option<Identity> {
        match self.check_cached(user, password) {
            Checked::Valid(id) => return Some(id),
            Checked::Invalid => return None,
            Checked::Unknown => {}
        }
        let table = self.table();
        let valid = table
            .get(user)
            .is_some_and(|rec| bcrypt::verify(password, &rec.hash).unwrap_or(false));
        let key = self.cache_key(user, password);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CREDENTIAL_CACHE_MAX {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CREDENTIAL_CACHE_MAX {
                cache.clear();
            }
        }
        if valid {
            cache.insert(
                key,
                (
                    Some(user.to_string()),
                    Instant::now() + CREDENTIAL_CACHE_TTL,
                ),
            );
            Some(Identity::User(user.to_string()))
        } else {
            cache.insert(key, (None, Instant::now() + FAILED_CREDENTIAL_TTL));
            None
        }
    }

    /// Whether `who` may do `action` on `repo` (users' permissions are read live).
    pub fn allowed(&self, who: &Identity, repo: &str, action: Action) -> bool {
        if action == Action::Pull && self.config.anonymous_pull.iter().any(|p| p.matches(repo)) {
            return true;
        }
        match who {
            Identity::Anonymous => false,
            Identity::User(n) => self
                .table()
                .get(n)
                .is_some_and(|u| u.perms.allows(repo, action)),
        }
    }

    /// Whether `who` still exists (a token outlives nothing it was issued for).
    pub fn exists(&self, who: &Identity) -> bool {
        match who {
            Identity::Anonymous => true,
            Identity::User(n) => self.table().contains_key(n),
        }
    }

    /// Issues a token for `who` granting the requested scopes as far as allowed; a scope
    /// not allowed at all is left out (the Docker token spec's behaviour).
    pub fn issue(&self, who: &Identity, scopes: &[String]) -> Issued {
        let mut access: Vec<Grant> = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            let Some((kind, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let granted: Vec<String> = match kind {
                "repository" => {
                    let mut wanted: Vec<Action> = Vec::new();
                    for a in actions.split(',') {
                        if a == "*" {
                            wanted.extend([Action::Pull, Action::Push, Action::Delete]);
                        } else if let Some(a) = Action::parse(a) {
                            wanted.push(a);
                        }
                    }
                    let mut out: Vec<String> = Vec::new();
                    for a in wanted {
                        if self.allowed(who, name, a) && !out.iter().any(|x| x == a.as_str()) {
                            out.push(a.as_str().to_string());
                        }
                    }
                    out
                }
                "registry" if name == "catalog" && *who != Identity::Anonymous => {
                    vec!["*".to_string()]
                }
                _ => Vec::new(),
            };
            if granted.is_empty() {
                continue;
            }
            match access.iter_mut().find(|g| g.kind == kind && g.name == name) {
                Some(g) => {
                    for a in granted {
                        if !g.actions.contains(&a) {
                            g.actions.push(a);
                        }
                    }
                }
                None => access.push(Grant {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions: granted,
                }),
            }
        }
        let now = now_secs();
        let claims = Claims {
            iss: SERVICE.to_string(),
            sub: match who {
                Identity::Anonymous => String::new(),
                Identity::User(n) => n.clone(),
            },
            aud: SERVICE.to_string(),
            exp: now + TOKEN_TTL.as_secs(),
            nbf: now.saturating_sub(10),
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64(&serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let sig = b64(&self.sign(signing_input.as_bytes()));
        Issued {
            token: format!("{signing_input}.{sig}"),
            expires_in: TOKEN_TTL.as_secs(),
            issued_at: chrono::Utc::now(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        match <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.token_key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts a 32-byte key"),
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut m = self.mac();
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }

    /// Checks a token's signature, audience and lifetime; `None` if it is not valid.
    pub fn verify_token(&self, token: &str) -> Option<Token> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&engine.decode(header).ok()?).ok()?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return None;
        }
        let sig = engine.decode(sig).ok()?;
        let mut m = self.mac();
        m.update(signing_input.as_bytes());
        m.verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&engine.decode(payload).ok()?).ok()?;
        let now = now_secs();
        if claims.aud != SERVICE || claims.iss != SERVICE || claims.exp <= now || claims.nbf > now {
            return None;
        }
        let identity = if claims.sub.is_empty() {
            Identity::Anonymous
        } else {
            Identity::User(claims.sub)
        };
        if !self.exists(&identity) {
            return None;
        }
        Some(Token {
            identity,
            access: claims.access,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert!(p("*").matches("a"));
        assert!(p("*").matches("a/b/c"));
        assert!(p("team/*").matches("team/a"));
        assert!(p("team/*").matches("team/a/b"));
        assert!(!p("team/*").matches("team"));
        assert!(!p("team/*").matches("teamx/a"));
        assert!(p("team/app").matches("team/app"));
        assert!(!p("team/app").matches("team/app2"));
        assert!(p("*/app").matches("x/y/app"));
        assert!(p("a*c*e").matches("abcde"));
        assert!(!p("a*c*e").matches("abcdf"));
        assert!(Pattern::parse("Team/*").is_err());
        assert!(Pattern::parse("").is_err());
    }

    fn fast_user(root: &Path, name: &str, pass: &str, perms: UserPerms) {
        // Cost 4 keeps unit tests quick; the CLI uses BCRYPT_COST.
        let hash = bcrypt::hash(pass, 4).unwrap();
        edit_users(root, |f| {
            f.users.push(UserEntry {
                name: name.into(),
                password_hash: hash,
                pull: perms.pull,
                push: perms.push,
                delete: perms.delete,
            });
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn users_tokens_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fast_user(
            root,
            "alice",
            "pw",
            UserPerms {
                pull: vec!["*".into()],
                push: vec!["team/*".into()],
                delete: vec![],
            },
        );
        let text = std::fs::read_to_string(root.join(USERS_FILE)).unwrap();
        assert!(
            text.contains("version = 1") && !text.contains("\"pw\""),
            "{text}"
        );
        let ac = AccessControl::open(root, AccessConfig::default()).unwrap();
        let key_mode = std::fs::metadata(root.join(TOKEN_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        assert_eq!(ac.check_cached("alice", "pw"), Checked::Unknown);
        assert_eq!(
            ac.verify("alice", "pw"),
            Some(Identity::User("alice".into()))
        );
        assert_eq!(
            ac.check_cached("alice", "pw"),
            Checked::Valid(Identity::User("alice".into()))
        );
        assert_eq!(ac.verify("alice", "nope"), None);
        assert_eq!(ac.check_cached("alice", "nope"), Checked::Invalid);
        assert_eq!(ac.verify("bob", "pw"), None);
        let alice = Identity::User("alice".into());
        assert!(ac.allowed(&alice, "team/app", Action::Push));
        assert!(!ac.allowed(&alice, "other/app", Action::Push));
        assert!(!ac.allowed(&Identity::Anonymous, "team/app", Action::Pull));

        let t = ac.issue(
            &alice,
            &[
                "repository:team/app:pull,push,delete".into(),
                "repository:x:push".into(),
            ],
        );
        let tok = ac.verify_token(&t.token).unwrap();
        assert_eq!(tok.identity, alice);
        assert!(tok.grants("repository", "team/app", "pull"));
        assert!(tok.grants("repository", "team/app", "push"));
        assert!(!tok.grants("repository", "team/app", "delete"));
        assert!(!tok.grants("repository", "x", "push"));
        // Tampered payload: refused.
        let mut parts: Vec<&str> = t.token.split('.').collect();
        let forged = b64(br#"{"iss":"berth-registry","sub":"alice","aud":"berth-registry","exp":99999999999,"nbf":0,"iat":0,"jti":"x","access":[{"type":"repository","name":"x","actions":["push"]}]}"#);
        parts[1] = &forged;
        assert!(ac.verify_token(&parts.join(".")).is_none());

        // Removing the user: after the reload, the cache and the tokens are void.
        remove_user(root, "alice").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(ac.check_cached("alice", "pw"), Checked::Unknown);
        assert!(ac.verify_token(&t.token).is_none());
        assert!(matches!(
            remove_user(root, "alice"),
            Err(AuthError::UserUnknown(_))
        ));
    }

    #[test]
    fn htpasswd_users_get_the_configured_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let ht = dir.path().join("htpasswd");
        std::fs::write(
            &ht,
            format!("# comment\ncarol:{}\n", bcrypt::hash("s3", 4).unwrap()),
        )
        .unwrap();
        let config = AccessConfig {
            anonymous_pull: vec![Pattern::parse("public/*").unwrap()],
            htpasswd: Some(HtpasswdSource {
                file: ht,
                perms: Perms::from_strings(&["*".into()], &[], &[]).unwrap(),
            }),
        };
        let ac = AccessControl::open(dir.path(), config).unwrap();
        let carol = ac.verify("carol", "s3").unwrap();
        assert!(ac.allowed(&carol, "a/b", Action::Pull));
        assert!(!ac.allowed(&carol, "a/b", Action::Push));
        assert!(ac.allowed(&Identity::Anonymous, "public/x", Action::Pull));
        assert!(!ac.allowed(&Identity::Anonymous, "public/x", Action::Push));
    }
}
