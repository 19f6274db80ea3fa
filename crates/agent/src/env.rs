//! A container's environment and command as kubelet builds them: `envFrom` then `env` in order, values from
//! `value`, `fieldRef` (the downward API fields kubelet resolves itself), `secretKeyRef` and `configMapKeyRef`
//! (read from the pod's own namespace only), and `$(VAR)` expansion in values, `command` and `args` with
//! kubelet's escaping rules (`$$` is a literal `$`, an unknown `$(VAR)` stays as written). It must never read a
//! Secret or ConfigMap of another namespace and never log a value.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

/// kubelet's `expansion.Expand`.
pub(crate) fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[start..i]);
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        i += 3 + end;
                    }
                    None => {
                        out.push_str(&input[i..]);
                        i = bytes.len();
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                    start = i;
                    continue;
                }
            }
            start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&input[start.min(input.len())..]);
    out
}

/// Why a container's configuration cannot be built (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub String);

fn field_value(
    pod: &Pod,
    path: &str,
    host_ip: &str,
    pod_ip: Option<&str>,
) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ip.to_string(),
        "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.unwrap_or_default().to_string(),
        _ => {
            if let Some(k) = quoted("metadata.labels['") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = quoted("metadata.annotations['") {
                m.annotations
                    .as_ref()
                    .and_then(|a| a.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!(
                    "unsupported fieldRef fieldPath {path:?} in the container's env"
                )));
            }
        }
    })
}

/// Reads Secrets and ConfigMaps of the pod's namespace, once each per container build.
struct Lookups {
    client: kube::Client,
    namespace: String,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Lookups {
    async fn secret(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, String>>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let got = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("cannot read secret {:?}: {e}", name)))?;
            let data = got.map(|s| {
                let mut out: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                out.extend(s.string_data.unwrap_or_default());
                out
            });
            self.secrets.insert(name.to_string(), data);
        }
        Ok(self.secrets[name].as_ref())
    }

    async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, String>>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let got = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("cannot read configmap {:?}: {e}", name)))?;
            self.config_maps
                .insert(name.to_string(), got.map(|c| c.data.unwrap_or_default()));
        }
        Ok(self.config_maps[name].as_ref())
    }
}

/// The container's env (`KEY=VALUE`, kubelet's order) plus its expanded command and args.
pub(crate) struct Built {
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
}

pub(crate) async fn build(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    host_ip: &str,
    pod_ip: Option<&str>,
) -> Result<Built, ConfigError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut lookups = Lookups {
        client: client.clone(),
        namespace: namespace.clone(),
        secrets: HashMap::new(),
        config_maps: HashMap::new(),
    };
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |order: &mut Vec<String>, vars: &mut HashMap<String, String>, k: String, v: String| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match lookups.config_map(&r.name).await? {
                Some(data) => {
                    for (k, v) in data.clone() {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("configmap {:?} not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match lookups.secret(&r.name).await? {
                Some(data) => {
                    for (k, v) in data.clone() {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("secret {:?} not found", r.name))),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path, host_ip, pod_ip)?
            } else if let Some(s) = &from.secret_key_ref {
                let optional = s.optional.unwrap_or(false);
                match lookups.secret(&s.name).await? {
                    Some(data) => match data.get(&s.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                s.key, s.name
                            )));
                        }
                    },
                    None if optional => continue,
                    None => return Err(ConfigError(format!("secret {:?} not found", s.name))),
                }
            } else if let Some(c) = &from.config_map_key_ref {
                let optional = c.optional.unwrap_or(false);
                match lookups.config_map(&c.name).await? {
                    Some(data) => match data.get(&c.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                c.key, c.name
                            )));
                        }
                    },
                    None if optional => continue,
                    None => return Err(ConfigError(format!("configmap {:?} not found", c.name))),
                }
            } else {
                return Err(ConfigError(format!(
                    "env {:?}: resourceFieldRef is not supported by berth",
                    e.name
                )));
            }
        } else {
            String::new()
        };
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    let expand_all = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|xs| xs.iter().map(|x| expand(x, &vars)).collect())
    };
    Ok(Built {
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        env: order.iter().map(|k| format!("{k}={}", vars[k])).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("A", "1"), ("NAME", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubelets_rules() {
        let v = vars();
        assert_eq!(expand("$(A)-$(NAME)", &v), "1-web");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$(MISSING)", &v), "$(MISSING)");
        assert_eq!(expand("cost $5", &v), "cost $5");
        assert_eq!(expand("open $(A", &v), "open $(A");
        assert_eq!(expand("trailing $", &v), "trailing $");
        assert_eq!(expand("plain", &v), "plain");
        assert_eq!(expand("", &v), "");
    }

    #[test]
    fn downward_api_fields_resolve_from_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": []},
        }))
        .unwrap();
        assert_eq!(
            field_value(&pod, "metadata.name", "10.0.0.1", None).unwrap(),
            "web"
        );
        assert_eq!(
            field_value(&pod, "spec.nodeName", "10.0.0.1", None).unwrap(),
            "n1"
        );
        assert_eq!(
            field_value(&pod, "status.hostIP", "10.0.0.1", None).unwrap(),
            "10.0.0.1"
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "", None).unwrap(),
            "x"
        );
        assert!(field_value(&pod, "spec.bogus", "", None).is_err());
    }
}
