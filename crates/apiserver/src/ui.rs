//! Mounting the web console on the API listener: the console's router is nested under `/ui` (it sees paths with
//! the `/ui` prefix stripped: `/ui` and `/ui/` arrive as `/`, `/ui/app.js` as `/app.js`) and is served WITHOUT
//! bearer authentication, because it holds only static assets; the console then calls the API with the user's own
//! token, so it can do nothing that token could not. Every console response carries a strict
//! `Content-Security-Policy` (same origin only, no inline script, no framing) and companion headers, set here so a
//! console bug cannot weaken them. A browser asking for `/` (Accept: text/html) is redirected to `/ui/`; every
//! other request to `/` goes through the API pipeline unchanged. This module must never serve anything but the
//! console's router without authentication, and never look at an `Authorization` header.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;

use crate::app::{self, AppRef};

/// The policy on every console response: the console may load its own scripts, styles, images and fonts and
/// talk to its own origin (the API), nothing else; no inline script, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn wants_html(req: &Request<Body>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

async fn root(State(app): State<AppRef>, req: Request<Body>) -> Response {
    if (req.method() == Method::GET || req.method() == Method::HEAD) && wants_html(&req) {
        return Redirect::temporary("/ui/").into_response();
    }
    app::dispatch(State(app), req).await
}

/// The full router: the API pipeline, plus the console under `/ui` when one is given.
pub fn router(app: AppRef, ui: Option<Router>) -> Router {
    let Some(ui) = ui else {
        return app::router(app);
    };
    Router::new()
        .route("/", any(root))
        .nest_service(
            "/ui",
            ui.layer(axum::middleware::map_response(security_headers)),
        )
        .fallback(app::dispatch)
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::test_app;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    fn console() -> Router {
        Router::new()
            .route(
                "/",
                get(|| async { ([("content-type", "text/html")], "<html>index</html>") }),
            )
            .route("/app.js", get(|| async { "console.log(1)" }))
    }

    async fn call(
        r: &Router,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = r
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn console_assets_are_served_without_a_token_with_a_strict_content_security_policy() {
        let t = test_app().await;
        let r = router(t.app.clone(), Some(console()));
        for uri in ["/ui", "/ui/"] {
            let (code, headers, body) = call(&r, uri, &[]).await;
            assert_eq!(code, StatusCode::OK, "{uri}");
            assert_eq!(body, "<html>index</html>");
            assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
            assert_eq!(headers["x-content-type-options"], "nosniff");
        }
        let (code, headers, body) = call(&r, "/ui/app.js", &[]).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "console.log(1)"));
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        // The API itself still needs a token.
        let (code, _, _) = call(&r, "/api/v1/namespaces", &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _, _) = call(&r, "/uix", &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn only_browsers_asking_for_the_root_are_redirected_to_the_console() {
        let t = test_app().await;
        let r = router(t.app.clone(), Some(console()));
        let (code, headers, _) = call(
            &r,
            "/",
            &[("accept", "text/html,application/xhtml+xml;q=0.9")],
        )
        .await;
        assert_eq!(code, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(headers["location"], "/ui/");
        let (code, _, _) = call(&r, "/", &[("accept", "application/json")]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        // Without a console nothing is redirected and /ui is an ordinary (authenticated) path.
        let plain = router(t.app.clone(), None);
        let (code, _, _) = call(&plain, "/", &[("accept", "text/html")]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, _, _) = call(&plain, "/ui/", &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
}
