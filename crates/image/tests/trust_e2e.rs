//! End-to-end pulls through the image puller with host configuration from a watched hosts
//! directory: token auth combined with the blob CDN redirect (the CDN never sees a credential),
//! and one long-lived puller whose pulls pick up hosts.toml edits (a CA added, then a mirror
//! added) with no restart.

use std::path::Path;
use std::sync::Arc;

use hosts::TrustSource;
use image::{Attempt, PullOptions, PullRequest, Puller};
use registry::{Client, ClientConfig, Credential, ErrorKind};
use testkit::front::{Cdn, CdnOptions, Front, FrontOptions};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions};
use testkit::token::{Grant, GrantType, TokenServer, TokenServerOptions, TokenUser};

const PASSWORD: &str = "canary-e2e-pw-93d1";
const REPO: &str = "team/app";

fn image(seed: &str, layers: usize) -> testkit::image::Image {
    let mut b = ImageBuilder::new().cmd(["/bin/app"]);
    for i in 0..layers {
        let content: Vec<u8> = (0..150_000u32)
            .map(|j| {
                (j.wrapping_mul(31)
                    .wrapping_add(i as u32 * 7 + seed.len() as u32)) as u8
            })
            .collect();
        b = b.layer(
            vec![
                Entry::file(format!("l{i}/seed"), seed.as_bytes().to_vec()),
                Entry::file(format!("l{i}/data"), content),
            ],
            Compression::Gzip,
        );
    }
    b.build().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn client(hosts_dir: &Path) -> Client {
    Client::new(ClientConfig {
        hosts: Arc::new(TrustSource::open(Some(hosts_dir)).unwrap()),
        system_roots: false,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn request(host: &str, tag: &str, attempts: Vec<Attempt>) -> PullRequest {
    PullRequest {
        reference: oci::Reference::parse_normalized(&format!("{host}/{REPO}:{tag}")).unwrap(),
        attempts,
        platform: oci::Platform::parse("linux/amd64").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_auth_with_cdn_redirect_pulls_and_the_cdn_never_sees_a_credential() {
    let pki = TestPki::new().unwrap();
    let cdn_pki = TestPki::named("cdn").unwrap();
    let realm_pki = TestPki::named("realm").unwrap();
    let ts = TokenServer::start(
        TokenServerOptions::new(realm_pki.server(["127.0.0.1"]).unwrap(), realm_pki.ca_pem()).user(
            TokenUser::new("alice", PASSWORD, vec![Grant::pull_push(REPO)]),
        ),
    )
    .await
    .unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(ts.registry_auth()),
    )
    .await
    .unwrap();
    let img = image("cdn", 2);
    img.push_raw(
        &reg,
        &format!("{REPO}:v1"),
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    let cdn = Cdn::start(
        &reg,
        CdnOptions::new(cdn_pki.server(["127.0.0.2"]).unwrap(), cdn_pki.ca_pem()),
    )
    .await
    .unwrap();
    let mut fo = FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem());
    fo.redirect_blobs = true;
    let front = Front::start(&reg, Some(&cdn), fo).await.unwrap();

    // each host:port trusts its own CA only (certs.d layout)
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join(front.host_port()).join("ca.crt"),
        pki.ca_pem(),
    );
    write(
        &dir.path().join(cdn.addr().to_string()).join("ca.crt"),
        cdn_pki.ca_pem(),
    );
    write(
        &dir.path().join(ts.host_port()).join("ca.crt"),
        realm_pki.ca_pem(),
    );
    let store = content::Store::open(dir.path().join("store")).unwrap();
    let puller = Puller::new(client(dir.path()), store.clone(), PullOptions::default());
    let pulled = puller
        .pull(&request(
            &front.host_port(),
            "v1",
            vec![Attempt {
                label: "alice".into(),
                credential: Some(Credential::password("alice", PASSWORD)),
            }],
        ))
        .await
        .unwrap();
    assert_eq!(pulled.target.digest.to_string(), img.digest());
    assert_eq!(pulled.layers.len(), 2);
    for l in &pulled.layers {
        assert!(store.exists(&l.digest).unwrap());
    }

    // the token came from the realm with alice's password (OAuth2 POST)
    let tokens = ts.requests();
    assert!(
        tokens.iter().any(|r| r.grant == GrantType::Password
            && r.user.as_deref() == Some("alice")
            && r.status == 200),
        "{tokens:?}"
    );
    // the registry got the bearer token; every blob (config and layers) was redirected to the CDN
    let mut blobs: Vec<String> = img
        .layers
        .iter()
        .map(|l| l.descriptor.digest.clone())
        .collect();
    blobs.push(img.config_descriptor.digest.clone());
    let front_reqs = front.requests();
    for d in &blobs {
        let get = front_reqs
            .iter()
            .find(|r| {
                r.method == "GET"
                    && r.path == format!("/v2/{REPO}/blobs/{d}")
                    && r.header("authorization").is_some()
            })
            .unwrap_or_else(|| panic!("authorised blob GET for {d}: {front_reqs:?}"));
        assert!(get.header("authorization").unwrap().starts_with("Bearer "));
    }
    let cdn_reqs = cdn.requests();
    for d in &blobs {
        assert!(
            cdn_reqs.iter().any(|r| r.path == format!("/blobs/{d}")),
            "{d} served by the CDN: {cdn_reqs:?}"
        );
    }
    for r in &cdn_reqs {
        assert!(
            r.header("authorization").is_none(),
            "credential sent to the CDN: {}",
            r.path
        );
        for (_, v) in &r.headers {
            assert!(!v.contains(PASSWORD));
        }
    }
    assert_eq!(
        reg.blob_gets(REPO, &blobs[0]).await,
        0,
        "bytes came from the CDN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_puller_sees_a_ca_and_then_a_mirror_added_to_hosts_toml() {
    let pki = TestPki::new().unwrap();
    let upstream = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let mirror_reg = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let mirror = Front::start(
        &mirror_reg,
        None,
        FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let first = image("first", 1);
    let second = image("second", 2);
    first
        .push_raw(&upstream, &format!("{REPO}:v1"), None)
        .await
        .unwrap();
    second
        .push_raw(&upstream, &format!("{REPO}:v2"), None)
        .await
        .unwrap();
    second
        .push_raw(&mirror_reg, &format!("{REPO}:v2"), None)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let hosts_dir = dir.path().join("certs.d"); // does not exist yet
    let ca = dir.path().join("registry-ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let toml = hosts_dir.join(upstream.host_port()).join("hosts.toml");
    let store = content::Store::open(dir.path().join("store")).unwrap();
    let puller = Puller::new(client(&hosts_dir), store, PullOptions::default());
    let host = upstream.host_port();

    // one puller, one client, a sequence of pulls; the operator edits hosts.toml in between
    enum Edit {
        None,
        AddCa,
        AddMirror,
    }
    let steps = [
        (Edit::None, "v1", false),
        (Edit::AddCa, "v1", true),
        (Edit::AddMirror, "v2", true),
    ];
    for (i, (edit, tag, ok)) in steps.into_iter().enumerate() {
        match edit {
            Edit::None => {}
            Edit::AddCa => write(
                &toml,
                &format!("server = \"https://{host}\"\nca = \"{}\"\n", ca.display()),
            ),
            Edit::AddMirror => write(
                &toml,
                &format!(
                    "server = \"https://{host}\"\nca = \"{ca}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\"]\n  ca = \"{ca}\"\n",
                    mirror.url(),
                    ca = ca.display()
                ),
            ),
        }
        let r = puller.pull(&request(&host, tag, Vec::new())).await;
        match (ok, r) {
            (true, Ok(p)) => assert!(!p.layers.is_empty(), "step {i}"),
            (false, Err(e)) => {
                assert_eq!(e.kind(), Some(ErrorKind::Tls), "step {i}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(&host), "{msg}");
                assert!(
                    msg.contains(&format!("--hosts-dir {}", hosts_dir.display())),
                    "{msg}"
                );
            }
            (ok, r) => panic!("step {i}: expected ok={ok}, got {:?}", r.map(|p| p.name)),
        }
    }
    // the second image's layers came from the mirror added while the puller ran
    let seen = mirror.requests();
    for l in &second.layers {
        let d = &l.descriptor.digest;
        assert!(
            seen.iter()
                .any(|r| r.method == "GET" && r.path == format!("/v2/{REPO}/blobs/{d}")),
            "{d}: {seen:?}"
        );
        assert_eq!(upstream.blob_gets(REPO, d).await, 0);
    }
    // the tag itself was resolved by the upstream (the mirror may only pull)
    assert!(!seen.iter().any(|r| r.path.ends_with("/manifests/v2")));
}
