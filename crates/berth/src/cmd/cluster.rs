//! The berth binary as a client of its own cluster: which kubeconfig a command uses (`--kubeconfig`, then
//! `$KUBECONFIG`, then `~/.kube/config`, then the admin kubeconfig of a local `berth server`) and the one
//! cluster object the CLI writes itself, a `berth.dev/v1` `RegistryHost` (`berth trust add --cluster`). It must
//! never print a token and never write any object but the one the user named.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use registry::HostPort;
use serde_json::json;

/// The kubeconfig to use: the flag, `$KUBECONFIG` (its first entry), `~/.kube/config`, or the admin kubeconfig
/// that `berth server` writes in its default data directory.
pub fn kubeconfig_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(env) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&env).next()
        && !first.as_os_str().is_empty()
    {
        return Ok(first);
    }
    let home = dirs::home_dir().map(|h| h.join(".kube").join("config"));
    if let Some(h) = home.filter(|h| h.exists()) {
        return Ok(h);
    }
    let local = apiserver::default_data_dir().join(apiserver::kubeconfig::file_name(
        apiserver::auth::Role::Admin,
    ));
    if local.exists() {
        return Ok(local);
    }
    anyhow::bail!(
        "no kubeconfig: pass --kubeconfig FILE, set KUBECONFIG, or run this on the machine of `berth server` (its admin kubeconfig is {})",
        local.display()
    )
}

/// A client for the cluster named by [`kubeconfig_path`].
pub async fn client(flag: Option<&Path>) -> anyhow::Result<kube::Client> {
    let path = kubeconfig_path(flag)?;
    let kc = Kubeconfig::read_from(&path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client from {}", path.display()))
}

/// The `berth.dev/v1` `RegistryHost` resource.
pub fn registry_hosts(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("berth.dev", "v1", "RegistryHost");
    Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "registryhosts"),
    )
}

/// The object name for a host:port: lowercase, every character outside `[a-z0-9.-]` as `-`
/// (`registry.example.com:5000` -> `registry.example.com-5000`).
pub fn registry_host_name(host: &HostPort) -> String {
    let raw: String = host
        .to_string()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    raw.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// What [`trust_host`] did.
pub enum TrustChange {
    Created(String),
    Updated(String),
    Unchanged(String),
}

/// Adds `pem` (one certificate whose SHA-256 is `fingerprint`, lowercase hex) to the cluster's
/// `RegistryHost` for `host`, creating it when absent. Retries on a concurrent update.
pub async fn trust_host(
    client: kube::Client,
    host: &HostPort,
    pem: &str,
    fingerprint: &str,
) -> anyhow::Result<TrustChange> {
    let api = registry_hosts(client);
    let name = registry_host_name(host);
    let pin = format!("sha256:{fingerprint}");
    for _ in 0..5 {
        let Some(mut obj) = api
            .get_opt(&name)
            .await
            .with_context(|| format!("cannot read RegistryHost {name}"))?
        else {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "berth.dev/v1",
                "kind": "RegistryHost",
                "metadata": {"name": name},
                "spec": {"host": host.to_string(), "caBundle": pem, "pinnedFingerprints": [pin]},
            }))?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => return Ok(TrustChange::Created(name)),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create RegistryHost {name}"));
                }
            }
        };
        let spec = obj.data["spec"].as_object_mut().with_context(|| {
            format!("RegistryHost {name} has no spec; fix it with kubectl edit registryhost {name}")
        })?;
        let existing = spec.get("host").and_then(|h| h.as_str()).unwrap_or("");
        let same_host = HostPort::parse(existing, 443).is_some_and(|h| &h == host);
        anyhow::ensure!(
            same_host,
            "RegistryHost {name} already exists for host {existing:?}, not {host}; add the CA to that object by hand (kubectl edit registryhost {name}) or rename it"
        );
        let pins = spec
            .entry("pinnedFingerprints")
            .or_insert_with(|| json!([]));
        if pins
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == &json!(pin)))
        {
            return Ok(TrustChange::Unchanged(name));
        }
        if let Some(list) = pins.as_array_mut() {
            list.push(json!(pin));
        }
        let bundle = spec
            .get("caBundle")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim_end()
            .to_string();
        let joined = if bundle.is_empty() {
            pem.to_string()
        } else {
            format!("{bundle}\n{pem}")
        };
        spec.insert("caBundle".into(), json!(joined));
        match api.replace(&name, &PostParams::default(), &obj).await {
            Ok(_) => return Ok(TrustChange::Updated(name)),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot update RegistryHost {name}")),
        }
    }
    anyhow::bail!("RegistryHost {name} kept changing under this update; run the command again")
}

#[cfg(test)]
mod tests {
    use super::registry_host_name;
    use registry::HostPort;

    #[test]
    fn registry_host_names_are_dns_subdomains_derived_from_host_and_port() {
        let name = |s: &str| registry_host_name(&HostPort::parse(s, 443).unwrap());
        assert_eq!(
            name("Registry.Example.com:5000"),
            "registry.example.com-5000"
        );
        assert_eq!(name("127.0.0.2:8443"), "127.0.0.2-8443");
        assert_eq!(name("reg.example"), "reg.example-443");
        assert_eq!(name("[::1]:5000"), "1--5000");
    }
}
