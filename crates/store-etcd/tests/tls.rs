//! The etcd backend over `etcds://` against a real etcd that requires client certificates.

mod common;

use bytes::Bytes;
use store::Storage;
use store_etcd::{EtcdError, EtcdStore, EtcdTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate_stores_and_reads() {
    let pki = tempfile::tempdir().unwrap();
    let files = common::TlsFiles::generate(pki.path());
    let cluster = common::Cluster::start(1, Some(&files));
    let store = cluster.connect_tls(&files).await;
    let rev = store
        .create("/registry/core/secrets/ns/s", Bytes::from("opaque"))
        .await
        .unwrap();
    let kv = store
        .get("/registry/core/secrets/ns/s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kv.value, kv.mod_revision), (Bytes::from("opaque"), rev));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificate_fails_naming_the_endpoint() {
    let pki = tempfile::tempdir().unwrap();
    let files = common::TlsFiles::generate(pki.path());
    let cluster = common::Cluster::start(1, Some(&files));
    // First make sure the member is up, so the failure below is about the certificate.
    drop(cluster.connect_tls(&files).await);
    let mut config = cluster.config().with_tls(EtcdTls {
        ca_file: files.ca.clone(),
        cert_file: None,
        key_file: None,
    });
    config.dial_timeout = std::time::Duration::from_secs(2);
    let err = EtcdStore::connect(config).await.unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&cluster.url()) && text.contains("--etcd-certfile"),
        "{text}"
    );
}
