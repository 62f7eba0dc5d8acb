//! Finding the cluster, for every command that reads one (`serve`, `audit --cluster`): the way
//! Kubernetes tools do (controller-runtime's order): `--kubeconfig`, else `KUBECONFIG`, else the
//! in-cluster service account, else `~/.kube/config`; `--context` picks a context of the
//! kubeconfig instead of its current one. For `serve` no configuration at all is not an error: it
//! then runs on the static policy alone; `audit --cluster` needs one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use kube::Client;
use kube::config::{Config, InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};

/// Where the in-cluster service account token is mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Why a configured cluster could not be used. (An unreachable API server is not one of these:
/// the watches retry it with backoff.)
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("failed to load kubeconfig {}: {cause}", display_paths(paths))]
    Kubeconfig {
        paths: Vec<PathBuf>,
        cause: KubeconfigError,
    },
    #[error("failed to load the in-cluster service account configuration: {0}")]
    InCluster(InClusterError),
    #[error("failed to build the Kubernetes client for {url}: {cause}")]
    Client { url: String, cause: kube::Error },
    #[error("context {context:?} needs a kubeconfig, but {found}: set --kubeconfig or KUBECONFIG")]
    ContextWithoutKubeconfig {
        context: String,
        found: &'static str,
    },
    #[error(
        "no Kubernetes configuration found (no --kubeconfig, no KUBECONFIG, no service account token at \
         {SERVICE_ACCOUNT_TOKEN}, no ~/.kube/config)"
    )]
    NotFound,
}

/// What the command line chose (`--kubeconfig`, `--context`); both empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// This kubeconfig file, instead of `KUBECONFIG`, the service account or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// This context of the kubeconfig instead of its current context.
    pub context: Option<String>,
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The parts of the process environment that say where a cluster is.
#[derive(Clone, Debug, Default)]
pub struct ConfigEnv {
    /// `KUBECONFIG` (a list of paths).
    pub kubeconfig: Option<OsString>,
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` are both set.
    pub in_cluster_env: bool,
    /// The service account token file exists.
    pub service_account_token: bool,
    /// The home directory (for `~/.kube/config`).
    pub home: Option<PathBuf>,
}

impl ConfigEnv {
    pub fn from_process() -> ConfigEnv {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        ConfigEnv {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            in_cluster_env: set("KUBERNETES_SERVICE_HOST") && set("KUBERNETES_SERVICE_PORT"),
            service_account_token: Path::new(SERVICE_ACCOUNT_TOKEN).is_file(),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// Which configuration to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Kubeconfig files, merged in order (`KUBECONFIG`, or `~/.kube/config`).
    Kubeconfig(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
}

impl ConfigSource {
    /// Picks the configuration: `KUBECONFIG` when set (even to a missing file: that is a
    /// configuration error, not "no cluster"), else the service account when running in a pod
    /// with its token mounted, else `~/.kube/config` when it exists.
    pub fn detect(env: &ConfigEnv) -> Option<ConfigSource> {
        if let Some(value) = &env.kubeconfig {
            let paths: Vec<PathBuf> = std::env::split_paths(value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            if !paths.is_empty() {
                return Some(ConfigSource::Kubeconfig(paths));
            }
        }
        // In a pod the service variables are always set; without a mounted token (e.g.
        // `automountServiceAccountToken: false`) there is no usable in-cluster identity.
        if env.in_cluster_env && env.service_account_token {
            return Some(ConfigSource::InCluster);
        }
        let home_config = env.home.as_ref()?.join(".kube").join("config");
        home_config
            .is_file()
            .then(|| ConfigSource::Kubeconfig(vec![home_config]))
    }

    /// [`ConfigSource::detect`] after the command line: `--kubeconfig` wins over the environment,
    /// and `--context` needs a kubeconfig (a service account has no contexts).
    pub fn select(
        env: &ConfigEnv,
        selection: &Selection,
    ) -> Result<Option<ConfigSource>, ConnectError> {
        let source = match &selection.kubeconfig {
            Some(path) => Some(ConfigSource::Kubeconfig(vec![path.clone()])),
            None => ConfigSource::detect(env),
        };
        match (&selection.context, &source) {
            (Some(context), Some(ConfigSource::InCluster) | None) => {
                Err(ConnectError::ContextWithoutKubeconfig {
                    context: context.clone(),
                    found: match source {
                        None => "none was found",
                        _ => "only the in-cluster service account was found",
                    },
                })
            }
            _ => Ok(source),
        }
    }

    /// Loads the configuration, with `context` instead of the kubeconfig's current one (reads
    /// files; does not contact the API server).
    pub async fn load(&self, context: Option<&str>) -> Result<Config, ConnectError> {
        match self {
            ConfigSource::InCluster => Config::incluster().map_err(ConnectError::InCluster),
            ConfigSource::Kubeconfig(paths) => {
                let err = |cause| ConnectError::Kubeconfig {
                    paths: paths.clone(),
                    cause,
                };
                let mut merged = Kubeconfig::default();
                for p in paths {
                    merged = merged
                        .merge(Kubeconfig::read_from(p).map_err(err)?)
                        .map_err(err)?;
                }
                let options = KubeConfigOptions {
                    context: context.map(str::to_owned),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(merged, &options)
                    .await
                    .map_err(err)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            ConfigSource::InCluster => "in-cluster service account".to_owned(),
            ConfigSource::Kubeconfig(paths) => format!("kubeconfig {}", display_paths(paths)),
        }
    }
}

/// Connects to the cluster the command line and the process environment describe; `Ok(None)`
/// (logged) when there is no configuration at all. Reaching the API server is left to the
/// watches, which retry.
pub async fn connect(selection: &Selection) -> Result<Option<Client>, ConnectError> {
    connect_to(&ConfigEnv::from_process(), selection).await
}

/// [`connect`] for commands that cannot do without a cluster: no configuration is an error.
pub async fn connect_required(selection: &Selection) -> Result<Client, ConnectError> {
    let env = ConfigEnv::from_process();
    let source = ConfigSource::select(&env, selection)?.ok_or(ConnectError::NotFound)?;
    client(&source, selection.context.as_deref()).await
}

/// [`connect`] with an explicit environment and no command-line choice.
pub async fn connect_with(env: &ConfigEnv) -> Result<Option<Client>, ConnectError> {
    connect_to(env, &Selection::default()).await
}

/// [`connect`] with an explicit environment.
pub async fn connect_to(
    env: &ConfigEnv,
    selection: &Selection,
) -> Result<Option<Client>, ConnectError> {
    let Some(source) = ConfigSource::select(env, selection)? else {
        tracing::warn!(
            "no Kubernetes configuration found (no KUBECONFIG, no service account token at {SERVICE_ACCOUNT_TOKEN}, \
             no ~/.kube/config): running on the static policy alone, without live StorageClasses, namespaces or nodes"
        );
        return Ok(None);
    };
    client(&source, selection.context.as_deref())
        .await
        .map(Some)
}

async fn client(source: &ConfigSource, context: Option<&str>) -> Result<Client, ConnectError> {
    let config = source.load(context).await?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|cause| ConnectError::Client {
        url: url.clone(),
        cause,
    })?;
    tracing::info!(
        api_server = %url,
        config = %source.describe(),
        context = context.unwrap_or("(current)"),
        "using the Kubernetes API server"
    );
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ConfigEnv {
        ConfigEnv::default()
    }

    #[test]
    fn nothing_configured_means_no_cluster() {
        assert_eq!(ConfigSource::detect(&env()), None);
        let home = tempfile::tempdir().unwrap();
        let e = ConfigEnv {
            home: Some(home.path().into()),
            in_cluster_env: true,
            ..env()
        };
        assert_eq!(
            ConfigSource::detect(&e),
            None,
            "pod env without a token, no ~/.kube/config"
        );
        let e = ConfigEnv {
            kubeconfig: Some("".into()),
            ..env()
        };
        assert_eq!(ConfigSource::detect(&e), None, "empty KUBECONFIG");
    }

    #[test]
    fn kubeconfig_env_wins_then_service_account_then_home() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".kube")).unwrap();
        std::fs::write(home.path().join(".kube/config"), "").unwrap();
        let all = ConfigEnv {
            kubeconfig: Some(std::env::join_paths(["/a", "/b"]).unwrap()),
            in_cluster_env: true,
            service_account_token: true,
            home: Some(home.path().into()),
        };
        assert_eq!(
            ConfigSource::detect(&all),
            Some(ConfigSource::Kubeconfig(vec!["/a".into(), "/b".into()]))
        );
        let pod = ConfigEnv {
            kubeconfig: None,
            ..all.clone()
        };
        assert_eq!(ConfigSource::detect(&pod), Some(ConfigSource::InCluster));
        let laptop = ConfigEnv {
            in_cluster_env: false,
            ..pod
        };
        assert_eq!(
            ConfigSource::detect(&laptop),
            Some(ConfigSource::Kubeconfig(vec![
                home.path().join(".kube/config")
            ]))
        );
    }

    #[test]
    fn the_kubeconfig_flag_wins_and_a_context_needs_a_kubeconfig() {
        let pod = ConfigEnv {
            kubeconfig: Some("/from-env".into()),
            in_cluster_env: true,
            service_account_token: true,
            ..env()
        };
        let flag = Selection {
            kubeconfig: Some("/from-flag".into()),
            context: None,
        };
        assert_eq!(
            ConfigSource::select(&pod, &flag).unwrap(),
            Some(ConfigSource::Kubeconfig(vec!["/from-flag".into()]))
        );
        assert_eq!(
            ConfigSource::select(&pod, &Selection::default()).unwrap(),
            Some(ConfigSource::Kubeconfig(vec!["/from-env".into()]))
        );
        let context = Selection {
            kubeconfig: None,
            context: Some("prod".into()),
        };
        let in_pod = ConfigEnv {
            kubeconfig: None,
            ..pod
        };
        let e = ConfigSource::select(&in_pod, &context)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("context \"prod\" needs a kubeconfig, but only the in-cluster"),
            "{e}"
        );
        let e = ConfigSource::select(&env(), &context)
            .unwrap_err()
            .to_string();
        assert!(e.contains("but none was found"), "{e}");
    }

    #[tokio::test]
    async fn connect_without_configuration_is_none_and_a_broken_one_is_an_error() {
        assert!(connect_with(&env()).await.unwrap().is_none());
        let e = ConfigEnv {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..env()
        };
        let err = connect_with(&e)
            .await
            .err()
            .expect("a missing KUBECONFIG file is an error")
            .to_string();
        assert!(
            err.starts_with("failed to load kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
