//! console: berth's web console, a single-page app whose assets are embedded in the binary and served at `/ui`
//! (index at `/ui/`, files under `/ui/assets/...`). The page logs in with a bearer token the person pastes (kept in
//! the tab's sessionStorage), then talks to the Kubernetes API of the same origin with `fetch` like any client:
//! lists, watches (`?watch=1`, resume by resourceVersion, relist on 410), creates and patches. This crate only serves
//! static bytes: it must never read storage, hold or check a token, proxy a request, or grant anything the user's
//! token lacks; the API server that mounts [`router`] decides every access. Every response carries a strict
//! Content-Security-Policy (`'self'` only), so the page can never load or send anything to another origin.
//!
//! The assets are plain ES modules and CSS with no bundler or framework, so building berth needs no network and no
//! JavaScript tool chain; `include_bytes!` embeds them.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

/// The path prefix the console is served under.
pub const PREFIX: &str = "/ui";

/// The Content-Security-Policy of every console response: same-origin scripts, styles and API calls only, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// Path below `assets/` (the URL is `/ui/assets/<path>`).
    path: &'static str,
    body: &'static [u8],
}

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }),*]
    };
}

/// Every file the page may load. `index.html` is served at `/ui/`; the rest under `/ui/assets/`.
static ASSETS: &[Asset] = embed![
    "index.html",
    "app.css",
    "icon.svg",
    "js/main.js",
    "js/api.js",
    "js/dom.js",
    "js/format.js",
    "js/keyring.js",
    "js/reference.js",
    "js/dockerconfig.js",
    "js/podstatus.js",
    "js/yaml.js",
    "js/registrycheck.js",
    "js/pages/login.js",
    "js/pages/overview.js",
    "js/pages/secrets.js",
    "js/pages/workloads.js",
    "js/pages/pod.js",
    "js/pages/events.js",
    "js/pages/registries.js",
];

/// An asset ready to serve: its bytes, content type and strong ETag.
struct Served {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

static SERVED: LazyLock<HashMap<&'static str, Served>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = hex::encode(&Sha256::digest(a.body)[..16]);
            let etag = HeaderValue::from_str(&format!("\"{digest}\""))
                .expect("a hex digest in quotes is a valid header value");
            (
                a.path,
                Served {
                    body: a.body,
                    content_type: content_type(a.path),
                    etag,
                },
            )
        })
        .collect()
});

/// Headers every console response carries, found or not.
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn etag_matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let want = etag.as_bytes();
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate).as_bytes() == want
    })
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = SERVED.get(path) else {
        let mut response = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("console asset {PREFIX}/assets/{path} not found\n"),
        )
            .into_response();
        security_headers(response.headers_mut());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    };
    let mut response = if etag_matches(request, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    security_headers(headers);
    headers.insert(header::ETAG, asset.etag.clone());
    // Asset URLs carry no content hash, so browsers revalidate every time (a 304 when unchanged): an upgraded
    // berth never runs with a stale mix of modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index(request: HeaderMap) -> Response {
    serve("index.html", &request)
}

async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    if path == "index.html" {
        // The page lives at /ui/ only, so relative URLs and the history have one base.
        return serve("", &request);
    }
    serve(&path, &request)
}

/// The console's routes, relative to where it is mounted: `GET /` (the page) and `GET /assets/{*path}`. The API
/// server nests it under [`PREFIX`] (`nest_service("/ui", console::router())`, so `/ui`, `/ui/` and
/// `/ui/assets/...` reach it with the prefix stripped) without authentication: it serves only public static
/// bytes, and the page asks for a token itself. The page names its files by absolute `/ui/assets/...` URLs.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

/// The embedded asset paths (below `/ui/assets/`), for tests and diagnostics.
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path).filter(|p| *p != "index.html")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    /// Requests go through the same nesting the API server uses.
    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Router::new()
            .nest_service(PREFIX, router())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn index_is_html_with_csp_and_etag() {
        let r = get("/ui/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(
            header(&r, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        assert!(header(&r, "etag").starts_with('"'));
        let text = String::from_utf8(body(r).await).unwrap();
        assert!(text.contains(r#"<script type="module" src="/ui/assets/js/main.js">"#));
    }

    #[tokio::test]
    async fn assets_have_their_content_types() {
        for (path, want) in [
            ("/ui/assets/js/main.js", "text/javascript; charset=utf-8"),
            ("/ui/assets/app.css", "text/css; charset=utf-8"),
            ("/ui/assets/icon.svg", "image/svg+xml"),
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-type"), want, "{path}");
            assert_eq!(
                header(&r, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
        }
    }

    #[tokio::test]
    async fn every_embedded_asset_is_served() {
        for path in asset_paths() {
            let r = get(&format!("/ui/assets/{path}"), &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(!body(r).await.is_empty(), "{path} is empty");
        }
    }

    #[tokio::test]
    async fn unknown_asset_is_404_with_csp() {
        for path in [
            "/ui/assets/nope.js",
            "/ui/assets/../Cargo.toml",
            "/ui/assets/js/../../src/lib.rs",
            "/ui/assets/index.html",
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                header(&r, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(header(&r, "cache-control"), "no-store");
        }
        assert_eq!(get("/ui/other", &[]).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn matching_etag_gives_304_without_body() {
        let first = get("/ui/assets/js/api.js", &[]).await;
        let etag = header(&first, "etag").to_owned();
        let again = get("/ui/assets/js/api.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, "etag"), etag);
        assert!(body(again).await.is_empty());
        let other = get("/ui/assets/js/api.js", &[("if-none-match", "\"0000\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bare_prefix_serves_the_page_too() {
        let r = get("/ui", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    }

    #[tokio::test]
    async fn assets_need_no_authorization_and_ignore_a_bad_one() {
        let r = get("/ui/", &[("authorization", "Bearer not-a-token")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = get("/ui/assets/app.css", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn page_and_scripts_load_nothing_from_another_origin() {
        let forbidden = [
            "src=\"http",
            "src=\"//",
            "href=\"http",
            "href=\"//",
            "url(http",
            "url(//",
            "from 'http",
            "from \"http",
            "import('http",
            "@import",
            "fetch('http",
            "fetch(\"http",
        ];
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for needle in forbidden {
                assert!(
                    !text.contains(needle),
                    "{} loads from another origin ({needle})",
                    a.path
                );
            }
        }
    }
}
