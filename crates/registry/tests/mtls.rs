//! mTLS against the real registry: the client pair in the host's certs.d folder is presented to
//! that host only; without it the failure is classified as "client certificate required".

mod common;

use common::{client, trust_host};
use registry::{ErrorKind, RegistryError, TlsErrorClass};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions};

#[tokio::test]
async fn client_certificate_from_host_folder_is_presented_and_required() {
    let pki = TestPki::new().unwrap();
    let identity = pki.client("berth-node").unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .mtls(pki.ca_pem(), identity.clone()),
    )
    .await
    .unwrap();

    // without a client certificate
    let bare = tempfile::tempdir().unwrap();
    trust_host(bare.path(), &reg.host_port(), pki.ca_pem());
    let err = client(bare.path())
        .repository_at(&reg.host_port(), "app", None)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    let msg = err.to_string();
    let RegistryError::Tls(f) = err else {
        unreachable!()
    };
    assert_eq!(f.class, TlsErrorClass::ClientCertRequired, "{msg}");
    assert!(
        msg.contains(&format!("{}/client.cert", reg.host_port())),
        "{msg}"
    );

    // with the pair in the host folder
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    let folder = dir.path().join(reg.host_port());
    std::fs::write(folder.join("client.cert"), identity.chain_pem()).unwrap();
    std::fs::write(folder.join("client.key"), identity.key_pem().expose()).unwrap();
    client(dir.path())
        .repository_at(&reg.host_port(), "app", None)
        .unwrap()
        .ping()
        .await
        .unwrap();
}
