//! Pull + unpack against the real docker-registry (TLS + htpasswd) started by the testkit: the
//! layers land in snapshots with whiteouts applied, a second pull reuses them, a stored image
//! reads back from the store, and a hostile layer fails with an error naming it.

use std::sync::Arc;

use image::{PullError, PullOptions, PullRequest, Puller};
use registry::{Client, ClientConfig, Credential, TrustConfig};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};
use unpack::{Mode, Snapshotter};

const PASSWORD: &str = "unpack-pw-19c2";

struct Env {
    _pki: TestPki,
    registry: Registry,
    dir: tempfile::TempDir,
    client: Client,
}

async fn env() -> Env {
    let pki = TestPki::new().unwrap();
    let leaf = pki.server(["127.0.0.1", "localhost"]).unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(leaf, pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    let client = Client::new(ClientConfig::with_trust(TrustConfig {
        ca_files: vec![ca_file],
        ..Default::default()
    }))
    .unwrap();
    Env {
        _pki: pki,
        registry,
        dir,
        client,
    }
}

fn request(env: &Env, repo_tag: &str) -> PullRequest {
    PullRequest {
        reference: oci::Reference::parse_normalized(&format!(
            "{}/{repo_tag}",
            env.registry.host_port()
        ))
        .unwrap(),
        attempts: vec![image::Attempt {
            label: "test".into(),
            credential: Some(Credential::password("alice", PASSWORD)),
        }],
        platform: oci::Platform::parse("linux/amd64").unwrap(),
    }
}

async fn push(env: &Env, img: &testkit::image::Image, repo_tag: &str) {
    img.push(
        &env.registry,
        repo_tag,
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
}

fn two_layer_image() -> testkit::image::Image {
    ImageBuilder::new()
        .cmd(["/bin/app"])
        .layer(
            vec![
                Entry::dir("etc"),
                Entry::file("etc/keep", "kept\n"),
                Entry::file("etc/gone", "deleted by layer 2\n"),
                Entry::dir("bin"),
                Entry::file("bin/app", "#!/bin/sh\n").mode(0o755),
            ],
            Compression::Gzip,
        )
        .layer(
            vec![
                Entry::whiteout("etc/gone"),
                Entry::file("etc/added", "layer 2\n"),
            ],
            Compression::Zstd,
        )
        .build()
        .unwrap()
}

fn snapshotter(env: &Env) -> Arc<Snapshotter> {
    // Native mode: the flattened rootfs is a plain directory the test can read without mounts.
    Arc::new(
        Snapshotter::open(env.dir.path().join("unpack"))
            .unwrap()
            .with_mode(Mode::Native),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_with_a_snapshotter_unpacks_every_layer_and_a_second_pull_reuses_them() {
    let env = env().await;
    let img = two_layer_image();
    push(&env, &img, "team/unpacked:v1").await;
    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let snaps = snapshotter(&env);
    let puller = Puller::new(env.client.clone(), store.clone(), PullOptions::default())
        .with_snapshotter(snaps.clone());
    let req = request(&env, "team/unpacked:v1");

    let pulled = puller.pull(&req).await.unwrap();
    assert_eq!(pulled.snapshots.len(), 2);
    let user = image::image_user(&pulled.name);
    for id in &pulled.snapshots {
        let info = snaps.info(id).unwrap().expect("snapshot recorded");
        assert!(
            snaps.users(id).unwrap().contains(&user),
            "{id} used by {user}"
        );
        assert!(pulled.layers.iter().any(|l| l.digest == info.layer));
    }
    let bottom = snaps.snapshot_fs(&pulled.snapshots[0]);
    assert_eq!(
        std::fs::read_to_string(bottom.join("etc/keep")).unwrap(),
        "kept\n"
    );

    // The whole chain flattened: layer 2's whiteout removed the file of layer 1.
    let rootfs = snaps.prepare_rootfs(&pulled.snapshots, "probe").unwrap();
    let unpack::Rootfs::Native { path } = rootfs else {
        panic!("native mode builds a flattened copy: {rootfs:?}")
    };
    assert_eq!(
        std::fs::read_to_string(path.join("etc/added")).unwrap(),
        "layer 2\n"
    );
    assert!(!path.join("etc/gone").exists(), "whiteout applied");
    assert!(path.join("etc/keep").exists());
    snaps.remove_rootfs("probe").unwrap();

    // A second pull downloads nothing and unpacks nothing: a file planted in a snapshot
    // survives (a re-unpack would have rebuilt the directory from the layer).
    let sentinel = snaps.snapshot_fs(&pulled.snapshots[1]).join("sentinel");
    std::fs::write(&sentinel, b"still here").unwrap();
    let again = puller.pull(&req).await.unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.snapshots, pulled.snapshots);
    assert!(sentinel.exists(), "second pull reused the snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_puller_without_a_snapshotter_only_fills_the_store() {
    let env = env().await;
    let img = two_layer_image();
    push(&env, &img, "team/plain:v1").await;
    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let puller = Puller::new(env.client.clone(), store, PullOptions::default());
    let pulled = puller.pull(&request(&env, "team/plain:v1")).await.unwrap();
    assert!(pulled.snapshots.is_empty());
    assert!(!env.dir.path().join("unpack").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_image_reads_back_and_unpacks_without_the_registry() {
    let env = env().await;
    let img = two_layer_image();
    push(&env, &img, "team/stored:v1").await;
    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let puller = Puller::new(env.client.clone(), store.clone(), PullOptions::default());
    let pulled = puller.pull(&request(&env, "team/stored:v1")).await.unwrap();

    let stored = image::load_stored_image(&store, &pulled.name)
        .unwrap()
        .expect("record");
    assert_eq!(stored.manifest.digest, pulled.manifest.digest);
    assert_eq!(stored.config.digest, pulled.config.digest);
    assert_eq!(stored.layers, pulled.layers);
    assert_eq!(
        stored.image_config.config.as_ref().unwrap().cmd,
        Some(vec!["/bin/app".to_string()])
    );
    assert!(
        image::load_stored_image(&store, "127.0.0.1:1/none:v1")
            .unwrap()
            .is_none()
    );

    let snaps = snapshotter(&env);
    let chain = image::unpack_stored(
        snaps.clone(),
        store.clone(),
        stored.name.clone(),
        stored.config.clone(),
        stored.layers.clone(),
    )
    .await
    .unwrap();
    assert_eq!(chain.len(), 2);
    assert!(snaps.snapshot_fs(&chain[1]).join("etc/added").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layer_escaping_through_a_symlink_fails_the_pull_naming_that_layer() {
    let env = env().await;
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("ok", "fine\n")], Compression::Gzip)
        .layer(
            vec![
                Entry::symlink("link", "/tmp"),
                Entry::file("link/escaped", "outside\n"),
            ],
            Compression::Gzip,
        )
        .build()
        .unwrap();
    push(&env, &img, "team/hostile:v1").await;
    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let puller = Puller::new(env.client.clone(), store, PullOptions::default())
        .with_snapshotter(snapshotter(&env));
    let err = puller
        .pull(&request(&env, "team/hostile:v1"))
        .await
        .unwrap_err();
    let bad_layer = &img.layers[1].descriptor.digest;
    match &err {
        PullError::Unpack { layer, image, .. } => {
            assert_eq!(
                layer.as_ref().map(ToString::to_string).as_deref(),
                Some(bad_layer.as_str())
            );
            assert!(image.ends_with("team/hostile:v1"), "{image}");
        }
        other => panic!("expected an unpack error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(bad_layer.as_str()), "{text}");
    assert!(!std::path::Path::new("/tmp/escaped").exists());
}
