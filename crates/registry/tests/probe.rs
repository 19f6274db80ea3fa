//! `registry::probe` against real TLS servers built from the test PKI: the presented chain with
//! its SHA-256 fingerprints and the verdict for every TLS case, and hot reload of a host's trust
//! (a HostConfigSource whose CA list changes between two requests).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{CDN_IP, LOCALHOST, client, fast_retry, tls_listener, trust_host};
use registry::tls::{HostConfig, HostConfigSource};
use registry::{
    Client, ClientConfig, ErrorKind, HostPort, RegistryError, Role, TlsErrorClass, Verdict,
};
use rustls::pki_types::CertificateDer;
use testkit::pki::{Leaf, TestPki};
use testkit::registry::{Registry, RegistryOptions};

async fn serve(leaf: &Leaf) -> HostPort {
    tls_listener(leaf.rustls_server_config().unwrap(), LOCALHOST).await
}

fn fingerprints(r: &registry::ChainReport) -> Vec<String> {
    r.presented.iter().map(|c| c.sha256.clone()).collect()
}

#[tokio::test]
async fn trusted_chain_is_ok_and_lists_leaf_and_intermediate() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1", "localhost"]).unwrap();
    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", r.detail);
    assert_eq!(
        fingerprints(&r),
        vec![
            leaf.fingerprint_sha256(),
            pki.intermediate.fingerprint_sha256()
        ]
    );
    let l = &r.presented[0];
    assert!(l.sans.contains(&"127.0.0.1".to_string()), "{:?}", l.sans);
    assert!(l.sans.contains(&"localhost".to_string()), "{:?}", l.sans);
    assert!(!l.is_ca && !l.self_signed);
    assert!(r.presented[1].is_ca);
    assert!(!l.key_type.is_empty() && !l.key_type.starts_with("unknown"));
    assert!(l.not_before < l.not_after && l.not_after.ends_with('Z'));
    assert!(r.fix.is_none() && r.failure.is_none());
    assert_eq!(
        r.ca_to_trust().unwrap().sha256,
        pki.intermediate.fingerprint_sha256()
    );
    assert!(
        r.presented[0]
            .pem
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert!(r.protocol.as_deref().unwrap().starts_with("TLS"));
}

#[tokio::test]
async fn unknown_root_is_unknown_authority_with_trust_add_fix() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1"]).unwrap();
    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Failed(TlsErrorClass::UnknownAuthority),
        "{}",
        r.detail
    );
    assert_eq!(r.verdict.code(), "unknown_authority");
    assert_eq!(
        fingerprints(&r),
        vec![
            leaf.fingerprint_sha256(),
            pki.intermediate.fingerprint_sha256()
        ]
    );
    let fix = r.fix.clone().unwrap();
    assert!(
        fix.contains(&format!(
            "berth trust add {host} --hosts-dir {} --fingerprint sha256:{}",
            dir.path().display(),
            pki.intermediate.fingerprint_sha256()
        )),
        "{fix}"
    );
    assert!(fix.contains(&format!("berth trust fetch {host}")), "{fix}");
    assert!(
        r.sources
            .iter()
            .any(|s| s.contains(&dir.path().join(host.to_string()).display().to_string())),
        "{:?}",
        r.sources
    );
    assert!(r.presented[0].fingerprint().starts_with("sha256:"));
}

#[tokio::test]
async fn intermediate_not_sent_is_an_incomplete_chain_once_the_root_is_trusted() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server_missing_intermediate(["127.0.0.1"]).unwrap();
    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    // nothing configured for the host: the issuer is simply unknown
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Failed(TlsErrorClass::UnknownAuthority));
    assert!(
        r.failure
            .as_ref()
            .unwrap()
            .to_string()
            .contains("the chain is also incomplete")
    );
    // the root trusted for the host, the server still omits its intermediate
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Failed(TlsErrorClass::MissingIntermediate)
    );
    assert_eq!(r.verdict.code(), "incomplete_chain");
    assert_eq!(fingerprints(&r), vec![leaf.fingerprint_sha256()]);
    assert!(r.fix.unwrap().contains("full chain"));
    // the intermediate added to the host's bundle completes the path
    let bundle = format!("{}{}", pki.ca_pem(), pki.intermediate.cert_pem());
    trust_host(dir.path(), &host.to_string(), &bundle);
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", r.detail);
}

async fn verdict_with_root_trusted(leaf: &Leaf, pki: &TestPki) -> registry::ChainReport {
    let host = serve(leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), pki.ca_pem());
    client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_leaf_is_expired_with_its_window() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.expired_server(["127.0.0.1"]).unwrap();
    let r = verdict_with_root_trusted(&leaf, &pki).await;
    assert_eq!(r.verdict, Verdict::Failed(TlsErrorClass::Expired));
    assert_eq!(r.presented[0].sha256, leaf.fingerprint_sha256());
    let f = r.failure.unwrap().to_string();
    assert!(f.contains("has expired (valid "), "{f}");
    assert!(r.presented[0].not_after.as_str() < "2100");
}

#[tokio::test]
async fn wrong_san_is_a_name_mismatch() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.wrong_san_server().unwrap();
    let r = verdict_with_root_trusted(&leaf, &pki).await;
    assert_eq!(r.verdict, Verdict::Failed(TlsErrorClass::NameMismatch));
    assert_eq!(r.presented[0].sans, vec!["wrong.invalid".to_string()]);
    assert_eq!(r.verdict.code(), "name_mismatch");
}

#[tokio::test]
async fn self_signed_leaf_is_named_and_a_pin_for_that_host_makes_it_ok() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.self_signed_server(["127.0.0.1"]).unwrap();
    let r = verdict_with_root_trusted(&leaf, &pki).await;
    assert_eq!(r.verdict, Verdict::Failed(TlsErrorClass::SelfSignedLeaf));
    assert_eq!(fingerprints(&r), vec![leaf.fingerprint_sha256()]);
    assert!(r.presented[0].self_signed);

    let host = serve(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &host.to_string(), &leaf.cert_pem());
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", r.detail);
}

#[tokio::test]
async fn cdn_with_its_own_ca_is_judged_by_its_own_trust_only() {
    let pki = TestPki::new().unwrap();
    let cdn_pki = TestPki::named("cdn").unwrap();
    let reg = serve(&pki.server(["127.0.0.1"]).unwrap()).await;
    let cdn_leaf = cdn_pki.server(["127.0.0.2"]).unwrap();
    let cdn = tls_listener(cdn_leaf.rustls_server_config().unwrap(), CDN_IP).await;
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.to_string(), pki.ca_pem());
    let c = client(dir.path());
    assert_eq!(
        c.fetch_chain(&reg, Role::Registry).await.unwrap().verdict,
        Verdict::Ok
    );
    let r = c.fetch_chain(&cdn, Role::RedirectTarget).await.unwrap();
    assert_eq!(r.verdict, Verdict::Failed(TlsErrorClass::UnknownAuthority));
    assert_eq!(r.presented[0].sha256, cdn_leaf.fingerprint_sha256());
    assert!(
        r.failure
            .unwrap()
            .to_string()
            .contains(&format!("{cdn} (redirect target)"))
    );
    assert!(r.fix.unwrap().contains("needs its own trust"));
    trust_host(dir.path(), &cdn.to_string(), cdn_pki.ca_pem());
    let r = client(dir.path())
        .fetch_chain(&cdn, Role::RedirectTarget)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", r.detail);
}

#[tokio::test]
async fn mtls_registry_without_client_certificate_is_named() {
    let pki = TestPki::new().unwrap();
    let identity = pki.client("berth-node").unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .mtls(pki.ca_pem(), identity.clone()),
    )
    .await
    .unwrap();
    let host = HostPort::parse(&reg.host_port(), 443).unwrap();
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Failed(TlsErrorClass::ClientCertRequired),
        "{}",
        r.detail
    );
    assert!(!r.client_certificate);
    assert_eq!(r.presented.len(), 2, "the chain is still recorded");
    let folder = dir.path().join(reg.host_port());
    std::fs::write(folder.join("client.cert"), identity.chain_pem()).unwrap();
    std::fs::write(folder.join("client.key"), identity.key_pem().expose()).unwrap();
    let r = client(dir.path())
        .fetch_chain(&host, Role::Registry)
        .await
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", r.detail);
    assert!(r.client_certificate);
}

#[tokio::test]
async fn unreachable_port_is_a_network_error_not_a_verdict() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    let err = client(dir.path())
        .fetch_chain(&HostPort::new("127.0.0.1", port), Role::Registry)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
}

/// A host configuration that an operator changes while the client runs.
#[derive(Debug, Default)]
struct Changing {
    cas: Mutex<Vec<CertificateDer<'static>>>,
    generation: AtomicU64,
    reads: AtomicU64,
}

impl HostConfigSource for Changing {
    fn host_config(&self, _host: &HostPort) -> Result<HostConfig, RegistryError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(HostConfig {
            ca_certs: self
                .cas
                .lock()
                .unwrap()
                .iter()
                .map(|c| ("test-source".into(), c.clone()))
                .collect(),
            sources: vec!["test source".into()],
            ..HostConfig::default()
        })
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn changed_host_configuration_applies_to_the_next_request_without_restart() {
    let pki = TestPki::new().unwrap();
    let host = serve(&pki.server(["127.0.0.1"]).unwrap()).await;
    let source = Arc::new(Changing::default());
    let c = Client::new(ClientConfig {
        hosts: source.clone(),
        system_roots: false,
        retry: fast_retry(),
        ..ClientConfig::default()
    })
    .unwrap();
    let repo = c.repository_at(&host.to_string(), "app", None).unwrap();
    let err = repo.ping().await.unwrap_err();
    let RegistryError::Tls(f) = &err else {
        panic!("expected a TLS failure, got {err}")
    };
    assert_eq!(f.class, TlsErrorClass::UnknownAuthority);

    // the CA arrives, but the source does not announce a change: the cached transport stays
    source.cas.lock().unwrap().push(pki.root.cert_der().clone());
    let reads = source.reads.load(Ordering::SeqCst);
    assert!(
        repo.ping().await.is_err(),
        "no generation change, no rebuild"
    );
    assert_eq!(
        source.reads.load(Ordering::SeqCst),
        reads,
        "config not re-read"
    );

    // the generation moves: the next request rebuilds that host's transport and succeeds
    source.generation.fetch_add(1, Ordering::SeqCst);
    repo.ping().await.unwrap();
    assert_eq!(source.reads.load(Ordering::SeqCst), reads + 1);
    // and the rebuilt transport is cached again
    repo.ping().await.unwrap();
    assert_eq!(source.reads.load(Ordering::SeqCst), reads + 1);

    // trust can also be withdrawn live
    source.cas.lock().unwrap().clear();
    source.generation.fetch_add(1, Ordering::SeqCst);
    let err = c
        .repository_at(&host.to_string(), "app", None)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}
