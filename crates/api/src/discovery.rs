//! Discovery documents generated from [`crate::resources`]: legacy `APIVersions` (`/api`),
//! `APIGroupList` (`/apis`), `APIResourceList` (`/api/v1`, `/apis/<group>/<version>`), and aggregated
//! discovery `APIGroupDiscoveryList` (v2 and v2beta1) for `/api` and `/apis`, in the shapes kubectl
//! 1.27-1.33 accept.
//!
//! Content negotiation (which document and content type a request gets) is the API server's job; this
//! module only builds the bodies, once, and hands out shared bytes.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::resources::{self, ResourceInfo};

/// Content type of an aggregated discovery v2 answer (must be sent exactly like this).
pub const AGGREGATED_V2_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Content type of an aggregated discovery v2beta1 answer (kubectl 1.27-1.29 ask only for this one).
pub const AGGREGATED_V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which root an aggregated document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `/api`: the core group.
    Api,
    /// `/apis`: every named group.
    Apis,
}

/// Which aggregated discovery version to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`.
    V2beta1,
}

impl AggregatedVersion {
    /// The exact response content type for this version.
    pub fn content_type(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => AGGREGATED_V2_CONTENT_TYPE,
            AggregatedVersion::V2beta1 => AGGREGATED_V2BETA1_CONTENT_TYPE,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }
}

/// `GET /api`: `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[...]}`;
/// `server_address` is the `host:port` clients reach the server at.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `GET /apis`: every named group with its (single, preferred) version.
pub fn api_group_list() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let groups: Vec<Value> = resources::group_versions()
            .into_iter()
            .filter(|gv| !gv.group.is_empty())
            .map(|gv| {
                let v = json!({"groupVersion": gv.group_version, "version": gv.version});
                json!({"name": gv.group, "versions": [v.clone()], "preferredVersion": v})
            })
            .collect();
        to_bytes(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
    })
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: the `APIResourceList`, or `None` for a group-version
/// berth does not serve.
pub fn api_resource_list(group: &str, version: &str) -> Option<&'static [u8]> {
    static LISTS: OnceLock<Vec<(String, String, Vec<u8>)>> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        resources::group_versions()
            .into_iter()
            .map(|gv| {
                let mut entries = Vec::new();
                for r in resources::resources_of(gv.group, gv.version) {
                    entries.push(resource_entry(r));
                    for s in r.subresources {
                        let mut e = Map::new();
                        e.insert("name".into(), json!(format!("{}/{}", r.plural, s.name)));
                        e.insert("singularName".into(), json!(""));
                        e.insert("namespaced".into(), json!(r.namespaced));
                        if (s.response_group, s.response_version) != (r.group, r.version) {
                            e.insert("group".into(), json!(s.response_group));
                            e.insert("version".into(), json!(s.response_version));
                        }
                        e.insert("kind".into(), json!(s.response_kind));
                        e.insert("verbs".into(), json!(s.verbs));
                        entries.push(Value::Object(e));
                    }
                }
                let doc = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv.group_version, "resources": entries});
                (gv.group.to_string(), gv.version.to_string(), to_bytes(&doc))
            })
            .collect()
    });
    lists
        .iter()
        .find(|(g, v, _)| g == group && v == version)
        .map(|(_, _, b)| b.as_slice())
}

fn resource_entry(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), json!(r.plural));
    e.insert("singularName".into(), json!(r.singular));
    e.insert("namespaced".into(), json!(r.namespaced));
    e.insert("kind".into(), json!(r.kind));
    e.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    Value::Object(e)
}

/// The aggregated discovery document (`APIGroupDiscoveryList`) for `/api` or `/apis`.
pub fn aggregated(root: Root, version: AggregatedVersion) -> &'static [u8] {
    static DOCS: OnceLock<[Vec<u8>; 4]> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        [
            to_bytes(&aggregated_value(Root::Api, AggregatedVersion::V2)),
            to_bytes(&aggregated_value(Root::Apis, AggregatedVersion::V2)),
            to_bytes(&aggregated_value(Root::Api, AggregatedVersion::V2beta1)),
            to_bytes(&aggregated_value(Root::Apis, AggregatedVersion::V2beta1)),
        ]
    });
    let i = match (root, version) {
        (Root::Api, AggregatedVersion::V2) => 0,
        (Root::Apis, AggregatedVersion::V2) => 1,
        (Root::Api, AggregatedVersion::V2beta1) => 2,
        (Root::Apis, AggregatedVersion::V2beta1) => 3,
    };
    &docs[i]
}

fn aggregated_value(root: Root, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|gv| gv.group.is_empty() == (root == Root::Api))
        .map(|gv| {
            let resources: Vec<Value> = resources::resources_of(gv.group, gv.version).map(aggregated_resource).collect();
            json!({
                "metadata": {"name": gv.group, "creationTimestamp": null},
                "versions": [{"version": gv.version, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": version.api_version(), "metadata": {}, "items": items})
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("resource".into(), json!(r.plural));
    e.insert(
        "responseKind".into(),
        json!({"group": r.group, "version": r.version, "kind": r.kind}),
    );
    e.insert(
        "scope".into(),
        json!(if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    e.insert("singularResource".into(), json!(r.singular));
    e.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.response_group, "version": s.response_version, "kind": s.response_kind},
                    "verbs": s.verbs,
                })
            })
            .collect();
        e.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(e)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("discovery documents serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn legacy_api_versions_matches_the_documented_shape() {
        assert_eq!(
            api_versions("127.0.0.1:18080"),
            json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:18080"}]})
        );
    }

    #[test]
    fn api_group_list_names_apps_coordination_and_berth() {
        let v = parse(api_group_list());
        assert_eq!(v["kind"], "APIGroupList");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(
            v["groups"][0],
            json!({"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}})
        );
        assert_eq!(v["groups"][1]["name"], "coordination.k8s.io");
        assert_eq!(v["groups"][2]["name"], "berth.dev");
        assert_eq!(v["groups"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn api_resource_list_matches_the_documented_pod_entries() {
        let v = parse(api_resource_list("", "v1").unwrap());
        assert_eq!(
            (v["kind"].as_str(), v["groupVersion"].as_str()),
            (Some("APIResourceList"), Some("v1"))
        );
        let res = v["resources"].as_array().unwrap();
        let find = |n: &str| {
            res.iter()
                .find(|r| r["name"] == n)
                .unwrap_or_else(|| panic!("{n}"))
                .clone()
        };
        assert_eq!(
            find("pods"),
            json!({"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["po"],"categories":["all"]})
        );
        assert_eq!(
            find("pods/log"),
            json!({"name":"pods/log","singularName":"","namespaced":true,"kind":"Pod","verbs":["get"]})
        );
        assert_eq!(
            find("pods/status")["verbs"],
            json!(["get", "patch", "update"])
        );
        assert_eq!(find("namespaces")["namespaced"], false);
        let apps = parse(api_resource_list("apps", "v1").unwrap());
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap()
            .clone();
        assert_eq!(
            (
                scale["group"].as_str(),
                scale["version"].as_str(),
                scale["kind"].as_str()
            ),
            (Some("autoscaling"), Some("v1"), Some("Scale"))
        );
        assert!(api_resource_list("batch", "v1").is_none());
    }

    #[test]
    fn aggregated_discovery_matches_the_documented_shape() {
        let v = parse(aggregated(Root::Apis, AggregatedVersion::V2));
        assert_eq!(v["kind"], "APIGroupDiscoveryList");
        assert_eq!(v["apiVersion"], "apidiscovery.k8s.io/v2");
        let apps = &v["items"][0];
        assert_eq!(
            apps["metadata"],
            json!({"name":"apps","creationTimestamp":null})
        );
        assert_eq!(apps["versions"][0]["version"], "v1");
        assert_eq!(apps["versions"][0]["freshness"], "Current");
        let resources = apps["versions"][0]["resources"].as_array().unwrap();
        let names: Vec<_> = resources
            .iter()
            .map(|r| r["resource"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "controllerrevisions",
                "deployments",
                "replicasets",
                "statefulsets"
            ]
        );
        let deploy = &resources[1];
        assert_eq!(deploy["resource"], "deployments");
        assert_eq!(
            deploy["responseKind"],
            json!({"group":"apps","version":"v1","kind":"Deployment"})
        );
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap()
            .clone();
        assert_eq!(
            scale["responseKind"],
            json!({"group":"autoscaling","version":"v1","kind":"Scale"})
        );
        let core = parse(aggregated(Root::Api, AggregatedVersion::V2));
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let ns = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap()
            .clone();
        assert_eq!(ns["scope"], "Cluster");
        let beta = parse(aggregated(Root::Api, AggregatedVersion::V2beta1));
        assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert_eq!(beta["items"], core["items"]);
    }

    #[test]
    fn every_resource_has_verbs_and_every_short_name_is_advertised() {
        for root in [Root::Api, Root::Apis] {
            let v = parse(aggregated(root, AggregatedVersion::V2));
            for item in v["items"].as_array().unwrap() {
                for r in item["versions"][0]["resources"].as_array().unwrap() {
                    assert!(!r["verbs"].as_array().unwrap().is_empty(), "{r}");
                }
            }
        }
        let all: String = [
            aggregated(Root::Api, AggregatedVersion::V2),
            aggregated(Root::Apis, AggregatedVersion::V2),
        ]
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
        for short in ["po", "deploy", "rs", "sts", "ns", "cm", "ev", "no", "sa"] {
            assert!(all.contains(&format!("\"{short}\"")), "{short}");
        }
        assert_eq!(
            AggregatedVersion::V2.content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }
}
