//! Proves the registry, PKI and image fixtures against the real distribution 2.8 and skopeo: TLS with the
//! test CA, htpasswd auth, mTLS, pushes with skopeo and raw HTTP, and the parsed access log.

use testkit::image::{
    Compression, Credentials, Entry, Format, ImageBuilder, ImageIndex, OCI_MANIFEST, Platform,
};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

fn plain_client(ca_pem: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn sample_image(format: Format) -> testkit::image::Image {
    ImageBuilder::new()
        .format(format)
        .layer(
            vec![Entry::dir("etc"), Entry::file("etc/hello", "hi\n")],
            Compression::Gzip,
        )
        .layer(
            vec![Entry::file("bin/tool", "#!/bin/sh\n").mode(0o755)],
            Compression::Gzip,
        )
        .entrypoint(["/bin/tool"])
        .build()
        .unwrap()
}

#[tokio::test]
async fn htpasswd_tls_registry_accepts_skopeo_push_and_serves_manifest_to_plain_client() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(
                pki.server(["127.0.0.1", "localhost"]).unwrap(),
                pki.ca_pem(),
            )
            .htpasswd([User::new("alice", "wonderland")]),
    )
    .await
    .unwrap();
    let img = sample_image(Format::Oci);
    let creds = Credentials::new("alice", "wonderland");
    let pushed = img
        .push(&registry, "team/app:v1", Some(&creds))
        .await
        .unwrap();
    assert_eq!(pushed.digest, img.digest());
    assert_eq!(
        pushed.reference,
        format!("{}/team/app:v1", registry.host_port())
    );

    let client = plain_client(pki.ca_pem());
    let url = format!("{}/v2/team/app/manifests/v1", registry.url());
    let anon = client
        .get(&url)
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let resp = client
        .get(&url)
        .header("Accept", OCI_MANIFEST)
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], img.digest());
    assert_eq!(resp.bytes().await.unwrap(), img.manifest);
    let wrong = client
        .get(&url)
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // the access log counts requests per path
    let layer = &img.layers[0].descriptor.digest;
    let blob_url = format!("{}/v2/team/app/blobs/{layer}", registry.url());
    let got = client
        .get(&blob_url)
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), img.layers[0].data);
    assert_eq!(registry.blob_gets("team/app", layer).await, 1);
    assert_eq!(
        registry
            .count_requests("GET", "/v2/team/app/manifests/v1")
            .await,
        3
    );
    assert!(registry.blob_path(layer).unwrap().exists());
}

#[tokio::test]
async fn docker_format_image_and_index_keep_their_digests_through_skopeo() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let docker = sample_image(Format::Docker);
    let pushed = docker.push(&registry, "docker/app:v1", None).await.unwrap();
    assert_eq!(pushed.digest, docker.digest());

    let arm = ImageBuilder::new()
        .platform(Platform::new("linux", "arm64", Some("v8")))
        .layer(vec![Entry::file("arch", "arm64")], Compression::Zstd)
        .build()
        .unwrap();
    let index = ImageIndex::new(vec![sample_image(Format::Oci), arm]).unwrap();
    let pushed = index.push(&registry, "multi/app:v1", None).await.unwrap();
    assert_eq!(pushed.digest, index.digest());
    assert_eq!(pushed.layers.len(), 2);
    let client = plain_client(pki.ca_pem());
    let resp = client
        .get(format!("{}/v2/multi/app/manifests/v1", registry.url()))
        .header("Accept", testkit::image::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["docker-content-digest"], index.digest());
}

#[tokio::test]
async fn raw_push_stores_exact_manifest_bytes() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("bob", "builder")]),
    )
    .await
    .unwrap();
    let img = sample_image(Format::Oci);
    let pushed = img
        .push_raw(
            &registry,
            "raw/app:v1",
            Some(&Credentials::new("bob", "builder")),
        )
        .await
        .unwrap();
    assert_eq!(pushed.digest, img.digest());
    let resp = plain_client(pki.ca_pem())
        .get(format!(
            "{}/v2/raw/app/manifests/{}",
            registry.url(),
            img.digest()
        ))
        .header("Accept", OCI_MANIFEST)
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), img.manifest);
}

#[tokio::test]
async fn mtls_registry_refuses_clients_without_certificate() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .ip("127.0.0.2".parse().unwrap())
            .tls(pki.server(["127.0.0.2"]).unwrap(), pki.ca_pem())
            .mtls(pki.ca_pem(), pki.client("testkit").unwrap()),
    )
    .await
    .unwrap();
    assert!(registry.url().starts_with("https://127.0.0.2:"));
    let img = sample_image(Format::Oci);
    img.push(&registry, "mtls/app:v1", None).await.unwrap();
    let err = plain_client(pki.ca_pem())
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let with_cert = registry
        .http_client()
        .unwrap()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cert.status(), 200);
}

#[tokio::test]
async fn registry_with_expired_certificate_is_rejected_by_a_verifying_client() {
    let pki = TestPki::new().unwrap();
    let leaf = pki.expired_server(["127.0.0.1"]).unwrap();
    // readiness is probed with verification, so start must fail and name the address
    let err = Registry::start(RegistryOptions {
        ready_timeout: std::time::Duration::from_secs(2),
        ..RegistryOptions::new().tls(leaf, pki.ca_pem())
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("did not answer GET /v2/"), "{text}");
    assert!(text.to_lowercase().contains("expired"), "{text}");
}

#[tokio::test]
async fn plain_http_registry_accepts_skopeo_push() {
    let registry = Registry::start(RegistryOptions::new()).await.unwrap();
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    let img = sample_image(Format::Oci);
    img.push(&registry, "plain/app:v1", None).await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/v2/plain/app/manifests/v1", registry.url()))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["docker-content-digest"], img.digest());
}

#[tokio::test]
async fn dropping_the_registry_kills_the_process() {
    let registry = Registry::start(RegistryOptions::new()).await.unwrap();
    let addr = registry.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(registry);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "{addr} still accepts connections"
    );
}

#[tokio::test]
async fn wrong_credentials_make_skopeo_push_fail_without_echoing_the_password() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", "wonderland")]),
    )
    .await
    .unwrap();
    let err = sample_image(Format::Oci)
        .push(
            &registry,
            "team/app:v1",
            Some(&Credentials::new("alice", "canary-wrong-pw")),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&registry.host_port()), "{err}");
    assert!(!err.contains("canary-wrong-pw"), "{err}");
    assert!(!registry.log_text().contains("canary-wrong-pw"));
}

#[tokio::test]
async fn raw_push_sends_documents_skopeo_would_not_write() {
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let img = sample_image(Format::Oci);
    let mut p = testkit::image::RawPusher::new(&registry, "odd/app", None).unwrap();
    for (_, data) in img.blobs() {
        p.push_blob(&data).await.unwrap();
    }
    // an OCI manifest that also carries index fields (CVE-2021-41190 shape)
    let mut doc: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    doc["manifests"] = serde_json::json!([img.descriptor]);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let refused = p
        .push_manifest("ambiguous", OCI_MANIFEST, &bytes)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("MANIFEST_INVALID"),
        "distribution 2.8 refuses ambiguous manifests: {refused}"
    );

    // a manifest without `mediaType`, pretty-printed: stored and served byte for byte under its own digest
    let mut doc: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    doc.as_object_mut().unwrap().remove("mediaType");
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    let digest = p
        .push_manifest("no-media-type", OCI_MANIFEST, &bytes)
        .await
        .unwrap();
    assert_eq!(digest, testkit::image::sha256_digest(&bytes));
    let served = registry
        .http_client()
        .unwrap()
        .get(format!(
            "{}/v2/odd/app/manifests/no-media-type",
            registry.url()
        ))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(served.bytes().await.unwrap(), bytes);
}
