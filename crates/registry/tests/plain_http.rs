//! Plain-http registries: only when configured for that exact host:port, and never with credentials.

mod common;

use common::client_with;
use registry::{Credential, ErrorKind, HostPort, TrustConfig};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::registry::{Registry, RegistryOptions, User};

fn plain(reg: &Registry) -> TrustConfig {
    TrustConfig {
        plain_http: vec![HostPort::parse(&reg.host_port(), 80).unwrap()],
        ..TrustConfig::default()
    }
}

#[tokio::test]
async fn configured_plain_http_host_is_pulled_anonymously() {
    let reg = Registry::start(RegistryOptions::new()).await.unwrap();
    let image = ImageBuilder::new()
        .layer(vec![Entry::file("x", b"y".to_vec())], Compression::Gzip)
        .build()
        .unwrap();
    image.push_raw(&reg, "app:v1", None).await.unwrap();
    let repo = client_with(plain(&reg))
        .repository_at(&reg.host_port(), "app", None)
        .unwrap();
    assert_eq!(repo.resolve_str("v1").await.unwrap().bytes, image.manifest);

    // not configured: https is spoken, and the failure is a TLS protocol error, not a fallback
    let repo = client_with(TrustConfig::default())
        .repository_at(&reg.host_port(), "app", None)
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn credentials_are_never_sent_over_plain_http() {
    let reg =
        Registry::start(RegistryOptions::new().htpasswd([User::new("alice", "pw-over-http")]))
            .await
            .unwrap();
    let image = ImageBuilder::new()
        .layer(vec![Entry::file("x", b"y".to_vec())], Compression::Gzip)
        .build()
        .unwrap();
    image
        .push_raw(
            &reg,
            "app:v1",
            Some(&Credentials::new("alice", "pw-over-http")),
        )
        .await
        .unwrap();
    let repo = client_with(plain(&reg))
        .repository_at(
            &reg.host_port(),
            "app",
            Some(Credential::password("alice", "pw-over-http")),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Policy, "{err}");
    assert!(
        err.to_string()
            .contains("refusing to send credentials to http://"),
        "{err}"
    );
    let ours: Vec<_> = reg
        .access_log_settled()
        .await
        .into_iter()
        .filter(|e| e.user_agent.starts_with("berth/"))
        .collect();
    assert!(
        !ours.is_empty(),
        "the client did reach the registry anonymously first"
    );
    assert!(
        ours.iter().all(|e| e.user.is_empty() || e.user == "-"),
        "{ours:?}"
    );
}
