//! Proves the token server against the real distribution 2.8: anonymous access is denied, a token with
//! `pull` works, an expired token is rejected by the registry, the intersection of scopes is granted, the
//! OAuth2 POST / refresh-token flow works, and a disabled POST answers 404.

use testkit::image::{Compression, Credentials, Entry, ImageBuilder, OCI_MANIFEST};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions};
use testkit::token::{Grant, GrantType, TokenFields, TokenServer, TokenServerOptions, TokenUser};

fn client(ca_pems: &[&str]) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder();
    for pem in ca_pems {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

struct Setup {
    pki: TestPki,
    token: TokenServer,
    registry: Registry,
    digest: String,
}

async fn setup(configure: impl FnOnce(&mut TokenServerOptions)) -> Setup {
    let pki = TestPki::new().unwrap();
    let mut opts = TokenServerOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
        .user(TokenUser::new(
            "ci",
            "push-secret",
            vec![Grant::pull_push("*")],
        ))
        .user(TokenUser::new(
            "reader",
            "read-secret",
            vec![Grant::pull("team/app")],
        ));
    configure(&mut opts);
    let token = TokenServer::start(opts).await.unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(token.registry_auth()),
    )
    .await
    .unwrap();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("hello", "world")], Compression::Gzip)
        .build()
        .unwrap();
    let pushed = img
        .push(
            &registry,
            "team/app:v1",
            Some(&Credentials::new("ci", "push-secret")),
        )
        .await
        .unwrap();
    Setup {
        pki,
        token,
        registry,
        digest: pushed.digest,
    }
}

async fn get_token(
    c: &reqwest::Client,
    s: &Setup,
    user: Option<(&str, &str)>,
    scopes: &[&str],
) -> serde_json::Value {
    let mut req = c
        .get(s.token.realm())
        .query(&[("service", s.token.service())]);
    for scope in scopes {
        req = req.query(&[("scope", scope)]);
    }
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn manifest_status(c: &reqwest::Client, s: &Setup, token: Option<&str>) -> reqwest::Response {
    let mut req = c
        .get(format!("{}/v2/team/app/manifests/v1", s.registry.url()))
        .header("Accept", OCI_MANIFEST);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn anonymous_is_denied_and_pull_token_is_accepted_by_distribution() {
    let s = setup(|_| {}).await;
    let c = client(&[s.pki.ca_pem()]);
    let anon = manifest_status(&c, &s, None).await;
    assert_eq!(anon.status(), 401);
    let challenge = anon.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains(&s.token.realm()), "{challenge}");
    assert!(
        challenge.contains("service=\"testkit-registry\""),
        "{challenge}"
    );

    // anonymous token: no access granted, registry refuses it
    let anon_tok = get_token(&c, &s, None, &["repository:team/app:pull"]).await;
    let resp = manifest_status(&c, &s, anon_tok["token"].as_str()).await;
    assert_eq!(resp.status(), 401);

    let tok = get_token(
        &c,
        &s,
        Some(("reader", "read-secret")),
        &["repository:team/app:pull,push"],
    )
    .await;
    assert_eq!(tok["token"], tok["access_token"]);
    assert_eq!(tok["expires_in"], 300);
    let resp = manifest_status(&c, &s, tok["token"].as_str()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], s.digest.as_str());

    let reqs = s.token.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last.grant, GrantType::Basic);
    assert!(last.basic_auth);
    assert_eq!(last.user.as_deref(), Some("reader"));
    assert_eq!(last.scopes, vec!["repository:team/app:pull,push"]);
    assert!(
        reqs.iter()
            .any(|r| r.grant == GrantType::Anonymous && !r.basic_auth)
    );
}

#[tokio::test]
async fn token_for_another_repository_is_insufficient() {
    let s = setup(|_| {}).await;
    let c = client(&[s.pki.ca_pem()]);
    let tok = s
        .token
        .issue_token("reader", &[("other/app", &["pull"])], 0)
        .unwrap();
    let resp = manifest_status(&c, &s, Some(tok.expose())).await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
}

#[tokio::test]
async fn expired_token_is_rejected_by_distribution() {
    let s = setup(|_| {}).await;
    let c = client(&[s.pki.ca_pem()]);
    // lifetime 300 s issued 1 h ago: expired beyond distribution's 60 s leeway
    let expired = s
        .token
        .issue_token("reader", &[("team/app", &["pull"])], -3600)
        .unwrap();
    let resp = manifest_status(&c, &s, Some(expired.expose())).await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let fresh = s
        .token
        .issue_token("reader", &[("team/app", &["pull"])], 0)
        .unwrap();
    assert_eq!(
        manifest_status(&c, &s, Some(fresh.expose())).await.status(),
        200
    );
}

#[tokio::test]
async fn oauth2_post_password_and_refresh_token_grants_work() {
    let s = setup(|o| o.fields = TokenFields::AccessToken).await;
    let c = client(&[s.pki.ca_pem()]);
    let form = [
        ("grant_type", "password"),
        ("client_id", "berth-test"),
        ("service", s.token.service()),
        ("scope", "repository:team/app:pull"),
        ("access_type", "offline"),
        ("username", "reader"),
        ("password", "read-secret"),
    ];
    let resp: serde_json::Value = c
        .post(s.token.realm())
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp.get("token").is_none());
    let refresh = resp["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        manifest_status(&c, &s, resp["access_token"].as_str())
            .await
            .status(),
        200
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "berth-test"),
        ("service", s.token.service()),
        ("scope", "repository:team/app:pull"),
        ("refresh_token", refresh.as_str()),
    ];
    let resp: serde_json::Value = c
        .post(s.token.realm())
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        manifest_status(&c, &s, resp["access_token"].as_str())
            .await
            .status(),
        200
    );
    let grants: Vec<GrantType> = s.token.requests().iter().map(|r| r.grant.clone()).collect();
    assert!(
        grants.ends_with(&[GrantType::Password, GrantType::RefreshToken]),
        "{grants:?}"
    );

    let bad = c
        .post(s.token.realm())
        .form(&[
            ("grant_type", "password"),
            ("client_id", "x"),
            ("service", "y"),
            ("username", "reader"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn disabled_post_answers_404_so_clients_fall_back_to_get() {
    let s = setup(|o| o.post = false).await;
    let c = client(&[s.pki.ca_pem()]);
    let resp = c
        .post(s.token.realm())
        .form(&[
            ("grant_type", "password"),
            ("client_id", "x"),
            ("service", "y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(s.token.requests().last().unwrap().status, 404);
}
