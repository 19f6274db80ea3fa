//! `ImageManager::ensure_image` against the real docker-registry (TLS + htpasswd) started by testkit: a pull
//! with a pod secret and its KEP-2535 record, a missing secret and the denied anonymous pull in back-off, an
//! unknown CA on the registry and on the blob CDN only, KEP-2535 keeping a cached private image from pods
//! without the secret, and one download for ten concurrent pods.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use podpull::{EventType, FetchedSecret, ManualClock, PullProgress};
use testkit::front::{Cdn, CdnOptions, Front, FrontOptions};
use testkit::pki::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_secret_pulls_unpacks_records_and_reads_like_kubelet() {
    let env = Env::start().await;
    let clock = ManualClock::new();
    let m = manager(env.dir.path(), client(&env.trusted_hosts()), clock);
    let events = Events::default();
    let image = env.image_ref();
    let seen = Arc::new(Mutex::new(0usize));
    let counter = seen.clone();
    let progress: Arc<dyn PullProgress> = Arc::new(move |_: image::Progress| {
        *counter.lock().unwrap() += 1;
    });

    let ready = m
        .ensure_image(
            &pod("web-1"),
            &image,
            Some("IfNotPresent"),
            &[env.alice("regcred", "uid-regcred")],
            &events,
            Some(progress),
        )
        .await
        .unwrap();
    assert_eq!(ready.name, image);
    assert_eq!(
        ready.image_id,
        format!("{}/team/app@{}", env.host(), env.image.digest())
    );
    assert_eq!(ready.snapshots.len(), 2, "both layers unpacked");
    assert_eq!(
        ready.config.config.as_ref().and_then(|c| c.cmd.clone()),
        Some(vec!["/bin/app".to_string()])
    );
    assert!(*seen.lock().unwrap() > 0, "progress forwarded");

    let all = events.all();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        (all[0].0, all[0].1.as_str(), all[0].2.as_str()),
        (
            EventType::Normal,
            "Pulling",
            &*format!("Pulling image \"{image}\"")
        )
    );
    let pulled = &all[1].2;
    let prefix = format!("Successfully pulled image \"{image}\" in ");
    assert!(pulled.starts_with(&prefix), "{pulled}");
    assert!(
        pulled.ends_with(&format!(
            " including waiting). Image size: {} bytes.",
            ready.size
        )),
        "{pulled}"
    );
    assert!(ready.size > 300_000, "{}", ready.size);

    // The KEP-2535 record names the secret and a hash, never the password.
    let records: Vec<_> = std::fs::read_dir(env.dir.path().join("state/pulled"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    let secrets =
        &record["credentialMapping"][format!("{}/team/app", env.host())]["kubernetesSecrets"];
    assert_eq!(secrets[0]["uid"], "uid-regcred");
    assert_eq!(secrets[0]["namespace"], "team");
    assert_eq!(secrets[0]["name"], "regcred");
    assert_eq!(secrets[0]["credentialHash"].as_str().unwrap().len(), 64);
    assert!(!records[0].contains(PASSWORD));
    assert!(
        std::fs::read_dir(env.dir.path().join("state/pulling"))
            .unwrap()
            .next()
            .is_none(),
        "the pull intent is gone"
    );

    // Present and verified: no pull, kubelet's KEP-2535 text.
    events.clear();
    let again = m
        .ensure_image(
            &pod("web-1"),
            &image,
            None,
            &[env.alice("regcred", "uid-regcred")],
            &events,
            None,
        )
        .await;
    // No policy and tag v1: IfNotPresent.
    let again = again.unwrap();
    assert_eq!(again.snapshots, ready.snapshots);
    assert_eq!(again.size, ready.size);
    assert_eq!(
        events.all(),
        [(
            EventType::Normal,
            "Pulled".to_string(),
            format!(
                "Container image \"{image}\" already present on machine and can be accessed by the pod"
            )
        )]
    );
    assert!(!events.text().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_secret_warns_and_the_denied_anonymous_pull_backs_off_with_the_denial() {
    let env = Env::start().await;
    let clock = ManualClock::new();
    let m = manager(env.dir.path(), client(&env.trusted_hosts()), clock.clone());
    let events = Events::default();
    let image = env.image_ref();
    let secrets = [FetchedSecret::Missing {
        name: "regcred".into(),
    }];
    let p = pod("web-1");

    let w = m
        .ensure_image(&p, &image, None, &secrets, &events, None)
        .await
        .unwrap_err();
    assert_eq!(w.reason, "ErrImagePull");
    assert!(
        w.message.starts_with(
            "pull access denied, repository does not exist or may require authorization"
        ),
        "{}",
        w.message
    );
    assert!(
        w.message.contains(&env.host()),
        "names the registry: {}",
        w.message
    );
    assert_eq!(
        events.all(),
        [
            (
                EventType::Warning,
                "FailedToRetrieveImagePullSecret".to_string(),
                "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.".to_string()
            ),
            (EventType::Normal, "Pulling".into(), format!("Pulling image \"{image}\"")),
            (
                EventType::Warning,
                "Failed".into(),
                format!("Failed to pull image \"{image}\": {}", w.message)
            ),
            (EventType::Warning, "Failed".into(), "Error: ErrImagePull".into()),
        ]
    );

    // Within the back-off: no pull, the previous error in the message.
    events.clear();
    clock.advance(Duration::from_secs(9));
    let b = m
        .ensure_image(&p, &image, None, &secrets, &events, None)
        .await
        .unwrap_err();
    assert_eq!(b.reason, "ImagePullBackOff");
    assert_eq!(
        b.message,
        format!(
            "Back-off pulling image \"{image}\": ErrImagePull: {}",
            w.message
        )
    );
    assert_eq!(
        events.reasons(),
        ["FailedToRetrieveImagePullSecret", "BackOff", "Failed"]
    );
    assert_eq!(
        events.messages("BackOff"),
        [format!("Back-off pulling image \"{image}\"")]
    );
    assert_eq!(events.messages("Failed"), ["Error: ImagePullBackOff"]);

    // Another pod is not in this pod's back-off.
    events.clear();
    let other = m
        .ensure_image(&pod("web-2"), &image, None, &secrets, &events, None)
        .await
        .unwrap_err();
    assert_eq!(other.reason, "ErrImagePull");

    // After 10 s the pull is retried; the next delay doubles.
    events.clear();
    clock.advance(Duration::from_secs(1));
    let retry = m
        .ensure_image(&p, &image, None, &secrets, &events, None)
        .await
        .unwrap_err();
    assert_eq!(retry.reason, "ErrImagePull");
    assert!(events.reasons().contains(&"Pulling".to_string()));
    assert_eq!(
        m.backoff_delay(&p.uid, &image),
        Some(Duration::from_secs(20))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_registry_ca_fails_with_an_event_naming_the_registry_and_the_cluster_fix() {
    let env = Env::start().await;
    let hosts = env.dir.path().join("empty-hosts");
    std::fs::create_dir_all(&hosts).unwrap();
    let m = manager(env.dir.path(), client(&hosts), ManualClock::new());
    let events = Events::default();
    let image = env.image_ref();
    let w = m
        .ensure_image(
            &pod("web-1"),
            &image,
            None,
            &[env.alice("regcred", "uid-1")],
            &events,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(w.reason, "ErrImagePull");
    let host = env.host();
    for needle in [
        "x509: certificate signed by unknown authority",
        &format!("{host} (the registry)"),
        &format!("trust sources checked for {host}"),
        &format!("`berth trust fetch {host}`"),
        &format!("`berth trust add --cluster {host} --fingerprint sha256:"),
    ] {
        assert!(w.message.contains(needle), "{needle:?} in {}", w.message);
    }
    let tls = events.messages("RegistryTLSFailed");
    assert_eq!(tls, std::slice::from_ref(&w.message));
    assert_eq!(
        events.messages("Failed")[0],
        format!("Failed to pull image \"{image}\": {}", w.message)
    );
    assert!(!events.text().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_ca_on_the_blob_cdn_only_names_the_cdn_host() {
    let env = Env::start().await;
    let cdn_pki = TestPki::named("cdn").unwrap();
    let cdn = Cdn::start(
        &env.registry,
        CdnOptions::new(cdn_pki.server(["127.0.0.2"]).unwrap(), cdn_pki.ca_pem()),
    )
    .await
    .unwrap();
    let front_pki = TestPki::named("front").unwrap();
    let mut fo = FrontOptions::new(front_pki.server(["127.0.0.1"]).unwrap(), front_pki.ca_pem());
    fo.redirect_blobs = true;
    let front = Front::start(&env.registry, Some(&cdn), fo).await.unwrap();
    let hosts = env.dir.path().join("front-hosts");
    trust_host(&hosts, &front.host_port(), front_pki.ca_pem());
    let m = manager(env.dir.path(), client(&hosts), ManualClock::new());
    let events = Events::default();
    let image = format!("{}/team/app:v1", front.host_port());
    let w = m
        .ensure_image(
            &pod("web-1"),
            &image,
            None,
            &[secret(
                "regcred",
                "uid-1",
                &front.host_port(),
                "alice",
                PASSWORD,
            )],
            &events,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(w.reason, "ErrImagePull");
    let cdn_host = cdn.addr().to_string();
    assert!(cdn_host.starts_with("127.0.0.2:"), "{cdn_host}");
    for needle in [
        "x509: certificate signed by unknown authority",
        &format!("{cdn_host} (the blob CDN the registry redirected the layer download to)"),
        &format!("`berth trust add --cluster {cdn_host} --fingerprint sha256:"),
    ] {
        assert!(w.message.contains(needle), "{needle:?} in {}", w.message);
    }
    assert!(
        !w.message
            .contains(&format!("certificate of {}", front.host_port())),
        "the registry itself is trusted: {}",
        w.message
    );
    assert!(
        !w.message.contains("sig="),
        "no signed URL query: {}",
        w.message
    );
    assert_eq!(
        events.messages("RegistryTLSFailed"),
        std::slice::from_ref(&w.message)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kep2535_keeps_a_cached_private_image_from_pods_without_its_secret() {
    let env = Env::start().await;
    let m = manager(
        env.dir.path(),
        client(&env.trusted_hosts()),
        ManualClock::new(),
    );
    let image = env.image_ref();
    let events = Events::default();
    m.ensure_image(
        &pod("owner"),
        &image,
        Some("IfNotPresent"),
        &[env.alice("regcred", "uid-regcred")],
        &events,
        None,
    )
    .await
    .unwrap();

    // IfNotPresent without the secret: forced to re-authenticate, anonymous is denied.
    events.clear();
    let w = m
        .ensure_image(
            &pod("intruder"),
            &image,
            Some("IfNotPresent"),
            &[],
            &events,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(w.reason, "ErrImagePull");
    assert!(w.message.starts_with("pull access denied"), "{}", w.message);
    assert_eq!(events.reasons(), ["Pulling", "Failed", "Failed"]);

    // Never without the secret: exactly the message of an absent image.
    events.clear();
    let w = m
        .ensure_image(&pod("sneaky"), &image, Some("Never"), &[], &events, None)
        .await
        .unwrap_err();
    assert_eq!(w.reason, "ErrImageNeverPull");
    let never = format!("Container image \"{image}\" is not present with pull policy of Never");
    assert_eq!(w.message, never);
    assert_eq!(
        events.all(),
        [
            (
                EventType::Warning,
                "ErrImageNeverPull".into(),
                never.clone()
            ),
            (
                EventType::Warning,
                "Failed".into(),
                "Error: ErrImageNeverPull".into()
            ),
        ]
    );

    // Another user's valid credentials prove nothing about this image's record: re-authentication (which
    // succeeds here, bob may read) is required, then bob's secret is recorded.
    events.clear();
    let bob = secret("bobcred", "uid-bob", &env.host(), "bob", BOB_PASSWORD);
    m.ensure_image(
        &pod("bob"),
        &image,
        Some("IfNotPresent"),
        &[bob],
        &events,
        None,
    )
    .await
    .unwrap();
    assert_eq!(events.reasons(), ["Pulling", "Pulled"]);

    // The same credentials in another secret of another pod: allowed without a pull, under Never too.
    for policy in ["IfNotPresent", "Never"] {
        events.clear();
        let ready = m
            .ensure_image(
                &pod("friend"),
                &image,
                Some(policy),
                &[env.alice("copy-of-regcred", "uid-copy")],
                &events,
                None,
            )
            .await
            .unwrap();
        assert_eq!(ready.snapshots.len(), 2);
        assert_eq!(
            events.messages("Pulled"),
            [format!(
                "Container image \"{image}\" already present on machine and can be accessed by the pod"
            )],
            "{policy}"
        );
        assert_eq!(events.reasons(), ["Pulled"], "{policy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_pods_share_one_pull_per_credential_and_download_each_blob_once() {
    let env = Env::start().await;
    let m = manager(
        env.dir.path(),
        client(&env.trusted_hosts()),
        ManualClock::new(),
    );
    let image = env.image_ref();
    let manifest_requests = || async {
        let log = env.registry.access_log_settled().await;
        log.iter()
            .filter(|e| e.path() == "/v2/team/app/manifests/v1" && (200..300).contains(&e.status))
            .count()
    };
    let before = manifest_requests().await;
    let blob_events = Arc::new(Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for i in 0..10 {
        let (m, image, secret) = (
            m.clone(),
            image.clone(),
            env.alice("regcred", "uid-regcred"),
        );
        let sink = blob_events.clone();
        let progress: Arc<dyn PullProgress> = Arc::new(move |e: image::Progress| {
            if let image::Progress::BlobDone {
                digest, existed, ..
            } = e
            {
                sink.lock().unwrap().push((digest.to_string(), existed));
            }
        });
        calls.push(tokio::spawn(async move {
            let events = Events::default();
            let r = m
                .ensure_image(
                    &pod(&format!("web-{i}")),
                    &image,
                    Some("IfNotPresent"),
                    &[secret],
                    &events,
                    Some(progress),
                )
                .await;
            (r, events.reasons())
        }));
    }
    for c in calls {
        let (r, reasons) = c.await.unwrap();
        let ready = r.unwrap();
        assert_eq!(ready.snapshots.len(), 2);
        assert!(reasons.last().is_some_and(|r| r == "Pulled"), "{reasons:?}");
    }
    for layer in env.image.layer_descriptors() {
        assert_eq!(
            env.registry.blob_gets("team/app", &layer.digest).await,
            1,
            "one GET of {}",
            layer.digest
        );
    }
    let shared = manifest_requests().await - before;

    // One more pull with the same credential measures what a single flight costs in manifest requests.
    m.ensure_image(
        &pod("single"),
        &image,
        Some("Always"),
        &[env.alice("regcred", "uid-regcred")],
        &Events::default(),
        None,
    )
    .await
    .unwrap();
    let single = manifest_requests().await - before - shared;
    assert!(single >= 1);
    assert_eq!(shared, single, "ten pods resolved the image once");
    let downloaded: std::collections::BTreeSet<_> = blob_events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, existed)| !existed)
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(
        downloaded.len(),
        3,
        "config and two layers reached the callers' sinks: {downloaded:?}"
    );

    // Different credentials never share a flight: five pods with alice and five with bob resolve twice.
    let mark = manifest_requests().await;
    let mut calls = Vec::new();
    for i in 0..10 {
        let secret = if i % 2 == 0 {
            env.alice("regcred", "uid-regcred")
        } else {
            secret("bobcred", "uid-bob", &env.host(), "bob", BOB_PASSWORD)
        };
        let (m, image) = (m.clone(), image.clone());
        calls.push(tokio::spawn(async move {
            m.ensure_image(
                &pod(&format!("mixed-{i}")),
                &image,
                Some("Always"),
                &[secret],
                &Events::default(),
                None,
            )
            .await
        }));
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let mixed = manifest_requests().await - mark;
    assert!(
        mixed >= 2 * single,
        "at least one resolve per credential: {mixed} requests, {single} per pull"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_secret_blocks_every_image_of_the_pod_naming_itself() {
    let env = Env::start().await;
    let m = manager(
        env.dir.path(),
        client(&env.trusted_hosts()),
        ManualClock::new(),
    );
    let events = Events::default();
    let requests_before = env.registry.access_log_settled().await.len();
    let FetchedSecret::Found(mut bad) = env.alice("broken", "uid-b") else {
        unreachable!()
    };
    bad.data.as_mut().unwrap().insert(
        ".dockerconfigjson".into(),
        k8s_openapi::ByteString(br#"{"auths": secret-value"#.to_vec()),
    );
    let w = m
        .ensure_image(
            &pod("web-1"),
            &env.image_ref(),
            None,
            &[env.alice("regcred", "uid-r"), FetchedSecret::Found(bad)],
            &events,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        w.reason
            .starts_with(r#"image pull secret team/broken is malformed: .data[".dockerconfigjson"]: invalid JSON"#),
        "{}",
        w.reason
    );
    assert_eq!(
        w.reason, w.message,
        "kubelet returns the error as the reason"
    );
    assert!(!w.reason.contains("secret-value"));
    assert_eq!(events.messages("Failed"), [format!("Error: {}", w.reason)]);
    assert_eq!(
        env.registry.access_log_settled().await.len(),
        requests_before,
        "nothing was pulled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_verification_off_any_pod_uses_a_present_image_as_kubelet_did_before_kep2535() {
    let env = Env::start().await;
    let m = manager_with(
        env.dir.path(),
        client(&env.trusted_hosts()),
        ManualClock::new(),
        podpull::ManagerOptions {
            verify_credentials: false,
            platform: oci::Platform::parse("linux/amd64").unwrap(),
            ..podpull::ManagerOptions::default()
        },
    );
    let image = env.image_ref();
    m.ensure_image(
        &pod("owner"),
        &image,
        None,
        &[env.alice("regcred", "uid-regcred")],
        &Events::default(),
        None,
    )
    .await
    .unwrap();
    let events = Events::default();
    m.ensure_image(&pod("other"), &image, Some("Never"), &[], &events, None)
        .await
        .unwrap();
    assert_eq!(
        events.all(),
        [(
            EventType::Normal,
            "Pulled".to_string(),
            format!("Container image \"{image}\" already present on machine")
        )]
    );
    assert!(
        !env.dir.path().join("state").exists(),
        "no KEP-2535 records when verification is off"
    );
}
