//! Cluster registry trust: every berth.dev/v1 `RegistryHost` object becomes a containerd-style folder
//! `<root>/cluster-hosts/<host[:port]>/` with `hosts.toml` (server, `ca`, `client`, mirrors, plain http only when
//! `insecure`), `ca.crt` and, for mTLS, `client.crt`/`client.key` (0600) from the referenced
//! `kubernetes.io/tls` Secret. Every file is written to a temporary name and renamed, `hosts.toml` last, so the
//! registry client (which re-reads the folder through `hosts::Watched` before each connection) never sees a
//! half-written configuration; a deleted object's folder is removed. [`LayeredTrust`] puts the node-local hosts
//! directory and this cluster directory behind one `registry::HostConfigSource`.
//!
//! It must never let a CA reach another host:port (one folder per `spec.host`, the hosts crate keeps the
//! rule), never write outside its directory (the folder name is checked), and never log key material.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use registry::{HostConfig, HostConfigSource, HostPort, RegistryError};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;

/// The `RegistryHost` kind.
pub(crate) fn registry_host_resource() -> ApiResource {
    ApiResource {
        group: "berth.dev".into(),
        version: "v1".into(),
        api_version: "berth.dev/v1".into(),
        kind: "RegistryHost".into(),
        plural: "registryhosts".into(),
    }
}

/// The node-local hosts directory (if any) layered with the cluster one: CAs of both apply to their
/// host:port, the first client identity wins, plain http only when one of them says so explicitly.
#[derive(Debug, Clone)]
pub(crate) struct LayeredTrust {
    pub local: Option<hosts::TrustSource>,
    pub cluster: hosts::TrustSource,
}

impl HostConfigSource for LayeredTrust {
    fn host_config(&self, host: &HostPort) -> Result<HostConfig, RegistryError> {
        let mut hc = match &self.local {
            Some(l) => l.host_config(host)?,
            None => HostConfig::default(),
        };
        let cluster = self.cluster.host_config(host)?;
        hc.ca_certs.extend(cluster.ca_certs);
        if hc.client_identity.is_none() {
            hc.client_identity = cluster.client_identity;
        }
        hc.plain_http |= cluster.plain_http;
        hc.sources.extend(
            cluster
                .sources
                .into_iter()
                .map(|s| format!("{s} (cluster RegistryHost)")),
        );
        Ok(hc)
    }

    fn generation(&self) -> u64 {
        // Both counters only grow, so their sum moves whenever either does.
        self.local.as_ref().map_or(0, HostConfigSource::generation) + self.cluster.generation()
    }
}

/// A folder name for `spec.host` (`host`, `host:port`, `[v6]:port`), refusing anything that could escape.
fn folder_name(host: &str) -> Result<String, String> {
    let ok = !host.is_empty()
        && host.len() <= 260
        && host != "."
        && host != ".."
        && !host.starts_with('.')
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    if ok {
        Ok(host.to_string())
    } else {
        Err(format!(
            "spec.host {host:?} is not a host[:port]; fix the RegistryHost object"
        ))
    }
}

fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The client certificate pair of a RegistryHost (PEM; the key is never logged).
pub(crate) struct ClientPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The `hosts.toml` text for a RegistryHost spec.
pub(crate) fn hosts_toml(name: &str, spec: &Value, has_ca: bool, has_client: bool) -> String {
    let host = spec["host"].as_str().unwrap_or_default();
    let insecure = spec["insecure"].as_bool().unwrap_or(false);
    let scheme = if insecure { "http" } else { "https" };
    let mut out = format!(
        "# Written by the berth agent from RegistryHost {name:?}; local edits are overwritten.\n\
         server = {}\n",
        toml_str(&format!("{scheme}://{host}"))
    );
    if has_ca {
        out.push_str("ca = \"ca.crt\"\n");
    }
    if has_client {
        out.push_str("client = [[\"client.crt\", \"client.key\"]]\n");
    }
    for m in spec["mirrors"].as_array().into_iter().flatten() {
        let Some(endpoint) = m["endpoint"].as_str() else {
            continue;
        };
        let caps = if m["resolve"].as_bool().unwrap_or(false) {
            "[\"pull\", \"resolve\"]"
        } else {
            "[\"pull\"]"
        };
        out.push_str(&format!(
            "\n[host.{}]\ncapabilities = {caps}\nsend_credentials = {}\n",
            toml_str(endpoint),
            m["sendCredentials"].as_bool().unwrap_or(false)
        ));
    }
    out
}

/// Write one RegistryHost's folder; returns the folder name.
pub(crate) fn materialise(
    dir: &Path,
    name: &str,
    spec: &Value,
    client: Option<&ClientPair>,
) -> Result<String, String> {
    let host = spec["host"].as_str().unwrap_or_default();
    let folder = folder_name(host)?;
    let path = dir.join(&folder);
    fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let ca = spec["caBundle"].as_str().filter(|s| !s.trim().is_empty());
    let write = |file: &str, content: &[u8], mode: u32| {
        let p = path.join(file);
        write_atomic(&p, content, mode).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    let remove = |file: &str| {
        let _ = fs::remove_file(path.join(file));
    };
    match ca {
        Some(pem) => write("ca.crt", pem.as_bytes(), 0o644)?,
        None => remove("ca.crt"),
    }
    match client {
        Some(pair) => {
            write("client.crt", &pair.cert_pem, 0o644)?;
            write("client.key", &pair.key_pem, 0o600)?;
        }
        None => {
            remove("client.crt");
            remove("client.key");
        }
    }
    write(
        "hosts.toml",
        hosts_toml(name, spec, ca.is_some(), client.is_some()).as_bytes(),
        0o644,
    )?;
    Ok(folder)
}

fn remove_folder(dir: &Path, folder: &str) {
    if folder_name(folder).is_err() {
        return;
    }
    let p = dir.join(folder);
    match fs::remove_dir_all(&p) {
        Ok(()) => tracing::info!(folder = %p.display(), "cluster registry trust removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(folder = %p.display(), error = %e, "cannot remove cluster trust folder")
        }
    }
}

async fn client_pair(client: &kube::Client, spec: &Value) -> Result<Option<ClientPair>, String> {
    let Some(r) = spec
        .get("clientCertificateSecretRef")
        .filter(|v| v.is_object())
    else {
        return Ok(None);
    };
    let (ns, name) = (
        r["namespace"].as_str().unwrap_or_default(),
        r["name"].as_str().unwrap_or_default(),
    );
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("cannot read the client certificate Secret {ns}/{name}: {e}"))?;
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| {
        data.get(k).map(|b| b.0.clone()).ok_or_else(|| {
            format!("Secret {ns}/{name} has no {k}; it must be of type kubernetes.io/tls")
        })
    };
    Ok(Some(ClientPair {
        cert_pem: get("tls.crt")?,
        key_pem: get("tls.key")?,
    }))
}

/// Keep `<dir>` in sync with the RegistryHost objects until `shutdown`.
pub(crate) async fn watch_registry_hosts(
    client: kube::Client,
    dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    fs::create_dir_all(&dir).map_err(|e| AgentError::io("creating", &dir, e))?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &registry_host_resource());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // object name -> folder
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return Ok(()) };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching RegistryHost objects failed; retrying");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                let name = o.metadata.name.clone().unwrap_or_default();
                listed.insert(name.clone());
                let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
                let pair = match client_pair(&client, &spec).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(registryhost = %name, error = %e, "client certificate not applied");
                        None
                    }
                };
                match materialise(&dir, &name, &spec, pair.as_ref()) {
                    Ok(folder) => {
                        tracing::info!(registryhost = %name, folder = %folder, "cluster registry trust applied");
                        if let Some(old) = known.insert(name, folder.clone())
                            && old != folder
                            && !known.values().any(|f| f == &old)
                        {
                            remove_folder(&dir, &old);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(registryhost = %name, error = %e, "cannot apply RegistryHost")
                    }
                }
            }
            watcher::Event::Delete(o) => {
                let name = o.metadata.name.clone().unwrap_or_default();
                if let Some(folder) = known.remove(&name)
                    && !known.values().any(|f| f == &folder)
                {
                    remove_folder(&dir, &folder);
                }
            }
            watcher::Event::InitDone => {
                known.retain(|name, _| listed.contains(name));
                let keep: HashSet<&String> = known.values().collect();
                if let Ok(rd) = fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        let f = e.file_name().to_string_lossy().into_owned();
                        if !keep.contains(&f) && e.path().is_dir() {
                            remove_folder(&dir, &f);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_registry_host_becomes_a_hosts_folder_the_hosts_crate_loads() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testkit::pki::TestPki::new().unwrap();
        let spec = json!({
            "host": "127.0.0.1:5443",
            "caBundle": pki.ca_pem(),
            "mirrors": [{"endpoint": "https://127.0.0.2:5443", "resolve": true}],
        });
        let folder = materialise(dir.path(), "reg", &spec, None).unwrap();
        assert_eq!(folder, "127.0.0.1:5443");
        let text = fs::read_to_string(dir.path().join(&folder).join("hosts.toml")).unwrap();
        assert!(
            text.contains("server = \"https://127.0.0.1:5443\""),
            "{text}"
        );
        assert!(text.contains("[host.\"https://127.0.0.2:5443\"]"), "{text}");
        let src = hosts::TrustSource::open(Some(dir.path())).unwrap();
        let hc = src.host_config(&HostPort::new("127.0.0.1", 5443)).unwrap();
        assert_eq!(hc.ca_certs.len(), 1, "{:?}", hc.sources);
        assert!(!hc.plain_http);
        let other = src.host_config(&HostPort::new("127.0.0.1", 5444)).unwrap();
        assert!(other.ca_certs.is_empty(), "a CA never covers another port");
    }

    #[test]
    fn layered_trust_moves_its_generation_when_the_cluster_folder_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("cluster");
        let layered = LayeredTrust {
            local: None,
            cluster: hosts::TrustSource::open(Some(&cluster)).unwrap(),
        };
        let host = HostPort::new("127.0.0.1", 6000);
        let g0 = layered.generation();
        assert!(layered.host_config(&host).unwrap().ca_certs.is_empty());
        let pki = testkit::pki::TestPki::new().unwrap();
        materialise(
            &cluster,
            "r",
            &json!({"host": "127.0.0.1:6000", "caBundle": pki.ca_pem()}),
            None,
        )
        .unwrap();
        assert_ne!(layered.generation(), g0);
        let hc = layered.host_config(&host).unwrap();
        assert_eq!(hc.ca_certs.len(), 1);
        assert!(
            hc.sources
                .iter()
                .any(|s| s.contains("cluster RegistryHost"))
        );
    }

    #[test]
    fn insecure_hosts_are_plain_http_and_bad_hosts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = materialise(
            dir.path(),
            "plain",
            &json!({"host": "127.0.0.1:7000", "insecure": true}),
            None,
        )
        .unwrap();
        let text = fs::read_to_string(dir.path().join(folder).join("hosts.toml")).unwrap();
        assert!(text.contains("server = \"http://127.0.0.1:7000\""));
        assert!(materialise(dir.path(), "x", &json!({"host": "../etc"}), None).is_err());
        assert!(materialise(dir.path(), "x", &json!({"host": "a/b"}), None).is_err());
    }
}
