//! Request path parsing: turns a URL path into the endpoint it names (discovery, OpenAPI, health, or a resource
//! path with group, version, namespace, resource, name and subresource). Pure string work; it must never look at
//! storage or the body, and never decide authorization.

use percent_encoding::percent_decode_str;

/// One health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthz,
    Livez,
    Readyz,
}

/// A resource URL: `/api/v1/...` or `/apis/<group>/<version>/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    /// Plural resource name (`pods`).
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health(Health),
    /// `/api`
    LegacyRoot,
    /// `/apis`
    GroupsRoot,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/openapi/v3`
    OpenApiV3Index,
    /// `/openapi/v3/<api/v1 | apis/g/v>`
    OpenApiV3 {
        gv_path: String,
    },
    /// `/openapi/v2` (and the legacy swagger path)
    OpenApiV2,
    Resource(ResourcePath),
    NotFound,
}

fn segments(path: &str) -> Option<Vec<String>> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

/// Parses a request path (without the query string).
pub fn parse(path: &str) -> Route {
    let Some(segs) = segments(path) else {
        return Route::NotFound;
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz", ..] => Route::Health(Health::Healthz),
        ["livez", ..] => Route::Health(Health::Livez),
        ["readyz", ..] => Route::Health(Health::Readyz),
        ["api"] => Route::LegacyRoot,
        ["apis"] => Route::GroupsRoot,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3 {
            gv_path: rest.join("/"),
        },
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => Route::OpenApiV2,
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let rp = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.map(str::to_string),
            resource: resource.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        // A namespace's own subresources: /api/v1/namespaces/<ns>/status|finalize.
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            rp(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, res] => rp(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => rp(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => rp(Some(ns), res, Some(name), Some(sub)),
        [res] => rp(None, res, None, None),
        [res, name] => rp(None, res, Some(name), None),
        [res, name, sub] => rp(None, res, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_collection_item_and_subresource_paths_parse() {
        let r = res("/api/v1/namespaces/default/pods");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name
            ),
            ("", Some("default"), "pods", None)
        );
        let r = res("/apis/apps/v1/namespaces/ns1/deployments/x/scale");
        assert_eq!(r.group, "apps");
        assert_eq!(r.name.as_deref(), Some("x"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespaces_themselves_and_their_subresources_are_cluster_scoped() {
        let r = res("/api/v1/namespaces/team1");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("team1"))
        );
        let r = res("/api/v1/namespaces/team1/finalize");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("team1"), Some("finalize"))
        );
        let r = res("/api/v1/pods");
        assert_eq!((r.namespace, r.resource.as_str()), (None, "pods"));
    }

    #[test]
    fn discovery_and_openapi_paths_parse() {
        assert_eq!(parse("/api"), Route::LegacyRoot);
        assert_eq!(parse("/apis/"), Route::GroupsRoot);
        assert_eq!(
            parse("/api/v1"),
            Route::GroupVersion {
                group: String::new(),
                version: "v1".into()
            }
        );
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3 {
                gv_path: "apis/apps/v1".into()
            }
        );
        assert_eq!(parse("/readyz"), Route::Health(Health::Readyz));
        assert_eq!(parse("/nope"), Route::NotFound);
        assert_eq!(parse("/api/v1/namespaces/a/b/c/d/e"), Route::NotFound);
    }
}
