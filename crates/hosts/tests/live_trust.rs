//! Real TLS registries (testkit's docker-registry) reached by the real registry client whose
//! per-host trust comes from a watched hosts directory: `berth trust add/remove` and hand edits
//! apply to the next request of the same client, a CA trusted for one host:port never covers
//! another, and a malformed edit leaves the previous trust in force.

use std::sync::Arc;

use hosts::{TrustStore, Watched};
use registry::{Client, ClientConfig, ErrorKind, HostPort};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions};

async fn ping(c: &Client, host: &HostPort) -> Result<(), registry::RegistryError> {
    c.repository_at(&host.to_string(), "app", None)?
        .ping()
        .await
}

fn host_of(r: &Registry) -> HostPort {
    HostPort::parse(&r.host_port(), 443).expect("registry host:port")
}

#[tokio::test]
async fn trust_edits_apply_live_per_host_port_and_bad_edits_keep_the_previous_trust() {
    let pki = TestPki::new().unwrap();
    let other_pki = TestPki::named("other").unwrap();
    let a = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let b = Registry::start(
        RegistryOptions::new()
            .tls(other_pki.server(["127.0.0.2"]).unwrap(), other_pki.ca_pem())
            .ip("127.0.0.2".parse().unwrap()),
    )
    .await
    .unwrap();
    let (ha, hb) = (host_of(&a), host_of(&b));

    let dir = tempfile::tempdir().unwrap();
    let watched = Arc::new(Watched::open(dir.path()).unwrap());
    let client = Client::new(ClientConfig {
        hosts: watched.clone(),
        system_roots: false,
        ..ClientConfig::default()
    })
    .unwrap();

    let err = ping(&client, &ha).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    // trust A's CA for A only: the same client now connects, without a restart
    let store = TrustStore::new(dir.path()).with_user("tester");
    let added = store.add(&ha, pki.ca_pem().as_bytes()).unwrap();
    assert_eq!(added.len(), 1);
    ping(&client, &ha)
        .await
        .expect("trusted after berth trust add");

    // B (another host:port, another CA) is not covered; trusting A's CA for B does not help
    let err = ping(&client, &hb).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    store.add(&hb, pki.ca_pem().as_bytes()).unwrap();
    let err = ping(&client, &hb).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    // a malformed edit of A's hosts.toml: reported, previous trust stays in force
    let toml_path = added[0].file.parent().unwrap().join("hosts.toml");
    let good = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(
        &toml_path,
        format!("{good}\n[host.\"https://m\"]\ncapabilities = [\"pul\"]\n"),
    )
    .unwrap();
    ping(&client, &ha).await.expect("previous trust kept");
    let errors = watched.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().contains("unknown capability \"pul\""),
        "{}",
        errors[0]
    );
    std::fs::write(&toml_path, &good).unwrap();
    ping(&client, &ha).await.unwrap();
    assert!(watched.errors().is_empty());

    // removing the CA applies to the next request too
    store.remove(&ha, Some(&added[0].fingerprint)).unwrap();
    let err = ping(&client, &ha).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    let log = std::fs::read_to_string(store.audit_log_path()).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
}
