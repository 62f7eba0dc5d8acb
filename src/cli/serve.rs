//! `serve`: the admission webhook. Parses and checks the flags, loads the policy, gets a serving
//! certificate (the given files, or a self-signed one made at start), builds the metrics registry
//! and readiness, and runs [`crate::server::run`] until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use crate::cluster::{self, ClusterMetrics, ClusterStatus};
use crate::policy::Policy;
use crate::server::budget;
use crate::server::certs::{self, CertRequest};
use crate::server::log_buffer::{FlushGuard, LogBuffer};
use crate::server::metrics::{self, Metrics};
use crate::server::readiness::Readiness;
use crate::server::reload::{self, PolicyReload};
use crate::server::tls::{self, TlsFiles, TlsOptions};
use crate::server::{self, Drain, Limits, Shared, routes, shutdown};
use crate::state::SharedState;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Plain,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Policy file (YAML), reloaded when its content changes; the embedded default policy when
    /// absent.
    #[arg(long, env = "SPW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// HTTPS address of the webhook (POST /mutate, POST /validate).
    #[arg(
        long,
        env = "SPW_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,

    /// Serving certificate chain (PEM, leaf first), reloaded when it changes. Needs --tls-key.
    /// Without both, a self-signed CA and certificate for localhost are generated at start.
    #[arg(long, env = "SPW_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM), reloaded with it. Needs --tls-cert.
    #[arg(long, env = "SPW_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by a CA in this PEM bundle (the API server
    /// authenticating to the webhook).
    #[arg(long, env = "SPW_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Where the self-signed start writes ca.crt, tls.crt and tls.key (default: a new temporary
    /// directory, removed on exit).
    #[arg(
        long,
        env = "SPW_SELF_SIGNED_DIR",
        value_name = "DIR",
        conflicts_with = "tls_cert"
    )]
    pub self_signed_dir: Option<PathBuf>,

    /// Plain-HTTP admin address (GET /healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "SPW_ADMIN_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,

    /// Do not read StorageClasses and Namespaces from a cluster: the policy file's storageClasses
    /// are the whole catalogue.
    #[arg(long, env = "SPW_NO_CLUSTER", value_parser = BoolishValueParser::new())]
    pub no_cluster: bool,

    #[command(flatten)]
    pub cluster: super::ClusterArgs,

    /// Every rule in audit mode, whatever the policy says: nothing is denied or patched;
    /// findings become warnings, audit annotations, metrics and logs (the chart's `auditOnly`).
    /// Not Kubernetes' dry run (`kubectl --dry-run=server`), which the webhook answers as any
    /// request. `--dry-run` is its former name. (`audit` and `review` read their own
    /// variables, never this one.)
    #[arg(long = "audit-only", alias = "dry-run", env = "SPW_AUDIT_ONLY", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Log format.
    #[arg(long, env = "SPW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// Log level or filter: error, warn, info, debug, trace, or directives like
    /// "info,storage_policy_webhook=debug".
    #[arg(long, env = "SPW_LOG_LEVEL", value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Largest accepted request body in bytes; larger ones get 413.
    #[arg(long, env = "SPW_MAX_BODY_BYTES", value_name = "N", default_value_t = routes::DEFAULT_MAX_BODY_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,

    /// Request-body bytes held in memory at once, over all connections: a body is read against
    /// this budget as it arrives, waits up to 250 ms for room, then gets 503. A quarter is reserved
    /// for bodies of at most 256 KiB (real reviews). Default: an eighth of the container's memory
    /// limit (cgroup), 16 MiB without one, and never less than 4/3 of --max-body-bytes.
    #[arg(long, env = "SPW_BODY_BUDGET_BYTES", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_budget_bytes: Option<u64>,

    /// Seconds for a whole request body to arrive; a slower body gets 408 and its connection is
    /// closed, so a client that trickles or holds a body cannot pin its memory.
    #[arg(long, env = "SPW_BODY_READ_TIMEOUT", value_name = "SECS", default_value_t = budget::DEFAULT_BODY_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,

    /// Seconds to keep answering after SIGTERM/SIGINT, with readiness already false, before
    /// refusing new connections (the API server keeps using its keep-alive connections).
    #[arg(
        long,
        env = "SPW_SHUTDOWN_DELAY",
        value_name = "SECS",
        default_value_t = 5
    )]
    pub shutdown_delay: u64,

    /// Seconds to let in-flight requests finish once new connections are refused.
    #[arg(
        long,
        env = "SPW_DRAIN_TIMEOUT",
        value_name = "SECS",
        default_value_t = 20
    )]
    pub drain_timeout: u64,

    /// Register the webhook once it serves: apply the MutatingWebhookConfiguration and
    /// ValidatingWebhookConfiguration in this JSON file (a `List`, as the Helm chart renders it)
    /// with server-side apply, after readiness has held for --register-settle. Until then the API
    /// server does not call this webhook at all, so a webhook that never starts blocks nothing.
    /// Needs a cluster (also with --no-cluster, which then only skips the watches).
    #[arg(long, env = "SPW_REGISTER_WEBHOOKS", value_name = "FILE")]
    pub register_webhooks: Option<PathBuf>,

    /// ClusterRole that owns the registered configurations (an owner reference): when it is
    /// deleted (helm uninstall), the garbage collector deletes them too. Needs
    /// --register-webhooks.
    #[arg(
        long,
        env = "SPW_REGISTER_OWNER",
        value_name = "CLUSTERROLE",
        requires = "register_webhooks"
    )]
    pub register_owner: Option<String>,

    /// Seconds readiness must hold before registering: time for the kubelet's readiness probe
    /// and the Service's endpoints to follow, so the API server's first calls find a pod.
    #[arg(
        long,
        env = "SPW_REGISTER_SETTLE",
        value_name = "SECS",
        default_value_t = 0
    )]
    pub register_settle: u64,

    /// Most webhook connections open at once (TLS handshakes included); more wait in the
    /// listen backlog.
    #[arg(long, env = "SPW_MAX_CONNECTIONS", value_name = "N", default_value_t = server::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid log level {s:?}: {e}"))
}

/// Installs the global tracing subscriber (stderr) in the chosen format.
///
/// Lines go through a memory buffer flushed at most every
/// [`log_buffer::DEFAULT_FLUSH_EVERY`](crate::server::log_buffer::DEFAULT_FLUSH_EVERY) and when
/// the returned guard is dropped or flushed: hold it until the process exits.
#[must_use = "dropping the guard stops the flusher: hold it until exit"]
pub fn init_tracing(format: LogFormat, level: &str) -> Option<FlushGuard> {
    use crate::server::log_buffer::{DEFAULT_CAPACITY, DEFAULT_FLUSH_EVERY};
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match LogBuffer::new(std::io::stderr(), DEFAULT_FLUSH_EVERY, DEFAULT_CAPACITY) {
        Ok((buffer, guard)) => {
            let _ = tracing::subscriber::set_global_default(log_subscriber(
                format, level, ansi, buffer,
            ));
            guard.install_panic_hook();
            Some(guard)
        }
        // No thread for the flusher: write each line straight to stderr.
        Err(_) => {
            init_unbuffered(format, level);
            None
        }
    }
}

/// Logging straight to stderr, line by line (the commands other than `serve`).
pub fn init_unbuffered(format: LogFormat, level: &str) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing::subscriber::set_global_default(log_subscriber(
        format,
        level,
        ansi,
        std::io::stderr,
    ));
}

/// The subscriber `serve` logs with, writing to `writer`: also used by the tests and benchmarks
/// that check or measure the production log format.
pub fn log_subscriber<W>(
    format: LogFormat,
    level: &str,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Plain => Box::new(builder.with_ansi(ansi).finish()),
    }
}

/// A new private (0700) temporary directory for the self-signed files, removed when dropped:
/// `serve` holds it until it returns, on every path (graceful, error, second signal).
fn new_temp_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    // The private key goes there: tempfile leaves the mode to the umask unless told.
    tempfile::Builder::new()
        .prefix("storage-policy-webhook-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| {
            format!(
                "failed to create a temporary directory in {}",
                std::env::temp_dir().display()
            )
        })
}

/// The serving certificate files: the given ones, or a self-signed set written at start.
fn certificate_files(args: &ServeArgs) -> anyhow::Result<(TlsFiles, Option<tempfile::TempDir>)> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok((
            TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            None,
        ));
    }
    let (dir, guard) = match &args.self_signed_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = new_temp_dir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let generated = certs::generate(&CertRequest::for_localhost(
        certs::hostname().as_deref(),
        365,
    ))?;
    generated.write_to(&dir)?;
    let ca = dir.join(certs::CA_FILE);
    tracing::info!(
        ca = %ca.display(),
        "no --tls-cert/--tls-key: generated a self-signed CA and a certificate for localhost, 127.0.0.1, ::1 and this host; \
         trust it with `curl --cacert {}`",
        ca.display()
    );
    Ok((
        TlsFiles {
            cert: dir.join(certs::CERT_FILE),
            key: dir.join(certs::KEY_FILE),
        },
        guard,
    ))
}

/// The body budget: the flag, checked against --max-body-bytes, or the default derived from the
/// container's memory limit.
fn body_budget(args: &ServeArgs, max_body_bytes: usize) -> anyhow::Result<usize> {
    let Some(n) = args.body_budget_bytes else {
        let limit = budget::cgroup_memory_limit();
        let n = budget::default_budget(limit, max_body_bytes);
        tracing::info!(
            body_budget_bytes = n,
            memory_limit = ?limit,
            "no --body-budget-bytes: derived from the container memory limit"
        );
        return Ok(n);
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    budget::BodyBudget::new(n, max_body_bytes)?;
    Ok(n)
}

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    // clap counts `--no-cluster`'s default `false` (or SPW_NO_CLUSTER=0) as present, so
    // `conflicts_with` cannot say this.
    if let (true, Some(flag), None) = (
        args.no_cluster,
        args.cluster.given(),
        &args.register_webhooks,
    ) {
        anyhow::bail!("{flag} does not apply with --no-cluster");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spw-worker")
        .build()
        .context("failed to start the async runtime")?;
    let result = runtime.block_on(serve(args));
    // Connections still open after the drain timeout are dropped, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    // First, so a signal during start-up is not lost.
    let signals = shutdown::signals().context("failed to install signal handlers")?;
    let (first, forced) = signals.split();
    // A second signal drops `serve_until` wherever it is: its locals (the self-signed directory,
    // the listeners) are dropped before the error reaches `main`.
    tokio::select! {
        result = serve_until(args, first) => result,
        forced = forced => Err(forced.into()),
    }
}

/// Serves until `signal` completes and the drain ends.
async fn serve_until(
    args: ServeArgs,
    signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<i32> {
    let readiness = Readiness::new();
    let policy_loaded = readiness.condition("policy loaded");
    let (policy, policy_reload) = match &args.config {
        Some(path) => {
            let loaded = reload::load_policy_file(path, args.dry_run)?;
            let r = PolicyReload {
                path: path.clone(),
                dry_run: args.dry_run,
                interval: reload::DEFAULT_RELOAD_INTERVAL,
                initial_hash: loaded.hash,
            };
            (loaded.policy, Some(r))
        }
        None => (Policy::load(None, args.dry_run)?, None),
    };
    tracing::info!(
        policy = %args.config.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(embedded default)".into()),
        dry_run = args.dry_run,
        storage_classes = policy.file.storage_classes.len(),
        "policy loaded"
    );
    let state = Arc::new(SharedState::new(policy));
    policy_loaded.set(true);

    // Read before serving: a broken file stops the start, not the registration later.
    let registration = match &args.register_webhooks {
        Some(path) => Some(cluster::register::load(path)?),
        None => None,
    };

    let max_body_bytes = usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX);
    let body_budget_bytes = body_budget(&args, max_body_bytes)?;

    let (files, temp_dir) = certificate_files(&args)?;

    let mut registry = metrics::new_registry();
    let metrics = Metrics::register(&mut registry);
    readiness.export(metrics.ready.clone());

    // The cluster cache: watches feed `state`; /readyz waits for their first full list.
    let mut cluster_tasks = if args.no_cluster {
        tracing::info!("--no-cluster: deciding with the policy file's storage classes only");
        Vec::new()
    } else {
        let cluster_metrics = ClusterMetrics::register(&mut registry);
        match cluster::connect(&args.cluster.selection())
            .await
            .context("failed to load the Kubernetes client configuration")?
        {
            // `connect` has logged that there is no configuration: the static policy decides.
            None => Vec::new(),
            Some(client) => {
                let synced = readiness.condition("cluster synced");
                let status = Arc::new(ClusterStatus::new());
                let watches = tokio::spawn(cluster::run(
                    client,
                    state.clone(),
                    status.clone(),
                    cluster_metrics,
                ));
                let ready = tokio::spawn(async move {
                    status.wait_synced().await;
                    synced.set(true);
                });
                vec![watches, ready]
            }
        }
    };
    let registry = Arc::new(registry);

    if let Some(configs) = registration {
        let client = cluster::connect_required(&args.cluster.selection())
            .await
            .context("--register-webhooks needs a cluster")?;
        let r = readiness.clone();
        cluster_tasks.push(tokio::spawn(cluster::register::register_when_ready(
            client,
            configs,
            args.register_owner.clone(),
            move || r.is_ready(),
            Duration::from_secs(args.register_settle),
        )));
    }

    let config = server::Config {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls: TlsOptions {
            files,
            client_ca: args.client_ca.clone(),
            reload_interval: tls::DEFAULT_RELOAD_INTERVAL,
        },
        max_body_bytes,
        body_budget_bytes,
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        limits: Limits {
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            ..Limits::default()
        },
        shutdown_delay: Duration::from_secs(args.shutdown_delay),
        drain_timeout: Duration::from_secs(args.drain_timeout),
        policy_reload,
    };
    let ctx = Shared {
        state,
        metrics,
        registry,
        readiness,
    };
    let drain = server::run(config, ctx, signal).await;
    for task in cluster_tasks {
        task.abort();
    }
    let drain = drain?;
    drop(temp_dir);
    Ok(match drain {
        Drain::Complete | Drain::TimedOut => 0,
    })
}
