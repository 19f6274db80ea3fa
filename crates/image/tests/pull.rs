//! End-to-end pulls against the real docker-registry (TLS + htpasswd) started by the testkit:
//! credential order, single-flight downloads, resume of a partial blob, and integrity failures.

use std::sync::{Arc, Mutex};

use image::{Attempt, Progress, PullError, PullOptions, PullRequest, Puller};
use registry::{Client, ClientConfig, Credential, TrustConfig};
use testkit::front::{Fault, FaultRule, Front, FrontOptions};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "canary-pw-7f3a";

struct Env {
    _pki: TestPki,
    registry: Registry,
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
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
    Env {
        _pki: pki,
        registry,
        dir,
        ca_file,
    }
}

fn client(ca_file: &std::path::Path) -> Client {
    Client::new(ClientConfig::with_trust(TrustConfig {
        ca_files: vec![ca_file.to_path_buf()],
        ..Default::default()
    }))
    .unwrap()
}

fn sample_image(layers: usize, layer_bytes: usize) -> testkit::image::Image {
    let mut b = ImageBuilder::new().cmd(["/bin/app"]);
    for i in 0..layers {
        // xorshift noise: incompressible, so the gzip layer is as large as `layer_bytes`
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
        let content: Vec<u8> = (0..layer_bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        b = b.layer(
            vec![Entry::file(format!("layer{i}/data"), content)],
            Compression::Gzip,
        );
    }
    b.build().unwrap()
}

fn request(registry: &Registry, repo_tag: &str, attempts: Vec<Attempt>) -> PullRequest {
    PullRequest {
        reference: oci::Reference::parse_normalized(&format!(
            "{}/{repo_tag}",
            registry.host_port()
        ))
        .unwrap(),
        attempts,
        platform: oci::Platform::parse("linux/amd64").unwrap(),
    }
}

fn attempt(label: &str, user: &str, pass: &str) -> Attempt {
    Attempt {
        label: label.to_string(),
        credential: Some(Credential::password(user, pass)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_tries_the_next_credential_after_a_refusal_and_commits_verified_blobs() {
    let env = env().await;
    let img = sample_image(3, 200_000);
    img.push(
        &env.registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    let store = content::Store::open(env.dir.path().join("store")).unwrap();
    let puller = Puller::new(client(&env.ca_file), store.clone(), PullOptions::default());
    let req = request(
        &env.registry,
        "team/app:v1",
        vec![
            attempt("first", "alice", "wrong"),
            attempt("second", "alice", PASSWORD),
        ],
    );
    let pulled = puller.pull(&req).await.unwrap();
    assert_eq!(pulled.credential, "second");
    assert_eq!(pulled.target.digest.to_string(), img.digest());
    assert_eq!(pulled.layers.len(), 3);
    for layer in &pulled.layers {
        assert!(
            store.exists(&layer.digest).unwrap(),
            "{} committed",
            layer.digest
        );
    }
    let report = store.verify_all().unwrap();
    assert!(
        report.corrupt.is_empty(),
        "store verifies clean: {report:?}"
    );
    let record = store
        .get_image(&pulled.name)
        .unwrap()
        .expect("image record");
    assert_eq!(record.target.digest, pulled.target.digest);
    assert_eq!(
        pulled.name,
        format!("{}/team/app:v1", env.registry.host_port())
    );

    // A second pull finds everything present and downloads nothing.
    let again = puller.pull(&req).await.unwrap();
    assert_eq!(again.downloaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_credentials_are_each_named_and_no_password_is_shown() {
    let env = env().await;
    sample_image(1, 1000)
        .push(
            &env.registry,
            "team/app:v1",
            Some(&Credentials::new("alice", PASSWORD)),
        )
        .await
        .unwrap();
    let store = content::Store::open(env.dir.path().join("store")).unwrap();
    let puller = Puller::new(client(&env.ca_file), store, PullOptions::default());
    let req = request(
        &env.registry,
        "team/app:v1",
        vec![
            attempt("secret default/a", "alice", "nope-1"),
            attempt("secret default/b", "bob", "nope-2"),
        ],
    );
    let err = puller.pull(&req).await.unwrap_err();
    let PullError::Denied(failures) = &err else {
        panic!("expected a denial, got {err}");
    };
    assert_eq!(failures.len(), 2);
    let text = err.to_string();
    assert!(
        text.contains("secret default/a") && text.contains("secret default/b"),
        "{text}"
    );
    assert!(
        text.contains(&env.registry.host_port()),
        "names the registry: {text}"
    );
    assert!(
        !text.contains("nope-1") && !text.contains("nope-2"),
        "no password: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_image_download_each_blob_once() {
    let env = env().await;
    let img = sample_image(4, 300_000);
    img.push(
        &env.registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    let store = content::Store::open(env.dir.path().join("store")).unwrap();
    let puller = Puller::new(client(&env.ca_file), store, PullOptions::default());
    let req = request(
        &env.registry,
        "team/app:v1",
        vec![attempt("a", "alice", PASSWORD)],
    );
    let pulls: Vec<_> = (0..20)
        .map(|_| {
            let (p, r) = (puller.clone(), req.clone());
            tokio::spawn(async move { p.pull(&r).await })
        })
        .collect();
    let mut downloaded = 0;
    for p in pulls {
        downloaded += p.await.unwrap().unwrap().downloaded;
    }
    let blobs = img.blobs();
    let expected: u64 = blobs
        .iter()
        .filter(|(d, _)| d.media_type.contains("layer") || d.media_type.contains("config"))
        .map(|(d, _)| d.size)
        .sum();
    assert_eq!(
        downloaded, expected,
        "every byte downloaded exactly once in total"
    );
    for layer in img.layer_descriptors() {
        assert_eq!(
            env.registry.blob_gets("team/app", &layer.digest).await,
            1,
            "one GET for {}",
            layer.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_pull_leaves_a_partial_blob_that_the_next_pull_resumes() {
    let env = env().await;
    let img = sample_image(1, 2_000_000);
    img.push(
        &env.registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    let pki = TestPki::named("front").unwrap();
    let front = Front::start(
        &env.registry,
        None,
        FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let ca_file = env.dir.path().join("front-ca.crt");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    // The layer's GET is cut after 500 kB, and the first puller's client is told not to
    // resume within the request, so the pull fails with a partial ingest on disk.
    let layer = img.layer_descriptors()[0].clone();
    let rule = front.faults().add(
        FaultRule::new(Fault::ResetAfter { bytes: 500_000 })
            .on("GET", &format!("/blobs/{}", layer.digest))
            .unwrap()
            .times(1),
    );
    let store = content::Store::open(env.dir.path().join("store")).unwrap();
    let mut no_retry = ClientConfig::with_trust(TrustConfig {
        ca_files: vec![ca_file.clone()],
        ..Default::default()
    });
    no_retry.retry.max_attempts = 1;
    no_retry.retry.max_resume_without_progress = 0;
    let impatient = Puller::new(
        Client::new(no_retry).unwrap(),
        store.clone(),
        PullOptions::default(),
    );
    let puller = Puller::new(client(&ca_file), store.clone(), PullOptions::default());
    let req = PullRequest {
        reference: oci::Reference::parse_normalized(&format!("{}/team/app:v1", front.host_port()))
            .unwrap(),
        attempts: vec![attempt("a", "alice", PASSWORD)],
        platform: oci::Platform::parse("linux/amd64").unwrap(),
    };
    let err = impatient.pull(&req).await.unwrap_err();
    assert_eq!(rule.fired(), 1, "the fault fired");
    assert!(
        !store.exists(&layer.digest.parse().unwrap()).unwrap(),
        "nothing unverified visible: {err}"
    );

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pulled = puller
        .pull_with_progress(
            &req,
            Arc::new(move |e: Progress| seen.lock().unwrap().push(e)),
        )
        .await
        .unwrap();
    let resumed_from = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            Progress::BlobStarted { digest, offset, .. } if digest.to_string() == layer.digest => {
                Some(*offset)
            }
            _ => None,
        })
        .expect("the layer was fetched again");
    assert!(resumed_from >= 500_000, "resumed at {resumed_from}");
    assert!(
        pulled.downloaded < pulled.size,
        "did not download everything again"
    );
    assert!(store.verify_all().unwrap().corrupt.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_is_rejected_and_nothing_becomes_visible() {
    let env = env().await;
    let img = sample_image(1, 100_000);
    img.push(
        &env.registry,
        "team/app:v1",
        Some(&Credentials::new("alice", PASSWORD)),
    )
    .await
    .unwrap();
    let pki = TestPki::named("front").unwrap();
    let front = Front::start(
        &env.registry,
        None,
        FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let ca_file = env.dir.path().join("front-ca.crt");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    let layer = img.layer_descriptors()[0].clone();
    front.faults().add(
        FaultRule::new(Fault::FlipByte { offset: 1234 })
            .on("GET", &format!("/blobs/{}", layer.digest))
            .unwrap(),
    );
    let store = content::Store::open(env.dir.path().join("store")).unwrap();
    let puller = Puller::new(client(&ca_file), store.clone(), PullOptions::default());
    let req = PullRequest {
        reference: oci::Reference::parse_normalized(&format!("{}/team/app:v1", front.host_port()))
            .unwrap(),
        attempts: vec![attempt("a", "alice", PASSWORD)],
        platform: oci::Platform::parse("linux/amd64").unwrap(),
    };
    let err = puller.pull(&req).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&layer.digest),
        "names the expected digest: {text}"
    );
    assert!(!store.exists(&layer.digest.parse().unwrap()).unwrap());
    assert!(
        store
            .get_image(&req.reference.clone().with_default_tag().to_string())
            .unwrap()
            .is_none()
    );
}
