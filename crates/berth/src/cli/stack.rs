//! `stack deploy|ls|services|ps|rm`, as docker 28's CLI does them: the compose file is
//! read and converted here, on the client ([`compose`], [`convert`]), into networks,
//! secrets, configs and services the daemon's swarm API creates; every object of a stack
//! carries the label `com.docker.stack.namespace=NAME`, which is how the other verbs
//! find them.
//!
//! `deploy` (docker's order): it checks the daemon is a swarm manager, prunes the
//! stack's services the files no longer have (`--prune`), creates the stack's networks
//! that are missing (checking that external ones exist), creates or updates its secrets
//! and configs, then creates each service or updates it (read-modify-write with its
//! version, keeping its `ForceUpdate`, and its image when the file's image did not
//! change; the daemon keeps the ports it published). An unchanged service is sent the
//! spec it has and starts no new task. With `--detach=false` it then follows the
//! services until they converge, as `service create` does.
//!
//! Deliberate differences from docker:
//! - The whole file is converted before anything is created: a service that cannot be
//!   converted (an undefined network, a bad CPU count, an unreadable secret file) leaves
//!   the engine as it was, where docker would already have created the networks.
//! - berth never pulls: `--resolve-image` and `--with-registry-auth` are accepted and
//!   change nothing; the images must be on the host, and the daemon refuses a service
//!   whose image is not.
//! - `depends_on` is named in the "Ignoring unsupported options" line (docker drops it
//!   silently); `tmpfs` and `group_add` are honoured (docker drops them silently); a
//!   port with a host address is refused (docker drops the address with a warning).
//! - `stack rm --detach=false` waits for the stack's task containers to be gone before
//!   it removes the networks.

mod compose;
mod convert;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::service::{self, Await};
use super::volume::natural_less;
use crate::client::{path_escape, read_all, Client, Query};
use crate::format::{self, Fields, ListFormat};
use convert::{Namespace, LABEL_IMAGE, LABEL_NAMESPACE};

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum StackVerb {
    /// Deploy a new stack or update an existing stack
    #[command(visible_alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the tasks in the stack
    Ps(PsArgs),
    /// Remove one or more stacks
    #[command(visible_aliases = ["remove", "down"])]
    Rm(RmArgs),
    /// List the services in the stack
    Services(ServicesArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Path to a Compose file, or "-" to read from stdin
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "strings",
        value_delimiter = ','
    )]
    pub compose_files: Vec<String>,
    /// Prune services that are no longer referenced
    #[arg(long)]
    pub prune: bool,
    /// Query the registry to resolve image digest and supported platforms ("always",
    /// "changed", "never"); berth never queries a registry
    #[arg(long, value_name = "string", default_value = "always")]
    pub resolve_image: String,
    /// Send registry authentication details to Swarm agents (accepted; berth never pulls)
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Exit immediately instead of waiting for the stack services to converge (default
    /// true)
    #[arg(
        short,
        long,
        value_name = "bool",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub detach: Option<bool>,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "STACK")]
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (id=, label=, mode=, name=)
    #[arg(short, long = "filter", value_name = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    #[arg(value_name = "STACK")]
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (desired-state=, id=, name=, node=,
    /// service=)
    #[arg(short, long = "filter", value_name = "filter")]
    pub filters: Vec<String>,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not map IDs to Names
    #[arg(long)]
    pub no_resolve: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a
    /// Go-template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    #[arg(value_name = "STACK")]
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not wait for stack removal (default true)
    #[arg(
        short,
        long,
        value_name = "bool",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub detach: Option<bool>,
    #[arg(required = true, value_name = "STACK")]
    pub stacks: Vec<String>,
}

pub async fn run(client: &Client, verb: StackVerb) -> anyhow::Result<()> {
    match verb {
        StackVerb::Deploy(a) => deploy(client, a).await,
        StackVerb::Ls(a) => ls(client, a).await,
        StackVerb::Ps(a) => ps(client, a).await,
        StackVerb::Rm(a) => rm(client, a).await,
        StackVerb::Services(a) => services(client, a).await,
    }
}

/// docker's `validateStackName`: not only blanks and quotes.
fn validate_stack_name(name: &str) -> anyhow::Result<()> {
    if name
        .trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .is_empty()
    {
        bail!("invalid stack name: {name:?}");
    }
    Ok(())
}

/// `{"label": {"com.docker.stack.namespace=NAME": true}}` plus the user's filters.
fn stack_filter(
    namespace: &str,
    user: &[String],
) -> anyhow::Result<BTreeMap<String, Map<String, Value>>> {
    let mut filters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(f) = format::filters_json(user)? {
        filters = serde_json::from_str(&f)?;
    }
    filters
        .entry("label".into())
        .or_default()
        .insert(format!("{LABEL_NAMESPACE}={namespace}"), Value::Bool(true));
    Ok(filters)
}

fn filter_query(
    path: &str,
    filters: BTreeMap<String, Map<String, Value>>,
) -> anyhow::Result<String> {
    Ok(Query::new(path)
        .opt("filters", format::add_filters(filters)?.as_deref())
        .build())
}

/// The objects (`services`, `networks`, `secrets`, `configs`) of a stack.
async fn stack_objects(client: &Client, kind: &str, namespace: &str) -> anyhow::Result<Vec<Value>> {
    client
        .get_json(&filter_query(
            &format!("/{kind}"),
            stack_filter(namespace, &[])?,
        )?)
        .await
}

fn spec_name(v: &Value) -> &str {
    service::str_at(v, "/Spec/Name")
}

// ------------------------------------------------------------------------ deploy

/// Reads the compose files (`-` is stdin); the directory relative paths are taken from.
/// The compose files read: each one's name (for messages) and contents.
type ComposeFiles = Vec<(String, Vec<u8>)>;

fn read_compose_files(files: &[String]) -> anyhow::Result<(ComposeFiles, PathBuf)> {
    let Some(first) = files.first() else {
        bail!("Please specify a Compose file (with --compose-file)");
    };
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("the current directory: {}", super::os_message(&e)))?;
    let working_dir = if first == "-" && files.len() == 1 {
        cwd.clone()
    } else {
        let abs = cwd.join(first);
        abs.parent().map_or_else(|| cwd.clone(), Path::to_path_buf)
    };
    let mut out = Vec::new();
    for f in files {
        let bytes = if f == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
                .map_err(|e| anyhow::anyhow!("reading the compose file from stdin: {e}"))?;
            b
        } else {
            std::fs::read(f).map_err(|e| anyhow::anyhow!("open {f}: {}", super::os_message(&e)))?
        };
        out.push((f.clone(), bytes));
    }
    Ok((out, working_dir))
}

async fn deploy(client: &Client, args: DeployArgs) -> anyhow::Result<()> {
    validate_stack_name(&args.stack)?;
    if !matches!(args.resolve_image.as_str(), "always" | "changed" | "never") {
        bail!(
            "invalid option {} for flag --resolve-image",
            args.resolve_image
        );
    }
    let (files, working_dir) = read_compose_files(&args.compose_files)?;
    let env: compose::Env = std::env::vars().collect();
    let loaded = compose::load(&files, &working_dir, &env)?;
    let warnings = loaded.warnings();
    if !warnings.is_empty() {
        eprint!("{warnings}");
    }
    let detach = args.detach.unwrap_or(true);
    if args.detach.is_none() {
        eprintln!(
            "Since --detach=false was not specified, tasks will be created in the background.\n\
             In a future release, --detach=false will become the default."
        );
    }
    check_swarm_manager(client).await?;
    let ns = Namespace(args.stack.clone());
    let mut plan = convert::plan(&ns, &loaded.config)?;

    if args.prune {
        let keep: HashSet<&str> = plan
            .services
            .iter()
            .map(|s| s.short_name.as_str())
            .collect();
        prune_services(client, &ns, &keep).await;
    }
    check_external_networks(client, &plan.external_networks).await?;
    create_networks(client, &ns, &plan.networks).await?;
    create_file_objects(client, "secret", &plan.secrets).await?;
    create_file_objects(client, "config", &plan.configs).await?;
    for sp in &mut plan.services {
        for (kind, refs) in [("secret", &mut sp.secrets), ("config", &mut sp.configs)] {
            resolve_references(client, kind, refs)
                .await
                .map_err(|e| anyhow::anyhow!("service {}: {e:#}", sp.short_name))?;
        }
        let cs = sp
            .spec
            .get_mut("TaskTemplate")
            .and_then(|t| t.get_mut("ContainerSpec"))
            .and_then(Value::as_object_mut);
        if let Some(cs) = cs {
            if !sp.secrets.is_empty() {
                cs.insert("Secrets".into(), json!(sp.secrets));
            }
            if !sp.configs.is_empty() {
                cs.insert("Configs".into(), json!(sp.configs));
            }
        }
    }
    let deployed = deploy_services(client, &ns, plan.services).await?;
    if detach {
        return Ok(());
    }
    let mut errors = Vec::new();
    for (id, what) in deployed {
        if let Err(e) = service::wait_on_service(client, &id, what, args.quiet).await {
            errors.push(format!("{id}: {e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// docker's `checkDaemonIsSwarmManager`.
async fn check_swarm_manager(client: &Client) -> anyhow::Result<()> {
    let info: Value = client.get_json("/info").await?;
    if info
        .pointer("/Swarm/ControlAvailable")
        .and_then(Value::as_bool)
        != Some(true)
    {
        bail!(
            "this node is not a swarm manager. Use \"berth swarm init\" (or \"docker swarm init\") to make it one and try again"
        );
    }
    Ok(())
}

/// Removes the stack's services that are not in `keep` (their names in the file).
async fn prune_services(client: &Client, ns: &Namespace, keep: &HashSet<&str>) {
    let services = match stack_objects(client, "services", &ns.0).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Failed to list services: {e:#}");
            return;
        }
    };
    let gone: Vec<Value> = services
        .into_iter()
        .filter(|s| !keep.contains(ns.descope(spec_name(s))))
        .collect();
    remove_services(client, gone).await;
}

/// Removes services, by name, as `stack rm` does; whether one failed.
async fn remove_services(client: &Client, mut services: Vec<Value>) -> bool {
    services.sort_by(|a, b| spec_name(a).cmp(spec_name(b)));
    let mut failed = false;
    for s in &services {
        if super::out(&format!("Removing service {}\n", spec_name(s))).is_err() {
            failed = true;
        }
        let path = format!("/services/{}", path_escape(service::id_of(s)));
        if let Err(e) = client
            .request(hyper::Method::DELETE, &path, crate::client::empty(), None)
            .await
        {
            failed = true;
            eprintln!("Failed to remove service {}: {e:#}", service::id_of(s));
        }
    }
    failed
}

/// docker's `validateExternalNetworks`: a user-defined external network must exist and
/// be swarm-scoped.
async fn check_external_networks(client: &Client, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        if !convert::is_user_defined(name) {
            continue;
        }
        match client
            .get_json::<Value>(&format!("/networks/{}", path_escape(name)))
            .await
        {
            Ok(n) => {
                let scope = service::str_at(&n, "/Scope");
                if scope != "swarm" {
                    bail!(
                        "network {name:?} is declared as external, but it is not in the right scope: {scope:?} instead of \"swarm\""
                    );
                }
            }
            Err(e) if service::is_not_found(&e) => bail!(
                "network {name:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn create_networks(
    client: &Client,
    ns: &Namespace,
    networks: &[(String, Value)],
) -> anyhow::Result<()> {
    let existing: HashSet<String> = stack_objects(client, "networks", &ns.0)
        .await?
        .iter()
        .map(|n| service::str_at(n, "/Name").to_string())
        .collect();
    for (name, body) in networks {
        if existing.contains(name) {
            continue;
        }
        super::out(&format!("Creating network {name}\n"))?;
        client
            .post_body("/networks/create", body)
            .await
            .map_err(|e| anyhow::anyhow!("failed to create network {name}: {e:#}"))?;
    }
    Ok(())
}

/// Creates the secrets (or configs) that do not exist, updates those that do.
async fn create_file_objects(client: &Client, kind: &str, specs: &[Value]) -> anyhow::Result<()> {
    for spec in specs {
        let name = service::str_at(spec, "/Name");
        match client
            .get_json::<Value>(&format!("/{kind}s/{}", path_escape(name)))
            .await
        {
            Ok(existing) => {
                let q = Query::new(format!(
                    "/{kind}s/{}/update",
                    path_escape(service::id_of(&existing))
                ))
                .arg("version", service::version_of(&existing).to_string());
                client
                    .post_body(&q.build(), spec)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to update {kind} {name}: {e:#}"))?;
            }
            Err(e) if service::is_not_found(&e) => {
                super::out(&format!("Creating {kind} {name}\n"))?;
                client
                    .post_body(&format!("/{kind}s/create"), spec)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to create {kind} {name}: {e:#}"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills the IDs of the secrets (or configs) a service references, found by name.
async fn resolve_references(client: &Client, kind: &str, refs: &mut [Value]) -> anyhow::Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    let name_key = if kind == "secret" {
        "SecretName"
    } else {
        "ConfigName"
    };
    let id_key = if kind == "secret" {
        "SecretID"
    } else {
        "ConfigID"
    };
    let mut names = Map::new();
    for r in refs.iter() {
        names.insert(
            service::str_at(r, &format!("/{name_key}")).to_string(),
            json!(true),
        );
    }
    let filters = BTreeMap::from([("name".to_string(), names)]);
    let found: Vec<Value> = client
        .get_json(&filter_query(&format!("/{kind}s"), filters)?)
        .await?;
    let ids: HashMap<&str, &str> = found
        .iter()
        .map(|o| (spec_name(o), service::id_of(o)))
        .collect();
    for r in refs.iter_mut() {
        let name = service::str_at(r, &format!("/{name_key}")).to_string();
        let Some(id) = ids.get(name.as_str()) else {
            bail!("{kind} not found: {name}");
        };
        if let Some(o) = r.as_object_mut() {
            o.insert(id_key.into(), json!(id));
        }
    }
    Ok(())
}

/// Creates or updates each service; the IDs and what to wait for on each.
async fn deploy_services(
    client: &Client,
    ns: &Namespace,
    services: Vec<convert::ServicePlan>,
) -> anyhow::Result<Vec<(String, Await)>> {
    let existing: HashMap<String, Value> = stack_objects(client, "services", &ns.0)
        .await?
        .into_iter()
        .map(|s| (spec_name(&s).to_string(), s))
        .collect();
    let mut out = Vec::new();
    for sp in services {
        let name = sp.name;
        let mut spec = Value::Object(sp.spec);
        match existing.get(&name) {
            Some(svc) => {
                let id = service::id_of(svc).to_string();
                super::out(&format!("Updating service {name} (id: {id})\n"))?;
                let current = svc.get("Spec").unwrap_or(&Value::Null);
                // The image as the file wrote it did not change: keep the one the
                // service has (it may be pinned to a digest).
                let image = service::str_at(&spec, "/TaskTemplate/ContainerSpec/Image").to_string();
                let recorded = current
                    .pointer("/Labels")
                    .and_then(|l| l.get(LABEL_IMAGE))
                    .and_then(Value::as_str);
                let current_image = service::str_at(current, "/TaskTemplate/ContainerSpec/Image");
                if recorded == Some(image.as_str()) && !current_image.is_empty() {
                    if let Some(i) = spec.pointer_mut("/TaskTemplate/ContainerSpec/Image") {
                        *i = json!(current_image);
                    }
                }
                // Stack deploy has no --force: keep the service's ForceUpdate.
                let force = current
                    .pointer("/TaskTemplate/ForceUpdate")
                    .cloned()
                    .unwrap_or(json!(0));
                if let Some(f) = spec.pointer_mut("/TaskTemplate/ForceUpdate") {
                    *f = force;
                }
                let changed = spec.get("TaskTemplate") != current.get("TaskTemplate");
                service::post_update(client, svc, &spec, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to update service {name}: {e:#}"))?;
                out.push((
                    id,
                    if changed {
                        Await::Update
                    } else {
                        Await::Converge
                    },
                ));
            }
            None => {
                super::out(&format!("Creating service {name}\n"))?;
                let resp = client
                    .post_body("/services/create", &spec)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to create service {name}: {e:#}"))?;
                let v: Value = serde_json::from_slice(&read_all(resp).await?)
                    .map_err(|e| anyhow::anyhow!("the daemon's answer to service create: {e}"))?;
                service::print_warnings(&v);
                out.push((service::id_of(&v).to_string(), Await::Converge));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------- ls

const STACK_FIELDS: Fields = &[("Name", "NAME"), ("Services", "SERVICES")];
const STACK_TABLE: &str = "table {{.Name}}\t{{.Services}}";

async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let fmt = ListFormat::parse(
        args.format.as_deref().unwrap_or(""),
        STACK_TABLE,
        STACK_FIELDS,
    )?;
    let filters = BTreeMap::from([(
        "label".to_string(),
        Map::from_iter([(LABEL_NAMESPACE.to_string(), Value::Bool(true))]),
    )]);
    let services: Vec<Value> = client
        .get_json(&filter_query("/services", filters)?)
        .await?;
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for s in &services {
        let Some(name) = s
            .pointer("/Spec/Labels")
            .and_then(|l| l.get(LABEL_NAMESPACE))
            .and_then(Value::as_str)
        else {
            bail!(
                "cannot get label {LABEL_NAMESPACE} for service {}",
                service::id_of(s)
            );
        };
        *stacks.entry(name.to_string()).or_default() += 1;
    }
    let mut list: Vec<(String, usize)> = stacks.into_iter().collect();
    list.sort_by(|(a, _), (b, _)| {
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = list
        .iter()
        .map(|(n, c)| format::row(&[("Name", n.clone()), ("Services", c.to_string())]))
        .collect();
    super::out(&fmt.render(&rows, STACK_FIELDS)?)
}

// ---------------------------------------------------------------------- services

async fn services(client: &Client, args: ServicesArgs) -> anyhow::Result<()> {
    validate_stack_name(&args.stack)?;
    let q = Query::new("/services")
        .opt("status", (!args.quiet).then_some("true"))
        .opt(
            "filters",
            format::add_filters(stack_filter(&args.stack, &args.filters)?)?.as_deref(),
        );
    let list: Vec<Value> = client.get_json(&q.build()).await?;
    if list.is_empty() {
        eprintln!("Nothing found in stack: {}", args.stack);
        return Ok(());
    }
    service::print_services(list, args.format.as_deref().unwrap_or(""), args.quiet)
}

// ---------------------------------------------------------------------------- ps

async fn ps(client: &Client, args: PsArgs) -> anyhow::Result<()> {
    validate_stack_name(&args.stack)?;
    let services = stack_objects(client, "services", &args.stack).await?;
    let names: HashMap<String, String> = services
        .iter()
        .map(|s| (service::id_of(s).to_string(), spec_name(s).to_string()))
        .collect();
    let mut tasks: Vec<Value> = Vec::new();
    if !names.is_empty() {
        let mut filters = stack_filter(&args.stack, &args.filters)?;
        // The stack's tasks are its services' tasks (a daemon that does not filter
        // tasks by label lists them all otherwise).
        if !filters.contains_key("service") {
            filters.insert(
                "service".into(),
                names
                    .keys()
                    .map(|id| (id.clone(), Value::Bool(true)))
                    .collect(),
            );
        }
        tasks = client.get_json(&filter_query("/tasks", filters)?).await?;
        tasks.retain(|t| names.contains_key(service::str_at(t, "/ServiceID")));
    }
    if tasks.is_empty() {
        bail!("nothing found in stack: {}", args.stack);
    }
    let listing = service::TaskListing {
        no_resolve: args.no_resolve,
        no_trunc: args.no_trunc,
        quiet: args.quiet,
        format: args.format.as_deref().unwrap_or(""),
    };
    service::print_tasks(client, &tasks, names, &listing).await
}

// ---------------------------------------------------------------------------- rm

async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    for s in &args.stacks {
        validate_stack_name(s)?;
    }
    let detach = args.detach.unwrap_or(true);
    let mut errors = Vec::new();
    for ns in &args.stacks {
        let services = stack_objects(client, "services", ns).await?;
        let networks = stack_objects(client, "networks", ns).await?;
        let secrets = stack_objects(client, "secrets", ns).await?;
        let configs = stack_objects(client, "configs", ns).await?;
        if services.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
            eprintln!("Nothing found in stack: {ns}");
            continue;
        }
        let mut failed = remove_services(client, services).await;
        for (kind, list) in [("secret", &secrets), ("config", &configs)] {
            for o in list {
                super::out(&format!("Removing {kind} {}\n", spec_name(o)))?;
                let path = format!("/{kind}s/{}", path_escape(service::id_of(o)));
                if let Err(e) = client
                    .request(hyper::Method::DELETE, &path, crate::client::empty(), None)
                    .await
                {
                    failed = true;
                    eprintln!("Failed to remove {kind} {}: {e:#}", service::id_of(o));
                }
            }
        }
        if !detach {
            wait_for_task_containers(client, ns).await?;
        }
        for n in &networks {
            super::out(&format!(
                "Removing network {}\n",
                service::str_at(n, "/Name")
            ))?;
            let id = service::str_at(n, "/Id");
            let path = format!("/networks/{}", path_escape(id));
            if let Err(e) = client
                .request(hyper::Method::DELETE, &path, crate::client::empty(), None)
                .await
            {
                failed = true;
                eprintln!("Failed to remove network {id}: {e:#}");
            }
        }
        if failed {
            errors.push(format!("failed to remove some resources from stack: {ns}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// Waits until no container of the stack's tasks is left (`--detach=false`).
async fn wait_for_task_containers(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let q = Query::new("/containers/json")
        .arg("all", "1")
        .arg(
            "filters",
            json!({ "label": { format!("{LABEL_NAMESPACE}={namespace}"): true } }).to_string(),
        )
        .build();
    loop {
        let left: Vec<Value> = client.get_json(&q).await?;
        if left.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> StackVerb {
        let mut full = vec!["berth", "stack"];
        full.extend_from_slice(args);
        match super::super::Cli::try_parse_from(full).unwrap().command {
            Some(super::super::Verb::Stack(v)) => v,
            other => panic!("not a stack verb: {other:?}"),
        }
    }

    #[test]
    fn verbs_parse_with_docker_s_spellings() {
        let StackVerb::Deploy(a) = parse(&["deploy", "-c", "a.yml,b.yml", "-c", "c.yml", "s"])
        else {
            panic!()
        };
        assert_eq!(a.compose_files, ["a.yml", "b.yml", "c.yml"]);
        assert_eq!(a.detach, None);
        assert_eq!(a.resolve_image, "always");
        assert_eq!(a.stack, "s");
        let StackVerb::Deploy(a) = parse(&[
            "up",
            "--detach=false",
            "--prune",
            "--with-registry-auth",
            "-c",
            "x",
            "s",
        ]) else {
            panic!()
        };
        assert_eq!(a.detach, Some(false));
        assert!(a.prune && a.with_registry_auth);
        let StackVerb::Deploy(a) = parse(&["deploy", "-d", "-c", "x", "s"]) else {
            panic!()
        };
        assert_eq!(a.detach, Some(true));
        assert!(matches!(parse(&["list"]), StackVerb::Ls(_)));
        assert!(matches!(parse(&["down", "a", "b"]), StackVerb::Rm(ref a) if a.stacks.len() == 2));
        assert!(
            matches!(parse(&["remove", "--detach=false", "a"]), StackVerb::Rm(ref a) if a.detach == Some(false))
        );
        assert!(matches!(
            parse(&["ps", "-q", "--no-trunc", "-f", "desired-state=running", "s"]),
            StackVerb::Ps(ref a) if a.quiet && a.no_trunc && a.filters.len() == 1
        ));
        assert!(matches!(
            parse(&["services", "--format", "{{.Name}}", "s"]),
            StackVerb::Services(ref a) if a.format.as_deref() == Some("{{.Name}}")
        ));
        assert!(super::super::Cli::try_parse_from(["berth", "stack", "rm"]).is_err());
    }

    #[test]
    fn stack_names_and_filters() {
        assert!(validate_stack_name("app").is_ok());
        assert_eq!(
            validate_stack_name(" '\" ").unwrap_err().to_string(),
            "invalid stack name: \" '\\\" \""
        );
        let f = stack_filter("app", &["name=web".into()]).unwrap();
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"label":{"com.docker.stack.namespace=app":true},"name":{"web":true}}"#
        );
    }
}
