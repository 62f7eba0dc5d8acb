//! An in-process fake Kubernetes API server for `audit --cluster`: GET list responses for the
//! core and named-group resources, cluster-wide and per namespace, paginated with `continue`
//! tokens (a small page size, so that the client's paging is exercised), and a kubeconfig that
//! points at it over plain HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

/// Items per page the fake returns, whatever `limit` the client asks for.
pub const PAGE: usize = 2;

#[derive(Clone)]
struct Shared {
    objects: Arc<Vec<Value>>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApi {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

/// `(group, kind)` of a plural resource name.
fn kind_of(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "persistentvolumeclaims" => ("", "PersistentVolumeClaim"),
        "persistentvolumes" => ("", "PersistentVolume"),
        "namespaces" => ("", "Namespace"),
        "nodes" => ("", "Node"),
        "pods" => ("", "Pod"),
        "statefulsets" => ("apps", "StatefulSet"),
        "deployments" => ("apps", "Deployment"),
        "daemonsets" => ("apps", "DaemonSet"),
        "replicasets" => ("apps", "ReplicaSet"),
        "jobs" => ("batch", "Job"),
        "cronjobs" => ("batch", "CronJob"),
        "storageclasses" => ("storage.k8s.io", "StorageClass"),
        _ => return None,
    })
}

fn status(code: StatusCode, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": "NotFound", "code": code.as_u16()});
    (code, Json(body)).into_response()
}

async fn list(
    State(s): State<Shared>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.requests.lock().unwrap().push(uri.to_string());
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // /api/v1/[namespaces/NS/]RES or /apis/GROUP/VERSION/[namespaces/NS/]RES
    let (group, version, rest) = match segments.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "the server could not find the requested resource",
            );
        }
    };
    let (namespace, resource) = match rest {
        [res] => (None, *res),
        ["namespaces", ns, res] => (Some(*ns), *res),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "the server could not find the requested resource",
            );
        }
    };
    let Some((want_group, kind)) = kind_of(resource) else {
        return status(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
        );
    };
    if want_group != group {
        return status(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
        );
    }
    let api_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let matching: Vec<Value> = s
        .objects
        .iter()
        .filter(|o| o["kind"] == kind && o["apiVersion"] == api_version.as_str())
        .filter(|o| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns))
        .map(|o| {
            // The API server leaves apiVersion and kind out of list items.
            let mut item = o.clone();
            let m = item.as_object_mut().unwrap();
            m.remove("apiVersion");
            m.remove("kind");
            item
        })
        .collect();
    let offset: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = (offset + PAGE).min(matching.len());
    let page = matching.get(offset..end).unwrap_or_default().to_vec();
    let mut metadata = json!({"resourceVersion": "100"});
    if end < matching.len() {
        metadata["continue"] = json!(end.to_string());
    }
    Json(json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": metadata, "items": page}))
        .into_response()
}

impl FakeApi {
    /// Serves `objects` (full objects with apiVersion and kind) on 127.0.0.1 at a free port.
    pub fn start(objects: Vec<Value>) -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            objects: Arc::new(objects),
            requests: requests.clone(),
        };
        let app = Router::new().fallback(list).with_state(shared);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        FakeApi {
            addr,
            requests,
            _runtime: runtime,
        }
    }

    /// The request URIs served so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Writes a kubeconfig whose current context is this server.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig_for(&format!("http://{}", self.addr), dir)
    }
}

/// Writes a kubeconfig for `server` (no credentials).
pub fn kubeconfig_for(server: &str, dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n"
        ),
    )
    .expect("write kubeconfig");
    path
}
