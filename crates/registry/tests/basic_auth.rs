//! htpasswd Basic auth over TLS against the real distribution registry: resolve, manifest and
//! blob fetch with the right credential; clear, secret-free errors for wrong, missing and
//! misplaced credentials; not-found is not worded as an access denial.

mod common;

use common::{client, trust_host};
use futures_util::StreamExt;
use registry::{Credential, ErrorKind, RegistryError};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "canary-pw-7f3a91";

struct Fixture {
    _pki: TestPki,
    reg: Registry,
    dir: tempfile::TempDir,
    pushed: testkit::image::Pushed,
    image: testkit::image::Image,
}

async fn fixture() -> Fixture {
    let pki = TestPki::new().unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let image = ImageBuilder::new()
        .layer(
            vec![Entry::file("hello.txt", b"hello from berth".to_vec())],
            Compression::Gzip,
        )
        .layer(
            vec![Entry::file("big.bin", vec![7u8; 300_000])],
            Compression::None,
        )
        .build()
        .unwrap();
    let pushed = image
        .push_raw(
            &reg,
            "team/app:v1",
            Some(&Credentials::new("alice", PASSWORD)),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    Fixture {
        _pki: pki,
        reg,
        dir,
        pushed,
        image,
    }
}

async fn collect(
    s: impl futures_util::Stream<Item = Result<bytes::Bytes, RegistryError>>,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut s = std::pin::pin!(s);
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[tokio::test]
async fn basic_auth_over_tls_resolves_and_streams_verified_blobs() {
    let f = fixture().await;
    let c = client(f.dir.path());
    let repo = c
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("alice", PASSWORD)),
        )
        .unwrap();
    repo.ping().await.unwrap();
    let r = repo.resolve_str("v1").await.unwrap();
    assert_eq!(r.descriptor.digest.to_string(), f.pushed.digest);
    assert_eq!(r.bytes, f.image.manifest);
    assert_eq!(r.media_type(), f.image.descriptor.media_type);
    let oci::Manifest::Image(m) = &r.manifest else {
        panic!("expected an image manifest")
    };
    assert_eq!(m.layers.len(), 2);

    // the descriptor API: manifest by descriptor, blobs by the manifest's descriptors
    assert_eq!(
        repo.fetch_manifest(&r.descriptor).await.unwrap(),
        f.image.manifest
    );
    let cfg = repo.fetch_blob(&m.config, 0).await.unwrap();
    assert_eq!(
        collect(cfg.verified()).await.unwrap(),
        f.image.config.to_vec()
    );

    // by digest, verified against the requested digest
    let by_digest = repo.resolve_str(&f.pushed.digest).await.unwrap();
    assert_eq!(by_digest.bytes, f.image.manifest);

    for (desc, data) in f.image.blobs() {
        let digest: oci::Digest = desc.digest.parse().unwrap();
        let s = repo
            .fetch_blob_digest(&digest, desc.size, Some(&desc.media_type), 0)
            .await
            .unwrap();
        assert_eq!(collect(s.verified()).await.unwrap(), data.to_vec());
        // resume from the middle
        let mid = desc.size / 2;
        let s = repo
            .fetch_blob_digest(&digest, desc.size, Some(&desc.media_type), mid)
            .await
            .unwrap();
        assert_eq!(collect(s).await.unwrap(), data[mid as usize..].to_vec());
    }
}

#[tokio::test]
async fn wrong_password_is_unauthorized_without_leaking_it() {
    let f = fixture().await;
    let c = client(f.dir.path());
    let repo = c
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("alice", "wrong-canary-pw")),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "pull access denied, repository does not exist or may require authorization"
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&f.reg.host_port()) && msg.contains("team/app"),
        "{msg}"
    );
    assert!(msg.contains("\"alice\""), "{msg}");
    assert!(!msg.contains("wrong-canary-pw") && !format!("{err:?}").contains("wrong-canary-pw"));
    assert!(!format!("{repo:?}").contains("wrong-canary-pw"));
}

#[tokio::test]
async fn missing_credentials_say_no_basic_auth_credentials() {
    let f = fixture().await;
    let c = client(f.dir.path());
    let repo = c
        .repository_at(&f.reg.host_port(), "team/app", None)
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.to_string().contains("no basic auth credentials"),
        "{err}"
    );
}

#[tokio::test]
async fn identity_token_cannot_answer_basic_challenge() {
    let f = fixture().await;
    let c = client(f.dir.path());
    let repo = c
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::identity_token("idtok")),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert!(err.to_string().contains("identity token"), "{err}");
    assert!(!err.to_string().contains("idtok\""), "{err}");
}

#[tokio::test]
async fn unknown_tag_is_not_found_not_access_denied() {
    let f = fixture().await;
    let c = client(f.dir.path());
    let repo = c
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("alice", PASSWORD)),
        )
        .unwrap();
    let err = repo.resolve_str("nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!err.to_string().contains("pull access denied"), "{err}");
    assert!(
        err.to_string().contains("manifest for tag \"nope\""),
        "{err}"
    );

    let missing = oci::Digest::sha256(b"not there");
    let err = repo
        .fetch_blob_digest(&missing, 9, None, 0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn oversized_manifest_cap_names_cap_and_size() {
    let f = fixture().await;
    let c = registry::Client::new(registry::ClientConfig {
        max_manifest_size: 100,
        system_roots: false,
        hosts: std::sync::Arc::new(registry::TrustConfig {
            hosts_dir: Some(f.dir.path().to_path_buf()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    let repo = c
        .repository_at(
            &f.reg.host_port(),
            "team/app",
            Some(Credential::password("alice", PASSWORD)),
        )
        .unwrap();
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("100 byte limit"), "{msg}");
    assert!(
        msg.contains(&format!("({} bytes)", f.image.manifest.len())),
        "{msg}"
    );
}

#[tokio::test]
async fn index_resolves_to_the_requested_platform_manifest() {
    let pki = TestPki::new().unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let amd = ImageBuilder::new()
        .platform(testkit::image::Platform::new("linux", "amd64", None))
        .layer(
            vec![Entry::file("arch", b"amd64".to_vec())],
            Compression::Gzip,
        )
        .build()
        .unwrap();
    let arm = ImageBuilder::new()
        .platform(testkit::image::Platform::new("linux", "arm64", Some("v8")))
        .layer(
            vec![Entry::file("arch", b"arm64".to_vec())],
            Compression::Gzip,
        )
        .build()
        .unwrap();
    let index = testkit::image::ImageIndex::new(vec![amd.clone(), arm.clone()]).unwrap();
    let creds = Credentials::new("alice", PASSWORD);
    index
        .push_raw(&reg, "multi/app:v1", Some(&creds))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    trust_host(dir.path(), &reg.host_port(), pki.ca_pem());
    let c = client(dir.path());
    let repo = c
        .repository_at(
            &reg.host_port(),
            "multi/app",
            Some(Credential::password("alice", PASSWORD)),
        )
        .unwrap();
    let reference: oci::Reference = format!("{}/multi/app:v1", reg.host_port()).parse().unwrap();

    let arm_sel = repo
        .resolve_image(&reference, &oci::Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap();
    assert!(arm_sel.top.is_index());
    assert_eq!(arm_sel.top.descriptor.digest.to_string(), index.digest());
    assert_eq!(arm_sel.descriptor.digest.to_string(), arm.digest());
    assert_eq!(arm_sel.bytes, arm.manifest);

    let amd_sel = repo
        .resolve_image(&reference, &oci::Platform::parse("linux/amd64").unwrap())
        .await
        .unwrap();
    assert_eq!(amd_sel.descriptor.digest.to_string(), amd.digest());

    let err = repo
        .resolve_image(&reference, &oci::Platform::parse("linux/s390x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let msg = err.to_string();
    assert!(
        msg.contains("no matching manifest for linux/s390x") && msg.contains("linux/arm64"),
        "{msg}"
    );
}
