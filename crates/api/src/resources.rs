//! The registry of every kind berth serves: group, version, kind, plural, singular, short names, scope,
//! verbs, categories and subresources, with the same values `kubectl api-resources` shows against an
//! upstream kube-apiserver (plus berth's own cluster-scoped `registryhosts.berth.dev`, and the create-only
//! `registrychecks.berth.dev`, a review-style request that is answered and never stored).
//!
//! Everything else in this crate (defaulting, validation, unknown-field detection, OpenAPI, discovery,
//! Status errors) is keyed by a [`ResourceInfo`] from this table. The table is static data: it never
//! touches storage or HTTP, and it must never list a kind that berth cannot actually serve.

/// The verbs of a full read-write collection of an upstream built-in kind.
const FULL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces have no `deletecollection` upstream.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const SCALE_VERBS: &[&str] = &["get", "patch", "update"];
const LOG_VERBS: &[&str] = &["get"];
const BINDING_VERBS: &[&str] = &["create"];
/// Review-style kinds that are answered on create and never stored (upstream `tokenreviews`).
const CREATE_ONLY_VERBS: &[&str] = &["create"];

/// Group name berth uses for its own kinds.
pub const BERTH_GROUP: &str = "berth.dev";

/// One subresource of a kind (`pods/status`, `deployments/scale`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Name after the slash, e.g. `status`.
    pub name: &'static str,
    /// Group of the object the subresource answers with (`autoscaling` for `scale`).
    pub response_group: &'static str,
    /// Version of the object the subresource answers with.
    pub response_version: &'static str,
    /// Kind of the object the subresource answers with (`Scale` for `scale`).
    pub response_kind: &'static str,
    /// Verbs allowed on the subresource.
    pub verbs: &'static [&'static str],
}

/// Static description of one served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the legacy core group.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// `apiVersion` written in objects: `v1` or `group/version`.
    pub api_version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Kind of the collection, e.g. `PodList`.
    pub list_kind: &'static str,
    /// Plural resource name used in URLs, e.g. `pods`.
    pub plural: &'static str,
    /// Singular resource name, e.g. `pod`.
    pub singular: &'static str,
    /// Short names kubectl accepts, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs allowed on the main resource.
    pub verbs: &'static [&'static str],
    /// Categories (`all`) the resource belongs to.
    pub categories: &'static [&'static str],
    /// Served subresources.
    pub subresources: &'static [Subresource],
    /// Name of the OpenAPI component schema of the kind.
    pub schema_name: &'static str,
}

impl ResourceInfo {
    /// `group/version`, or just the version for the core group.
    pub fn group_version(&self) -> &'static str {
        self.api_version
    }

    /// Group name used in storage keys: `core` for the legacy group.
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// Key prefix of every object of this resource: `/registry/<group or core>/<plural>/`.
    pub fn storage_prefix(&self) -> String {
        format!("/registry/{}/{}/", self.storage_group(), self.plural)
    }

    /// Key prefix of the objects of one namespace (the whole resource for cluster-scoped kinds).
    pub fn storage_namespace_prefix(&self, namespace: &str) -> String {
        if self.namespaced {
            format!("{}{}/", self.storage_prefix(), namespace)
        } else {
            self.storage_prefix()
        }
    }

    /// Storage key of one object. `namespace` is ignored for cluster-scoped kinds.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.storage_prefix(), ns, name),
            _ => format!("{}{}", self.storage_prefix(), name),
        }
    }

    /// `pods` or `deployments.apps`, the resource as upstream error messages name it.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod` or `Deployment.apps`, the kind as upstream `Invalid` messages name it.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether the main resource allows `verb`.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The served subresource called `name`, if any.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// URL path of the collection: `/api/v1/namespaces/{ns}/pods`, `/apis/apps/v1/deployments` (all
    /// namespaces or cluster-scoped when `namespace` is `None`).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }

    /// Whether `name` (any case for the kind) names this resource the way kubectl lets a user name
    /// it: plural, singular, short name or kind.
    pub fn matches_name(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.short_names.contains(&name)
            || self.kind.eq_ignore_ascii_case(name)
    }
}

const fn sub(
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        response_group: group,
        response_version: "v1",
        response_kind: kind,
        verbs,
    }
}

/// Every served resource, in discovery order (core first, then apps, coordination.k8s.io, berth.dev).
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.core.v1.ConfigMap",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.core.v1.Event",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        verbs: NAMESPACE_VERBS,
        categories: &[],
        subresources: &[sub("status", "", "Namespace", STATUS_VERBS)],
        schema_name: "io.k8s.api.core.v1.Namespace",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[sub("status", "", "Node", STATUS_VERBS)],
        schema_name: "io.k8s.api.core.v1.Node",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &["all"],
        subresources: &[
            sub("binding", "", "Binding", BINDING_VERBS),
            sub("log", "", "Pod", LOG_VERBS),
            sub("status", "", "Pod", STATUS_VERBS),
        ],
        schema_name: "io.k8s.api.core.v1.Pod",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "Secret",
        list_kind: "SecretList",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.core.v1.Secret",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.core.v1.ServiceAccount",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        api_version: "apps/v1",
        kind: "ControllerRevision",
        list_kind: "ControllerRevisionList",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        short_names: &[],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.apps.v1.ControllerRevision",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        api_version: "apps/v1",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &["all"],
        subresources: &[
            sub("scale", "autoscaling", "Scale", SCALE_VERBS),
            sub("status", "apps", "Deployment", STATUS_VERBS),
        ],
        schema_name: "io.k8s.api.apps.v1.Deployment",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        api_version: "apps/v1",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &["all"],
        subresources: &[
            sub("scale", "autoscaling", "Scale", SCALE_VERBS),
            sub("status", "apps", "ReplicaSet", STATUS_VERBS),
        ],
        schema_name: "io.k8s.api.apps.v1.ReplicaSet",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        api_version: "apps/v1",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &["all"],
        subresources: &[
            sub("scale", "autoscaling", "Scale", SCALE_VERBS),
            sub("status", "apps", "StatefulSet", STATUS_VERBS),
        ],
        schema_name: "io.k8s.api.apps.v1.StatefulSet",
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        api_version: "coordination.k8s.io/v1",
        kind: "Lease",
        list_kind: "LeaseList",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        namespaced: true,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "io.k8s.api.coordination.v1.Lease",
    },
    ResourceInfo {
        group: BERTH_GROUP,
        version: "v1",
        api_version: "berth.dev/v1",
        kind: "RegistryHost",
        list_kind: "RegistryHostList",
        plural: "registryhosts",
        singular: "registryhost",
        short_names: &["rh"],
        namespaced: false,
        verbs: FULL_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "dev.berth.v1.RegistryHost",
    },
    // A review-style kind (like upstream's TokenReview): created to ask a node agent to test a registry
    // connection, answered with the result in `status`, never stored.
    ResourceInfo {
        group: BERTH_GROUP,
        version: "v1",
        api_version: "berth.dev/v1",
        kind: "RegistryCheck",
        list_kind: "RegistryCheckList",
        plural: "registrychecks",
        singular: "registrycheck",
        short_names: &[],
        namespaced: false,
        verbs: CREATE_ONLY_VERBS,
        categories: &[],
        subresources: &[],
        schema_name: "dev.berth.v1.RegistryCheck",
    },
];

/// Every served resource.
pub fn all() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource served at `/<group>/<version>/<plural>` (group empty for the core group).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in a group and version.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The resource of an object's `apiVersion` and `kind` (`v1`/`Pod`, `apps/v1`/`Deployment`).
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
}

/// The resource of a bare kind name (kinds are unique across berth's groups).
pub fn by_kind_name(kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The resource a user-typed name refers to (plural, singular, short name or kind), as kubectl
/// resolves `kubectl get po`.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.matches_name(name))
}

/// One served group and its versions (berth serves one version per group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupVersion {
    /// Group name, empty for core.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// `v1` or `group/version`.
    pub group_version: &'static str,
}

/// The served group-versions, core first, in the order of [`RESOURCES`].
pub fn group_versions() -> Vec<GroupVersion> {
    let mut out: Vec<GroupVersion> = Vec::new();
    for r in RESOURCES {
        if !out
            .iter()
            .any(|g| g.group == r.group && g.version == r.version)
        {
            out.push(GroupVersion {
                group: r.group,
                version: r.version,
                group_version: r.api_version,
            });
        }
    }
    out
}

/// The resources of one group-version.
pub fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let (group, version) = (group.to_string(), version.to_string());
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubectl api-resources` against kube-apiserver 1.32 (rows for the kinds berth serves):
    /// NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND.
    const UPSTREAM_API_RESOURCES: &[(&str, &str, &str, bool, &str)] = &[
        ("configmaps", "cm", "v1", true, "ConfigMap"),
        ("events", "ev", "v1", true, "Event"),
        ("namespaces", "ns", "v1", false, "Namespace"),
        ("nodes", "no", "v1", false, "Node"),
        ("pods", "po", "v1", true, "Pod"),
        ("secrets", "", "v1", true, "Secret"),
        ("serviceaccounts", "sa", "v1", true, "ServiceAccount"),
        ("deployments", "deploy", "apps/v1", true, "Deployment"),
        ("replicasets", "rs", "apps/v1", true, "ReplicaSet"),
        ("statefulsets", "sts", "apps/v1", true, "StatefulSet"),
        (
            "controllerrevisions",
            "",
            "apps/v1",
            true,
            "ControllerRevision",
        ),
        ("leases", "", "coordination.k8s.io/v1", true, "Lease"),
    ];

    #[test]
    fn registry_matches_upstream_api_resources_rows() {
        for (plural, short, api_version, namespaced, kind) in UPSTREAM_API_RESOURCES {
            let r =
                by_api_version_kind(api_version, kind).unwrap_or_else(|| panic!("{kind} missing"));
            assert_eq!(r.plural, *plural);
            assert_eq!(r.short_names.join(","), *short);
            assert_eq!(r.namespaced, *namespaced, "{kind}");
            assert_eq!(r.singular, kind.to_lowercase());
        }
    }

    #[test]
    fn category_all_holds_exactly_the_upstream_workload_kinds() {
        let mut all: Vec<_> = RESOURCES
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        all.sort();
        assert_eq!(all, ["deployments", "pods", "replicasets", "statefulsets"]);
    }

    #[test]
    fn lookup_by_plural_and_by_kind_agree() {
        for r in RESOURCES {
            assert_eq!(lookup(r.group, r.version, r.plural), Some(r));
            assert_eq!(by_kind(r.group, r.version, r.kind), Some(r));
            assert_eq!(by_kind_name(r.kind), Some(r));
        }
        assert!(lookup("", "v1", "deployments").is_none());
        assert!(lookup("apps", "v1beta1", "deployments").is_none());
    }

    #[test]
    fn storage_keys_follow_the_store_contract() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.storage_prefix(), "/registry/core/pods/");
        assert_eq!(
            pods.storage_key(Some("default"), "foo"),
            "/registry/core/pods/default/foo"
        );
        assert_eq!(
            pods.storage_namespace_prefix("default"),
            "/registry/core/pods/default/"
        );
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(
            deploy.storage_key(Some("ns1"), "web"),
            "/registry/apps/deployments/ns1/web"
        );
        let ns = lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.storage_key(Some("ignored"), "team1"),
            "/registry/core/namespaces/team1"
        );
        let rh = by_kind_name("RegistryHost").unwrap();
        assert_eq!(rh.storage_prefix(), "/registry/berth.dev/registryhosts/");
    }

    #[test]
    fn scale_subresources_answer_with_autoscaling_v1_scale() {
        for plural in ["deployments", "replicasets", "statefulsets"] {
            let s = lookup("apps", "v1", plural)
                .unwrap()
                .subresource("scale")
                .unwrap();
            assert_eq!(
                (s.response_group, s.response_version, s.response_kind),
                ("autoscaling", "v1", "Scale")
            );
        }
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.subresource("log").unwrap().verbs, ["get"]);
        assert!(pods.subresource("exec").is_none());
        let binding = pods.subresource("binding").unwrap();
        assert_eq!(
            (binding.response_kind, binding.verbs),
            ("Binding", &["create"][..])
        );
    }

    #[test]
    fn qualified_names_match_upstream_error_texts() {
        assert_eq!(
            lookup("", "v1", "pods").unwrap().qualified_resource(),
            "pods"
        );
        assert_eq!(
            lookup("apps", "v1", "statefulsets")
                .unwrap()
                .qualified_resource(),
            "statefulsets.apps"
        );
        assert_eq!(
            by_kind_name("Deployment").unwrap().qualified_kind(),
            "Deployment.apps"
        );
        assert_eq!(by_kind_name("Secret").unwrap().qualified_kind(), "Secret");
    }

    #[test]
    fn resolve_accepts_short_names_singulars_and_kinds() {
        for (name, plural) in [
            ("po", "pods"),
            ("deploy", "deployments"),
            ("sts", "statefulsets"),
            ("ns", "namespaces"),
            ("cm", "configmaps"),
            ("ev", "events"),
            ("no", "nodes"),
            ("sa", "serviceaccounts"),
            ("rs", "replicasets"),
            ("pod", "pods"),
            ("Deployment", "deployments"),
            ("secrets", "secrets"),
            ("rh", "registryhosts"),
            ("leases", "leases"),
            ("registrycheck", "registrychecks"),
        ] {
            assert_eq!(resolve(name).map(|r| r.plural), Some(plural), "{name}");
        }
        assert!(resolve("foos").is_none());
    }

    #[test]
    fn group_versions_list_core_then_apps_then_coordination_then_berth() {
        let gvs: Vec<_> = group_versions().iter().map(|g| g.group_version).collect();
        assert_eq!(
            gvs,
            ["v1", "apps/v1", "coordination.k8s.io/v1", "berth.dev/v1"]
        );
        assert_eq!(resources_of("apps", "v1").count(), 4);
    }

    #[test]
    fn collection_paths_follow_the_rest_layout() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        let rh = by_kind_name("RegistryHost").unwrap();
        assert_eq!(
            rh.collection_path(Some("x")),
            "/apis/berth.dev/v1/registryhosts"
        );
    }

    #[test]
    fn registry_checks_are_cluster_scoped_and_create_only() {
        let rc = lookup(BERTH_GROUP, "v1", "registrychecks").unwrap();
        assert_eq!((rc.kind, rc.namespaced), ("RegistryCheck", false));
        assert_eq!(rc.verbs, ["create"]);
        assert!(rc.subresources.is_empty());
        assert_eq!(
            rc.collection_path(None),
            "/apis/berth.dev/v1/registrychecks"
        );
    }
}
