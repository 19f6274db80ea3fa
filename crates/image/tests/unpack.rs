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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn layers_unpack_while_later_layers_still_download() {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    use testkit::front::{Fault, FaultRule, Front, FrontOptions};

    let env = env().await;
    // Four layers of 256 small files each; the last one's GET is held back by the front.
    let mut builder = ImageBuilder::new().cmd(["/bin/app"]);
    for l in 0..4 {
        let entries = (0..256)
            .map(|f| Entry::file(format!("l{l}/f{f}"), vec![b'a' + l as u8; 4096]))
            .collect();
        builder = builder.layer(entries, Compression::Gzip);
    }
    let img = builder.build().unwrap();
    push(&env, &img, "team/overlap:v1").await;
    let front = Front::start(
        &env.registry,
        None,
        FrontOptions::new(env._pki.server(["127.0.0.1"]).unwrap(), env._pki.ca_pem()),
    )
    .await
    .unwrap();
    let layers = img.layer_descriptors();
    let last = layers.last().unwrap().digest.clone();
    let held = front.faults().add(
        FaultRule::new(Fault::Delay {
            duration: Duration::from_secs(4),
        })
        .on("GET", &format!("/blobs/{last}"))
        .unwrap()
        .times(1),
    );

    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let snaps = snapshotter(&env);
    let puller = Puller::new(env.client.clone(), store, PullOptions::default())
        .with_snapshotter(snaps.clone());
    let mut req = request(&env, "team/overlap:v1");
    req.reference =
        oci::Reference::parse_normalized(&format!("{}/team/overlap:v1", front.host_port()))
            .unwrap();

    // When the last layer's blob is committed, which layers are already complete snapshots?
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(None));
    let (sink_snaps, sink_seen, sink_last) = (snaps.clone(), seen.clone(), last.clone());
    let sink = move |e: image::Progress| {
        if let image::Progress::BlobDone { digest, .. } = e
            && digest.to_string() == sink_last
        {
            let done: Vec<String> = sink_snaps
                .list()
                .unwrap()
                .into_iter()
                .map(|i| i.layer.to_string())
                .collect();
            *sink_seen.lock().unwrap() = Some((started.elapsed(), done));
        }
    };
    let pulled = puller
        .pull_with_progress(&req, Arc::new(sink))
        .await
        .unwrap();
    let total = started.elapsed();
    assert_eq!(held.fired(), 1, "the last layer was held back");
    let (last_done_at, done) = seen.lock().unwrap().clone().expect("last layer committed");
    eprintln!(
        "pull of {} layers: last layer committed at {last_done_at:?} with {} layer(s) already \
         unpacked; pull + unpack done at {total:?}",
        layers.len(),
        done.len()
    );
    assert!(
        done.contains(&layers[0].digest),
        "layer 1 was unpacked before the last layer's download completed: {done:?}"
    );
    assert!(
        !done.contains(&last),
        "the last layer is never unpacked before its blob is committed"
    );
    assert_eq!(pulled.snapshots.len(), 4);
    for id in &pulled.snapshots {
        assert!(snaps.info(id).unwrap().is_some(), "{id} complete");
    }
    // For the record: unpacking the same layers after the download, as pulls did before.
    let fresh = Arc::new(
        Snapshotter::open(env.dir.path().join("unpack-after"))
            .unwrap()
            .with_mode(Mode::Native),
    );
    let t = Instant::now();
    image::unpack_stored(
        fresh,
        puller.store().clone(),
        pulled.name.clone(),
        pulled.config.clone(),
        pulled.layers.clone(),
    )
    .await
    .unwrap();
    eprintln!(
        "unpack after download would end at {:?} (+{:?})",
        last_done_at + t.elapsed(),
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_download_of_a_later_layer_fails_the_pull_and_leaves_no_snapshot_of_it() {
    use testkit::front::{Fault, FaultRule, Front, FrontOptions};

    let env = env().await;
    let img = two_layer_image();
    push(&env, &img, "team/corrupt:v1").await;
    let front = Front::start(
        &env.registry,
        None,
        FrontOptions::new(env._pki.server(["127.0.0.1"]).unwrap(), env._pki.ca_pem()),
    )
    .await
    .unwrap();
    let layers = img.layer_descriptors();
    front.faults().add(
        FaultRule::new(Fault::FlipByte { offset: 10 })
            .on("GET", &format!("/blobs/{}", layers[1].digest))
            .unwrap(),
    );
    let store = content::Store::open(env.dir.path().join("content")).unwrap();
    let snaps = snapshotter(&env);
    let puller = Puller::new(env.client.clone(), store.clone(), PullOptions::default())
        .with_snapshotter(snaps.clone());
    let mut req = request(&env, "team/corrupt:v1");
    req.reference =
        oci::Reference::parse_normalized(&format!("{}/team/corrupt:v1", front.host_port()))
            .unwrap();
    let err = puller.pull(&req).await.unwrap_err();
    assert!(matches!(err, PullError::Integrity(_)), "{err}");
    assert!(
        !store.exists(&layers[1].digest.parse().unwrap()).unwrap(),
        "the corrupt blob is not visible"
    );
    let unpacked: Vec<String> = snaps
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.layer.to_string())
        .collect();
    assert!(
        !unpacked.contains(&layers[1].digest),
        "no snapshot of the layer that failed verification: {unpacked:?}"
    );
    // Nothing half-built is left behind once the pull has returned.
    let leftovers: Vec<_> = std::fs::read_dir(snaps.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
