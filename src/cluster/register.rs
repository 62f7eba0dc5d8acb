//! Self-registration: once the webhook serves, it applies its own
//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration (server-side apply), as Kyverno
//! does. The API server only calls a webhook that exists, so an install whose pods never start
//! (an image that cannot be pulled, a crash loop) never refuses or delays a request.
//!
//! The configurations themselves are rendered by the Helm chart (`<fullname>-webhooks`
//! ConfigMap, one JSON `List`): this module only applies them, with an owner reference to a
//! cluster-scoped object the release owns (the chart's ClusterRole), so the garbage collector
//! removes them when the release is uninstalled, even if a pod re-applied them meanwhile.
//!
//! Owns: reading the file ([`load`]), applying it ([`apply`]) and retrying until done
//! ([`register_when_ready`]). Must not touch serving or the policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

/// The field manager of the webhook's own applies.
pub const FIELD_MANAGER: &str = "storage-policy-webhook";

/// Why the configurations file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("failed to read webhook configurations file {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("failed to parse webhook configurations file {}: {cause}", path.display())]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "webhook configurations file {}: item {index} is a {kind:?}, not a \
         MutatingWebhookConfiguration or ValidatingWebhookConfiguration",
        path.display()
    )]
    Kind {
        path: PathBuf,
        index: usize,
        kind: String,
    },
    #[error("webhook configurations file {}: item {index} has no metadata.name", path.display())]
    NoName { path: PathBuf, index: usize },
}

/// One configuration to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Configuration {
    Mutating(MutatingWebhookConfiguration),
    Validating(ValidatingWebhookConfiguration),
}

impl Configuration {
    pub fn name(&self) -> &str {
        match self {
            Configuration::Mutating(c) => c.metadata.name.as_deref().unwrap_or_default(),
            Configuration::Validating(c) => c.metadata.name.as_deref().unwrap_or_default(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Configuration::Mutating(_) => "MutatingWebhookConfiguration",
            Configuration::Validating(_) => "ValidatingWebhookConfiguration",
        }
    }
}

/// Reads the configurations: a JSON `List` (`items`), a single object, or an array.
pub fn load(path: &Path) -> Result<Vec<Configuration>, RegisterError> {
    let text = std::fs::read_to_string(path).map_err(|cause| RegisterError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Configuration>, RegisterError> {
    let parse_err = |cause| RegisterError::Parse {
        path: path.to_owned(),
        cause,
    };
    let doc: Value = serde_json::from_str(text).map_err(parse_err)?;
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
            match o.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let config = match kind.as_str() {
            "MutatingWebhookConfiguration" => {
                Configuration::Mutating(serde_json::from_value(item).map_err(parse_err)?)
            }
            "ValidatingWebhookConfiguration" => {
                Configuration::Validating(serde_json::from_value(item).map_err(parse_err)?)
            }
            _ => {
                return Err(RegisterError::Kind {
                    path: path.to_owned(),
                    index,
                    kind,
                });
            }
        };
        if config.name().is_empty() {
            return Err(RegisterError::NoName {
                path: path.to_owned(),
                index,
            });
        }
        out.push(config);
    }
    Ok(out)
}

/// The owner reference to the ClusterRole `name` (read for its uid).
async fn owner_reference(client: &Client, name: &str) -> Result<OwnerReference, kube::Error> {
    let role = Api::<ClusterRole>::all(client.clone()).get(name).await?;
    Ok(OwnerReference {
        api_version: "rbac.authorization.k8s.io/v1".to_owned(),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
        uid: role.metadata.uid.unwrap_or_default(),
        block_owner_deletion: None,
        controller: None,
    })
}

/// Applies every configuration (server-side apply, forced: the webhook owns what it registers),
/// each owned by the ClusterRole `owner` when given.
pub async fn apply(
    client: &Client,
    configs: &[Configuration],
    owner: Option<&str>,
) -> Result<(), kube::Error> {
    let owner = match owner {
        Some(name) => Some(owner_reference(client, name).await?),
        None => None,
    };
    for config in configs {
        match config {
            Configuration::Mutating(c) => apply_one(client, c.clone(), owner.clone()).await?,
            Configuration::Validating(c) => apply_one(client, c.clone(), owner.clone()).await?,
        }
    }
    Ok(())
}

/// One cluster-scoped object, applied as given with `owner` as its only owner reference.
async fn apply_one<K>(
    client: &Client,
    mut object: K,
    owner: Option<OwnerReference>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let meta = object.meta_mut();
    meta.owner_references = owner.map(|o| vec![o]);
    meta.managed_fields = None;
    meta.resource_version = None;
    let name = meta.name.clone().unwrap_or_default();
    Api::<K>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await?;
    Ok(())
}

/// Waits until `ready()` holds for `settle` without interruption, then applies the
/// configurations, retrying with backoff (1 s doubling to 60 s) until it succeeds. Returns once
/// they are applied; never fails (each failure is logged and retried).
pub async fn register_when_ready(
    client: Client,
    configs: Vec<Configuration>,
    owner: Option<String>,
    ready: impl Fn() -> bool,
    settle: Duration,
) {
    const POLL: Duration = Duration::from_millis(200);
    let mut ready_for = Duration::ZERO;
    loop {
        if ready() {
            if ready_for >= settle {
                break;
            }
            ready_for += POLL;
        } else {
            ready_for = Duration::ZERO;
        }
        tokio::time::sleep(POLL).await;
    }
    let names: Vec<String> = configs
        .iter()
        .map(|c| format!("{}/{}", c.kind(), c.name()))
        .collect();
    let mut backoff = Duration::from_secs(1);
    loop {
        match apply(&client, &configs, owner.as_deref()).await {
            Ok(()) => {
                tracing::info!(configurations = ?names, owner = ?owner, "registered the webhook configurations: the API server calls this webhook from now on");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, configurations = ?names, retry_in_secs = backoff.as_secs(), "failed to register the webhook configurations");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("webhooks.json")
    }

    #[test]
    fn reads_a_list_of_both_kinds() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
          {"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration",
           "metadata":{"name":"spw"},"webhooks":[{"name":"mutate.storage-policy.io",
             "clientConfig":{"url":"https://127.0.0.1:1/mutate"},"sideEffects":"None",
             "admissionReviewVersions":["v1"],
             "matchConditions":[{"name":"x","expression":"true"}]}]},
          {"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration",
           "metadata":{"name":"spw"},"webhooks":[]}]}"#;
        let got = parse(p(), text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind(), "MutatingWebhookConfiguration");
        assert_eq!(got[1].name(), "spw");
        let Configuration::Mutating(m) = &got[0] else {
            panic!()
        };
        let hook = &m.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            hook.match_conditions.as_ref().unwrap()[0].expression,
            "true"
        );
    }

    #[test]
    fn refuses_other_kinds_and_nameless_objects() {
        let e = parse(p(), r#"[{"kind":"ConfigMap","metadata":{"name":"x"}}]"#).unwrap_err();
        assert!(e.to_string().contains("item 0 is a \"ConfigMap\""), "{e}");
        let e = parse(
            p(),
            r#"{"kind":"ValidatingWebhookConfiguration","metadata":{}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no metadata.name"), "{e}");
        let e = parse(p(), "{").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to parse webhook configurations file webhooks.json")
        );
    }
}
