//! Image pull Secrets: `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`) and `kubernetes.io/dockercfg`
//! (`.dockercfg`), read from a manifest as `kubectl` writes it (YAML or JSON, `data` base64 and `stringData`
//! plain, a single Secret or a `List`) or from an API object's type and data map. It owns the kubelet rules of
//! `secrets.go`: any other type, or an empty value, contributes nothing; a malformed value is an error naming the
//! secret and the field. It must never include a value (or a fragment of one) in an error or debug output.

use std::collections::BTreeMap;
use std::fmt;

use crate::docker_config::{self, DecodeError, DockerConfigEntry, go_base64_decode};
use crate::keyring::Origin;

pub const TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";
pub const KEY_DOCKERCFG: &str = ".dockercfg";

/// Why a pull secret (or a manifest holding one) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// A value inside the secret is malformed.
    #[error("secret {name:?}: .data[{key:?}]: {problem}")]
    Data {
        name: String,
        key: String,
        problem: DecodeError,
    },
    /// A `data` value is not base64.
    #[error("secret {name:?}: .data[{key:?}]: invalid base64: {message}")]
    Base64 {
        name: String,
        key: String,
        message: String,
    },
    /// The manifest itself is unusable.
    #[error("{origin}: {message}")]
    Manifest { origin: String, message: String },
}

/// A Secret as far as pulling is concerned. `Debug` shows only names, types and the data keys.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSecret {
    pub namespace: Option<String>,
    pub name: String,
    pub secret_type: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for PullSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type", &self.secret_type)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn yaml_str<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

impl PullSecret {
    /// From an API object's fields (data already decoded from base64, as the API client gives it).
    pub fn from_parts(
        namespace: Option<&str>,
        name: &str,
        secret_type: &str,
        data: BTreeMap<String, Vec<u8>>,
    ) -> PullSecret {
        PullSecret {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            secret_type: secret_type.to_owned(),
            data,
        }
    }

    /// Parses a manifest (`kubectl get secret -o yaml|json`, or a file for `kubectl apply`): one Secret or a
    /// `List` of them. `origin` names the file in errors.
    pub fn from_manifest(text: &[u8], origin: &str) -> Result<Vec<PullSecret>, SecretError> {
        let err = |message: String| SecretError::Manifest {
            origin: origin.to_owned(),
            message,
        };
        let doc: serde_yaml::Value = serde_yaml::from_slice(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            err(format!(
                "invalid YAML or JSON{at}: the file must be a Secret manifest"
            ))
        })?;
        match yaml_str(&doc, "kind") {
            Some("Secret") => Ok(vec![Self::from_yaml_object(&doc, origin)?]),
            Some("List") | Some("SecretList") => {
                let items = doc
                    .get("items")
                    .and_then(|i| i.as_sequence())
                    .ok_or_else(|| err("List without items".into()))?;
                items
                    .iter()
                    .map(|i| Self::from_yaml_object(i, origin))
                    .collect()
            }
            Some(other) => Err(err(format!("kind is {other:?}, expected \"Secret\""))),
            None => Err(err(
                "no \"kind\" field: not a Kubernetes manifest (expected kind: Secret)".into(),
            )),
        }
    }

    fn from_yaml_object(obj: &serde_yaml::Value, origin: &str) -> Result<PullSecret, SecretError> {
        let err = |message: String| SecretError::Manifest {
            origin: origin.to_owned(),
            message,
        };
        if yaml_str(obj, "kind") != Some("Secret") {
            return Err(err("a List item is not a Secret".into()));
        }
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| yaml_str(m, "name"))
            .ok_or_else(|| err("metadata.name is missing".into()))?;
        let namespace = meta
            .and_then(|m| yaml_str(m, "namespace"))
            .map(str::to_owned);
        // The API server defaults the type to Opaque.
        let secret_type = yaml_str(obj, "type").unwrap_or("Opaque").to_owned();
        let mut data = BTreeMap::new();
        if let Some(map) = obj.get("data").and_then(|d| d.as_mapping()) {
            for (k, v) in map {
                let key = k
                    .as_str()
                    .ok_or_else(|| err(format!("secret {name:?}: .data has a non-string key")))?;
                let text = match v {
                    serde_yaml::Value::Null => "",
                    serde_yaml::Value::String(s) => s.as_str(),
                    _ => {
                        return Err(err(format!(
                            "secret {name:?}: .data[{key:?}]: expected a base64 string"
                        )));
                    }
                };
                let bytes =
                    go_base64_decode(text, true).map_err(|message| SecretError::Base64 {
                        name: name.to_owned(),
                        key: key.to_owned(),
                        message,
                    })?;
                data.insert(key.to_owned(), bytes);
            }
        }
        // stringData is merged over data by the API server.
        if let Some(map) = obj.get("stringData").and_then(|d| d.as_mapping()) {
            for (k, v) in map {
                let key = k.as_str().ok_or_else(|| {
                    err(format!("secret {name:?}: .stringData has a non-string key"))
                })?;
                let text = v.as_str().ok_or_else(|| {
                    err(format!(
                        "secret {name:?}: .stringData[{key:?}]: expected a string"
                    ))
                })?;
                data.insert(key.to_owned(), text.as_bytes().to_vec());
            }
        }
        Ok(PullSecret {
            namespace,
            name: name.to_owned(),
            secret_type,
            data,
        })
    }

    /// Where credentials from this secret come from.
    pub fn origin(&self) -> Origin {
        Origin::Secret {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// kubelet `secrets.go`: the registry entries, `Ok(None)` when the type is not a docker type or the value is
    /// missing or empty (ignored silently by kubelet; [`PullSecret::ignored_reason`] explains it).
    pub fn docker_entries(&self) -> Result<Option<Vec<(String, DockerConfigEntry)>>, SecretError> {
        let (key, json) = match self.secret_type.as_str() {
            TYPE_DOCKER_CONFIG_JSON => (KEY_DOCKER_CONFIG_JSON, true),
            TYPE_DOCKERCFG => (KEY_DOCKERCFG, false),
            _ => return Ok(None),
        };
        let Some(bytes) = self.data.get(key).filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let parsed = if json {
            docker_config::parse_dockerconfigjson(bytes)
        } else {
            docker_config::parse_dockercfg(bytes)
        };
        parsed.map(Some).map_err(|problem| SecretError::Data {
            name: self.name.clone(),
            key: key.to_owned(),
            problem,
        })
    }

    /// Why kubelet would ignore this secret, if it would.
    pub fn ignored_reason(&self) -> Option<String> {
        let key = match self.secret_type.as_str() {
            TYPE_DOCKER_CONFIG_JSON => KEY_DOCKER_CONFIG_JSON,
            TYPE_DOCKERCFG => KEY_DOCKERCFG,
            other => {
                return Some(format!(
                    "type is {other:?}; only {TYPE_DOCKER_CONFIG_JSON:?} and {TYPE_DOCKERCFG:?} secrets are used for pulls \
                     (create it with kubectl create secret docker-registry)"
                ));
            }
        };
        match self.data.get(key) {
            None => Some(format!("it has no {key:?} key")),
            Some(b) if b.is_empty() => Some(format!("its {key:?} value is empty")),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str =
        r#"{"auths":{"reg.example.com":{"username":"u","password":"p","auth":"dTpw"}}}"#;

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn yaml_manifest_with_base64_data_parses() {
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\n  namespace: team\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            b64(CONFIG)
        );
        let s = PullSecret::from_manifest(yaml.as_bytes(), "regcred.yaml").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].origin(),
            Origin::Secret {
                namespace: Some("team".into()),
                name: "regcred".into()
            }
        );
        let entries = s[0].docker_entries().unwrap().unwrap();
        assert_eq!(entries[0].0, "reg.example.com");
        assert_eq!(entries[0].1.username, "u");
    }

    #[test]
    fn json_manifest_with_string_data_parses() {
        let json = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cfg"},
            "type": "kubernetes.io/dockercfg", "stringData": {".dockercfg": r#"{"quay.io":{"auth":"YTpi"}}"#}});
        let s = PullSecret::from_manifest(json.to_string().as_bytes(), "cfg.json").unwrap();
        let e = s[0].docker_entries().unwrap().unwrap();
        assert_eq!(
            (e[0].1.username.as_str(), e[0].1.password.expose()),
            ("a", "b")
        );
    }

    #[test]
    fn malformed_json_error_names_secret_and_field_only() {
        let mut data = BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_owned(),
            b"{\"a\" secretvalue}".to_vec(),
        );
        let s = PullSecret::from_parts(None, "regcred", TYPE_DOCKER_CONFIG_JSON, data);
        let e = s.docker_entries().unwrap_err().to_string();
        assert!(
            e.starts_with(
                r#"secret "regcred": .data[".dockerconfigjson"]: invalid JSON at line 1 column 6: "#
            ),
            "{e}"
        );
        assert!(!e.contains("secretvalue"), "{e}");
    }

    #[test]
    fn bad_auth_error_names_the_registry_key() {
        let mut data = BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_owned(),
            br#"{"auths":{"r.io":{"auth":"cGFudHM="}}}"#.to_vec(),
        );
        let s = PullSecret::from_parts(None, "regcred", TYPE_DOCKER_CONFIG_JSON, data);
        assert_eq!(
            s.docker_entries().unwrap_err().to_string(),
            r#"secret "regcred": .data[".dockerconfigjson"]: auths["r.io"].auth: unable to parse auth field, must be formatted as base64(username:password)"#
        );
    }

    #[test]
    fn other_types_and_empty_values_are_ignored_with_a_reason() {
        let opaque = PullSecret::from_parts(None, "x", "Opaque", BTreeMap::new());
        assert_eq!(opaque.docker_entries().unwrap(), None);
        assert!(opaque.ignored_reason().unwrap().contains("\"Opaque\""));
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), Vec::new());
        let empty = PullSecret::from_parts(None, "y", TYPE_DOCKER_CONFIG_JSON, data);
        assert_eq!(empty.docker_entries().unwrap(), None);
        assert!(empty.ignored_reason().unwrap().contains("empty"));
    }

    #[test]
    fn invalid_base64_data_is_an_error_naming_the_key() {
        let yaml = "kind: Secret\nmetadata: {name: regcred}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: 'not base64!'}\n";
        let e = PullSecret::from_manifest(yaml.as_bytes(), "f.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"secret "regcred": .data[".dockerconfigjson"]: invalid base64: illegal base64 data at input byte 3"#
        );
    }

    #[test]
    fn non_secret_manifest_is_rejected() {
        let e = PullSecret::from_manifest(b"kind: ConfigMap\nmetadata: {name: x}\n", "cm.yaml")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"cm.yaml: kind is "ConfigMap", expected "Secret""#
        );
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), CONFIG.as_bytes().to_vec());
        let s = PullSecret::from_parts(None, "regcred", TYPE_DOCKER_CONFIG_JSON, data);
        let d = format!("{s:?}");
        assert!(
            d.contains(".dockerconfigjson") && !d.contains("dTpw"),
            "{d}"
        );
    }
}
