//! Bearer token auth against the real registry and the testkit token server: OAuth2 POST with
//! client_id=berth, GET fallback, anonymous tokens, the token cache and `expires_in`, identity
//! tokens (refresh_token grant), exactly one retry on `invalid_token`, and refused realms.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{client, trust_host};
use registry::{Credential, ErrorKind, RegistryError};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, TokenAuth};
use testkit::token::{Grant, GrantType, TokenServer, TokenServerOptions, TokenUser};

const PASSWORD: &str = "canary-token-pw-55e1";

struct Fixture {
    _pki: TestPki,
    ts: TokenServer,
    reg: Registry,
    dir: tempfile::TempDir,
    image: testkit::image::Image,
}

async fn fixture_with(
    tune: impl FnOnce(TokenServerOptions) -> TokenServerOptions,
    realm_override: Option<String>,
) -> Fixture {
    let pki = TestPki::new().unwrap();
    let realm_pki = TestPki::named("realm").unwrap();
    let opts = TokenServerOptions::new(
        realm_pki.server(["127.0.0.1", "127.0.0.3"]).unwrap(),
        realm_pki.ca_pem(),
    )
    .user(TokenUser::new(
        "alice",
        PASSWORD,
        vec![Grant::pull_push("team/app")],
    ));
    let ts = TokenServer::start(tune(opts)).await.unwrap();
    let mut auth: TokenAuth = ts.registry_auth();
    if let Some(r) = realm_override {
        auth.realm = r;
    }
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(auth),
    )
    .await
    .unwrap();
    let image = ImageBuilder::new()
        .layer(
            vec![Entry::file("a.txt", b"token protected".to_vec())],
            Compression::Gzip,
        )
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    trust_host(dir.path(), &ts.host_port(), realm_pki.ca_pem());
    Fixture {
        _pki: pki,
        ts,
        reg,
        dir,
        image,
    }
}

async fn fixture(tune: impl FnOnce(TokenServerOptions) -> TokenServerOptions) -> Fixture {
    let f = fixture_with(tune, None).await;
    f.image
        .push_raw(
            &f.reg,
            "team/app:v1",
            Some(&Credentials::new("alice", PASSWORD)),
        )
        .await
        .unwrap();
    f
}

fn alice() -> Option<Credential> {
    Some(Credential::password("alice", PASSWORD))
}

#[tokio::test]
async fn password_grant_uses_oauth_post_once_and_caches_the_token() {
    let f = fixture(|o| o).await;
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", alice())
        .unwrap();
    let r = repo.resolve_str("v1").await.unwrap();
    assert_eq!(r.bytes, f.image.manifest);
    for (desc, data) in f.image.blobs() {
        let d: oci::Digest = desc.digest.parse().unwrap();
        let mut s = repo
            .fetch_blob_digest(&d, desc.size, None, 0)
            .await
            .unwrap()
            .verified();
        let mut got = Vec::new();
        use futures_util::StreamExt;
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, data.to_vec());
    }
    let reqs: Vec<_> = f.ts.requests().into_iter().skip(before).collect();
    assert_eq!(
        reqs.len(),
        1,
        "one token for resolve and every blob: {reqs:?}"
    );
    let t = &reqs[0];
    assert_eq!(t.method, "POST");
    assert_eq!(t.grant, GrantType::Password);
    assert_eq!(t.client_id.as_deref(), Some("berth"));
    assert_eq!(t.service.as_deref(), Some(f.ts.service()));
    assert_eq!(t.scopes, vec!["repository:team/app:pull".to_string()]);
    assert_eq!(t.user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn post_404_falls_back_to_get_with_basic_auth() {
    let f = fixture(|mut o| {
        o.post = false;
        o
    })
    .await;
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", alice())
        .unwrap();
    repo.resolve_str("v1").await.unwrap();
    let reqs: Vec<_> = f.ts.requests().into_iter().skip(before).collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].status), ("POST", 404));
    assert_eq!(reqs[1].method, "GET");
    assert_eq!(reqs[1].grant, GrantType::Basic);
    assert!(reqs[1].basic_auth);
    assert_eq!(reqs[1].scopes, vec!["repository:team/app:pull".to_string()]);
}

#[tokio::test]
async fn anonymous_token_uses_get_and_denial_is_unauthorized() {
    let f = fixture(|o| o).await;
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", None)
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("pull access denied"), "{msg}");
    assert!(
        msg.contains("no credentials were given") && msg.contains("anonymous access"),
        "{msg}"
    );
    let reqs: Vec<_> = f.ts.requests().into_iter().skip(before).collect();
    assert!(
        !reqs.is_empty()
            && reqs
                .iter()
                .all(|r| r.method == "GET" && r.grant == GrantType::Anonymous),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn anonymous_pull_works_when_granted() {
    let f = fixture(|mut o| {
        o.anonymous = vec![Grant::pull("team/app")];
        o
    })
    .await;
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", None)
        .unwrap();
    assert_eq!(
        repo.resolve_str("v1").await.unwrap().bytes,
        f.image.manifest
    );
}

#[tokio::test]
async fn wrong_password_at_token_server_is_unauthorized_and_secret_free() {
    let f = fixture(|o| o).await;
    let repo = client(f.dir.path())
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("alice", "bad-canary-77")),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("bad-canary-77"), "{msg}");
    assert!(msg.contains(&f.ts.host_port()), "{msg}");
}

#[tokio::test]
async fn short_expires_in_makes_the_cache_fetch_a_new_token() {
    let f = fixture(|mut o| {
        o.expires_in = Some(1);
        o
    })
    .await;
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", alice())
        .unwrap();
    repo.resolve_str("v1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    repo.resolve_str("v1").await.unwrap();
    let n = f.ts.requests().len() - before;
    assert_eq!(n, 2, "the expired token is not reused");
}

#[tokio::test]
async fn invalid_token_is_refreshed_exactly_once() {
    // tokens issued 361 s in the past with a 300 s lifetime: expired beyond distribution's leeway
    let f = fixture_with(
        |mut o| {
            o.clock_offset_secs = -361;
            o
        },
        None,
    )
    .await;
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(&f.reg.host_port(), "team/app", alice())
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(err.to_string().contains("invalid_token"), "{err}");
    let n = f.ts.requests().len() - before;
    assert_eq!(n, 2, "first token plus exactly one refresh");
}

#[tokio::test]
async fn identity_token_uses_refresh_token_grant() {
    let f = fixture(|o| o).await;
    // obtain a refresh token the way `docker login` does
    let http = testkit::tls::reqwest_client(&[f.ts.tls_ca_pem()], None).unwrap();
    let resp: serde_json::Value = http
        .post(f.ts.realm())
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "login"),
            ("service", f.ts.service()),
            ("scope", ""),
            ("access_type", "offline"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rt = resp["refresh_token"]
        .as_str()
        .expect("refresh token issued")
        .to_string();
    let before = f.ts.requests().len();
    let repo = client(f.dir.path())
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::identity_token(rt.clone())),
        )
        .unwrap();
    assert_eq!(
        repo.resolve_str("v1").await.unwrap().bytes,
        f.image.manifest
    );
    let reqs: Vec<_> = f.ts.requests().into_iter().skip(before).collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].grant, GrantType::RefreshToken);
    assert!(!format!("{repo:?}").contains(&rt));
}

#[tokio::test]
async fn realm_on_another_private_host_is_refused_before_any_request() {
    let pki = TestPki::new().unwrap();
    let realm_pki = TestPki::named("realm").unwrap();
    let mut opts =
        TokenServerOptions::new(realm_pki.server(["127.0.0.3"]).unwrap(), realm_pki.ca_pem()).user(
            TokenUser::new("alice", PASSWORD, vec![Grant::pull("team/app")]),
        );
    opts.ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let ts = TokenServer::start(opts).await.unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(ts.registry_auth()),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    trust_host(dir.path(), &ts.host_port(), realm_pki.ca_pem());
    let repo = client(dir.path())
        .repository_at(&reg.host_port(), "team/app", alice())
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Policy, "{err}");
    assert!(matches!(err, RegistryError::RealmRefused { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("refusing bearer realm") && msg.contains("127.0.0.3"),
        "{msg}"
    );
    assert!(
        ts.requests().is_empty(),
        "no request reached the refused realm"
    );
}

#[tokio::test]
async fn authenticated_user_without_the_grant_is_denied_with_insufficient_scope() {
    let f = fixture(|o| {
        o.user(TokenUser::new(
            "bob",
            "bob-pw-canary",
            vec![Grant::pull("other/repo")],
        ))
    })
    .await;
    let repo = client(f.dir.path())
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("bob", "bob-pw-canary")),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("pull access denied") && msg.contains("insufficient_scope"),
        "{msg}"
    );
    assert!(
        msg.contains("\"bob\"") && !msg.contains("bob-pw-canary"),
        "{msg}"
    );
    assert!(err.is_auth_failure());
}

#[tokio::test]
async fn registry_echoing_the_bearer_token_does_not_leak_it() {
    let f = fixture(|o| o).await;
    let pki = TestPki::named("echo-front").unwrap();
    let front = testkit::front::Front::start(
        &f.reg,
        None,
        testkit::front::FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    trust_host(f.dir.path(), &front.host_port(), pki.ca_pem());
    // HEAD (challenge, token, HEAD) passes; the GET carrying the bearer token is echoed back
    front.faults().add(
        testkit::front::FaultRule::new(testkit::front::Fault::EchoHeaders { status: 400 })
            .on("GET", "/manifests/")
            .unwrap(),
    );
    let repo = client(f.dir.path())
        .repository_at(&front.host_port(), "team/app", alice())
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = format!("{err} {err:?}");
    let sent = front
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .find_map(|r| r.header("authorization").map(String::from))
        .expect("the GET carried the token");
    let token = sent.strip_prefix("Bearer ").expect("a bearer token");
    assert!(token.len() > 20, "{sent}");
    assert!(
        msg.contains("your request was") && msg.contains("authorization: Bearer <red"),
        "the echo is shown, the token is not: {msg}"
    );
    // not even a prefix survives the length cap
    assert!(!msg.contains(&token[..8]), "bearer token leaked: {msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");
}
