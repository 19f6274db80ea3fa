//! Real TLS handshakes against test-PKI servers: per-host trust from a certs.d folder and
//! classification of every verification failure (host, role, sources, hint, Go wording).

mod common;

use common::{LOCALHOST, client, client_with, tls_listener, trust_host};
use registry::{ErrorKind, RegistryError, TlsErrorClass, TrustConfig};
use testkit::pki::{Leaf, TestPki};

fn tls_failure(err: RegistryError) -> Box<registry::TlsFailure> {
    match err {
        RegistryError::Tls(f) => f,
        other => panic!("expected a TLS error, got {other}"),
    }
}

async fn ping_err(c: &registry::Client, host: &registry::HostPort) -> RegistryError {
    c.repository_at(&host.to_string(), "app", None)
        .unwrap()
        .ping()
        .await
        .expect_err("handshake must fail")
}

async fn serve(leaf: &Leaf) -> registry::HostPort {
    tls_listener(leaf.rustls_server_config().unwrap(), LOCALHOST).await
}

#[tokio::test]
async fn unknown_ca_error_names_host_role_sources_and_fix() {
    let pki = TestPki::new().unwrap();
    let host = serve(&pki.server(["127.0.0.1"]).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let err = ping_err(&client(dir.path()), &host).await;
    assert_eq!(err.kind(), ErrorKind::Tls);
    let msg = err.to_string();
    assert!(
        msg.contains("x509: certificate signed by unknown authority"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{host} (registry)")), "{msg}");
    assert!(
        msg.contains(&dir.path().join(host.to_string()).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(&format!("berth trust fetch {host}")), "{msg}");
    assert_eq!(tls_failure(err).class, TlsErrorClass::UnknownAuthority);
}

#[tokio::test]
async fn hosts_dir_trust_covers_only_that_host_and_port() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1"]).unwrap();
    let a = serve(&leaf).await;
    let b = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &a.to_string(), pki.ca_pem());
    let c = client(dir.path());
    c.repository_at(&a.to_string(), "app", None)
        .unwrap()
        .ping()
        .await
        .unwrap();
    let err = ping_err(&c, &b).await;
    assert_eq!(tls_failure(err).class, TlsErrorClass::UnknownAuthority);
}

#[tokio::test]
async fn ca_file_is_trusted_for_every_host() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1"]).unwrap();
    let a = serve(&leaf).await;
    let b = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.root.write_to(dir.path(), "root.pem").unwrap();
    let c = client_with(TrustConfig {
        ca_files: vec![ca],
        ..TrustConfig::default()
    });
    for h in [a, b] {
        c.repository_at(&h.to_string(), "app", None)
            .unwrap()
            .ping()
            .await
            .unwrap();
    }
}

async fn class_for(leaf: Leaf, pki: &TestPki) -> (TlsErrorClass, String) {
    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    let err = ping_err(&client(dir.path()), &host).await;
    let msg = err.to_string();
    (tls_failure(err).class, msg)
}

#[tokio::test]
async fn expired_certificate_is_classified_with_its_validity_window() {
    let pki = TestPki::new().unwrap();
    let (class, msg) = class_for(pki.expired_server(["127.0.0.1"]).unwrap(), &pki).await;
    assert_eq!(class, TlsErrorClass::Expired, "{msg}");
    assert!(msg.contains("has expired (valid "), "{msg}");
}

#[tokio::test]
async fn not_yet_valid_certificate_is_classified() {
    let pki = TestPki::new().unwrap();
    let (class, msg) = class_for(pki.not_yet_valid_server(["127.0.0.1"]).unwrap(), &pki).await;
    assert_eq!(class, TlsErrorClass::NotYetValid, "{msg}");
}

#[tokio::test]
async fn wrong_san_is_a_name_mismatch_listing_the_certificate_names() {
    let pki = TestPki::new().unwrap();
    let (class, msg) = class_for(pki.wrong_san_server().unwrap(), &pki).await;
    assert_eq!(class, TlsErrorClass::NameMismatch, "{msg}");
    assert!(
        msg.contains("not valid for 127.0.0.1") && msg.contains("wrong.invalid"),
        "{msg}"
    );
}

#[tokio::test]
async fn untrusted_self_signed_leaf_is_named() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.self_signed_server(["127.0.0.1"]).unwrap();
    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    let err = ping_err(&client(dir.path()), &host).await;
    let msg = err.to_string();
    assert_eq!(
        tls_failure(err).class,
        TlsErrorClass::SelfSignedLeaf,
        "{msg}"
    );
    assert!(msg.contains("self-signed leaf"), "{msg}");
    assert!(
        msg.contains("x509: certificate signed by unknown authority"),
        "{msg}"
    );
}

/// TLS-05 decision: a self-signed leaf placed in that host's folder acts as a pin for that host
/// only (rustls accepts the exact certificate as its own anchor); other hosts stay untrusted.
#[tokio::test]
async fn self_signed_leaf_pinned_in_host_folder_works_for_that_host_only() {
    let leaf = TestPki::new()
        .unwrap()
        .self_signed_server(["127.0.0.1"])
        .unwrap();
    let a = serve(&leaf).await;
    let b = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &a.to_string(), &leaf.cert_pem());
    let c = client(dir.path());
    c.repository_at(&a.to_string(), "app", None)
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert_eq!(
        tls_failure(ping_err(&c, &b).await).class,
        TlsErrorClass::SelfSignedLeaf
    );
}

#[tokio::test]
async fn missing_intermediate_fails_as_unknown_authority() {
    let pki = TestPki::new().unwrap();
    let (class, msg) = class_for(
        pki.server_missing_intermediate(["127.0.0.1"]).unwrap(),
        &pki,
    )
    .await;
    assert!(
        matches!(
            class,
            TlsErrorClass::UnknownAuthority | TlsErrorClass::MissingIntermediate
        ),
        "{msg}"
    );
    assert!(
        msg.contains("x509: certificate signed by unknown authority"),
        "{msg}"
    );
}

#[tokio::test]
async fn plain_http_on_the_port_is_a_protocol_failure_not_a_fallback() {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let host = registry::HostPort::new("127.0.0.1", addr.port());
    let err = ping_err(&client(dir.path()), &host).await;
    let f = tls_failure(err);
    assert_eq!(f.class, TlsErrorClass::Protocol);
    assert!(f.to_string().contains("serves TLS"));
}

#[tokio::test]
async fn dropped_connections_cost_at_most_one_handshake_diagnosis_per_transport() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let pki = TestPki::new().unwrap();
    let cfg = pki
        .server(["127.0.0.1"])
        .unwrap()
        .rustls_server_config()
        .unwrap();
    // completes each handshake, reads the request, then closes without a byte of response
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let n = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let n = n.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    n.fetch_add(1, Ordering::SeqCst);
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                }
            });
        }
    });
    let host = registry::HostPort::new("127.0.0.1", addr.port());
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    let c = client(dir.path());
    for _ in 0..2 {
        let err = ping_err(&c, &host).await;
        assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    }
    // 2 pings x 5 attempts, plus at most one diagnostic handshake for the transport (not one
    // per failed attempt)
    let n = handshakes.load(Ordering::SeqCst);
    assert!((10..=11).contains(&n), "{n} handshakes");
}
