//! Proves the Front proxy and the CDN against the real distribution 2.8: blob GETs redirect to a CDN on
//! another host and CA that never sees `Authorization`, and each fault is observable by a plain client.

use std::time::Duration;

use testkit::front::{Cdn, CdnOptions, Fault, FaultRule, Front, FrontOptions};
use testkit::image::{
    Compression, Credentials, Entry, Image, ImageBuilder, OCI_MANIFEST, sha256_digest,
};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

struct Setup {
    pki: TestPki,
    cdn_pki: TestPki,
    registry: Registry,
    cdn: Cdn,
    front: Front,
    img: Image,
}

async fn setup(redirect: bool) -> Setup {
    let pki = TestPki::new().unwrap();
    let cdn_pki = TestPki::named("cdn").unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", "secret-pw")]),
    )
    .await
    .unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("data.bin", content)], Compression::None)
        .build()
        .unwrap();
    img.push(
        &registry,
        "team/app:v1",
        Some(&Credentials::new("alice", "secret-pw")),
    )
    .await
    .unwrap();
    let cdn = Cdn::start(
        &registry,
        CdnOptions::new(cdn_pki.server(["127.0.0.2"]).unwrap(), cdn_pki.ca_pem()),
    )
    .await
    .unwrap();
    let front = Front::start(
        &registry,
        Some(&cdn),
        FrontOptions {
            redirect_blobs: redirect,
            ..FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
        },
    )
    .await
    .unwrap();
    Setup {
        pki,
        cdn_pki,
        registry,
        cdn,
        front,
        img,
    }
}

fn client(s: &Setup) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(s.pki.ca_pem().as_bytes()).unwrap())
        .add_root_certificate(
            reqwest::Certificate::from_pem(s.cdn_pki.ca_pem().as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn blob_url(s: &Setup) -> String {
    format!(
        "{}/v2/team/app/blobs/{}",
        s.front.url(),
        s.img.layers[0].descriptor.digest
    )
}

fn manifest_url(s: &Setup) -> String {
    format!("{}/v2/team/app/manifests/v1", s.front.url())
}

#[tokio::test]
async fn blob_redirect_reaches_cdn_without_authorization() {
    let s = setup(true).await;
    let c = client(&s);
    let resp = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.url().as_str().starts_with("https://127.0.0.2:"),
        "{}",
        resp.url()
    );
    assert_eq!(resp.bytes().await.unwrap(), s.img.layers[0].data);
    let front_saw = s.front.requests();
    assert!(
        front_saw[0].header("authorization").is_some(),
        "the front stands for the registry"
    );
    let cdn_saw = s.cdn.requests();
    assert_eq!(cdn_saw.len(), 1);
    assert!(
        cdn_saw[0].header("authorization").is_none(),
        "{:?}",
        cdn_saw[0].headers
    );
    assert!(cdn_saw[0].query.as_deref().unwrap().starts_with("sig="));

    // unauthenticated blob GETs are not redirected
    let anon = c.get(blob_url(&s)).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert_eq!(s.cdn.requests().len(), 1);

    // the CDN serves ranges and refuses unsigned URLs
    let digest = &s.img.layers[0].descriptor.digest;
    let part = c
        .get(s.cdn.blob_url(digest))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", s.img.layers[0].data.len())
    );
    assert_eq!(
        part.bytes().await.unwrap(),
        s.img.layers[0].data.slice(10..20)
    );
    let unsigned = c
        .get(format!("{}/blobs/{digest}", s.cdn.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(
        s.registry.blob_gets("team/app", digest).await,
        0,
        "blob bytes came from the CDN"
    );
}

#[tokio::test]
async fn status_faults_fire_n_times_then_pass_through() {
    let s = setup(false).await;
    let c = client(&s);
    let rule = s.front.faults().add(
        FaultRule::new(Fault::Status { status: 503 })
            .on("GET", "/manifests/")
            .unwrap()
            .times(2),
    );
    s.front.faults().add(
        FaultRule::new(Fault::TooManyRequests {
            retry_after: "7".into(),
        })
        .on("GET", "/blobs/")
        .unwrap()
        .times(1),
    );
    let get = || {
        c.get(manifest_url(&s))
            .header("Accept", OCI_MANIFEST)
            .basic_auth("alice", Some("secret-pw"))
    };
    assert_eq!(get().send().await.unwrap().status(), 503);
    assert_eq!(get().send().await.unwrap().status(), 503);
    let ok = get().send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap(), s.img.manifest);
    assert_eq!(rule.fired(), 2);

    let limited = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert!(limited.text().await.unwrap().contains("TOOMANYREQUESTS"));
}

#[tokio::test]
async fn body_faults_are_observable() {
    let s = setup(false).await;
    let c = client(&s);
    let layer = &s.img.layers[0];
    let get = || c.get(blob_url(&s)).basic_auth("alice", Some("secret-pw"));

    s.front.faults().add(
        FaultRule::new(Fault::ResetAfter { bytes: 1000 })
            .on("GET", "/blobs/")
            .unwrap()
            .times(1),
    );
    let resp = get().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "reset must surface as a body error"
    );

    s.front.faults().add(
        FaultRule::new(Fault::FlipByte { offset: 5 })
            .on("GET", "/blobs/")
            .unwrap()
            .times(1),
    );
    let flipped = get().send().await.unwrap().bytes().await.unwrap();
    assert_eq!(flipped.len(), layer.data.len());
    assert_ne!(sha256_digest(&flipped), layer.descriptor.digest);

    s.front.faults().add(
        FaultRule::new(Fault::IgnoreRange)
            .on("GET", "/blobs/")
            .unwrap()
            .times(1),
    );
    let full = get().header("Range", "bytes=100-").send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap().len(), layer.data.len());
    let ranged = get().header("Range", "bytes=100-").send().await.unwrap();
    assert_eq!(
        ranged.status(),
        206,
        "distribution honours Range when the fault is gone"
    );

    s.front.faults().add(
        FaultRule::new(Fault::ExtraBytes {
            count: 10,
            declare: true,
        })
        .on("GET", "/blobs/")
        .unwrap()
        .times(1),
    );
    let bigger = get().send().await.unwrap();
    assert_eq!(bigger.content_length(), Some(layer.data.len() as u64 + 10));
    assert_eq!(bigger.bytes().await.unwrap().len(), layer.data.len() + 10);

    s.front.faults().add(
        FaultRule::new(Fault::Stall { after_bytes: 100 })
            .on("GET", "/blobs/")
            .unwrap()
            .times(1),
    );
    let stalled = get().send().await.unwrap();
    assert_eq!(stalled.status(), 200);
    let r = tokio::time::timeout(Duration::from_millis(500), stalled.bytes()).await;
    assert!(r.is_err(), "a stalled body never completes");
}

#[tokio::test]
async fn manifest_and_challenge_faults_are_observable() {
    let s = setup(false).await;
    let c = client(&s);
    s.front.faults().add(
        FaultRule::new(Fault::OversizedManifest {
            size: 4 * 1024 * 1024 + 1,
        })
        .on("GET", "/manifests/")
        .unwrap()
        .times(1),
    );
    let big = c.get(manifest_url(&s)).send().await.unwrap();
    assert_eq!(big.status(), 200);
    assert_eq!(big.bytes().await.unwrap().len(), 4 * 1024 * 1024 + 1);

    s.front.faults().add(
        FaultRule::new(Fault::bearer_realm("http://169.254.169.254/token"))
            .on_path("^/v2/$")
            .unwrap(),
    );
    let ping = c
        .get(format!("{}/v2/", s.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 401);
    assert!(
        ping.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("realm=\"http://169.254.169.254/token\"")
    );

    // without faults the front is a faithful proxy, including pushes through it
    s.front.faults().clear();
    let pinged = c
        .get(format!("{}/v2/", s.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(pinged.status(), 401);
    assert!(
        pinged.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let mut p = testkit::image::RawPusher::to_url(
        &s.front.url(),
        &[s.front.ca_pem()],
        "pushed/through-front",
        Some(Credentials::new("alice", "secret-pw")),
    )
    .unwrap();
    for (_, data) in s.img.blobs() {
        p.push_blob(&data).await.unwrap();
    }
    p.push_manifest("v2", OCI_MANIFEST, &s.img.manifest)
        .await
        .unwrap();
    let uploads = s
        .front
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        uploads, 2,
        "blob uploads followed the Location the registry built for the front"
    );
    let v2 = c
        .get(format!(
            "{}/v2/pushed/through-front/manifests/v2",
            s.front.url()
        ))
        .basic_auth("alice", Some("secret-pw"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(v2.headers()["docker-content-digest"], s.img.digest());
}

#[tokio::test]
async fn cdn_faults_apply_to_redirected_blob_fetches() {
    let s = setup(true).await;
    let c = client(&s);
    s.cdn.faults().add(
        FaultRule::new(Fault::bearer_realm("https://127.0.0.2:1/token"))
            .on("GET", "^/blobs/")
            .unwrap()
            .times(1),
    );
    let challenged = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenged.status(), 401);
    assert!(challenged.url().as_str().starts_with(&s.cdn.url()));
    s.cdn.faults().add(
        FaultRule::new(Fault::ResetAfter { bytes: 10 })
            .on("GET", "^/blobs/")
            .unwrap()
            .times(1),
    );
    let reset = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .send()
        .await
        .unwrap();
    let mut reset = reset;
    let mut got = 0;
    let err = loop {
        match reset.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => panic!("body completed after {got} bytes despite the reset"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 10, "exactly the bytes before the reset arrive: {err}");
    let ok = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.bytes().await.unwrap(), s.img.layers[0].data);
    assert!(
        s.cdn
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

#[tokio::test]
async fn canned_responses_and_delays_are_served_as_configured() {
    let s = setup(false).await;
    let c = client(&s);
    // distribution refuses to store an ambiguous manifest, so the front serves it
    let mut doc: serde_json::Value = serde_json::from_slice(&s.img.manifest).unwrap();
    doc["manifests"] = serde_json::json!([s.img.descriptor]);
    let ambiguous = bytes::Bytes::from(serde_json::to_vec(&doc).unwrap());
    s.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![
                ("content-type".into(), OCI_MANIFEST.into()),
                ("docker-content-digest".into(), sha256_digest(&ambiguous)),
            ],
            body: ambiguous.clone(),
        })
        .on("GET", "/manifests/ambiguous$")
        .unwrap(),
    );
    let resp = c
        .get(format!("{}/v2/team/app/manifests/ambiguous", s.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["docker-content-digest"],
        sha256_digest(&ambiguous)
    );
    assert_eq!(resp.bytes().await.unwrap(), ambiguous);

    s.front.faults().add(
        FaultRule::new(Fault::Delay {
            duration: Duration::from_millis(300),
        })
        .on_path("^/v2/$")
        .unwrap()
        .times(1),
    );
    let start = std::time::Instant::now();
    let ping = c
        .get(format!("{}/v2/", s.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 401, "a delay does not change the answer");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn ranged_blob_get_is_redirected_to_the_cdn_without_authorization() {
    let s = setup(true).await;
    let c = client(&s);
    let layer = &s.img.layers[0];
    let resp = c
        .get(blob_url(&s))
        .basic_auth("alice", Some("secret-pw"))
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert!(
        resp.url().as_str().starts_with("https://127.0.0.2:"),
        "a resumed GET must be redirected too: {}",
        resp.url()
    );
    assert_eq!(resp.bytes().await.unwrap(), layer.data.slice(1000..));
    let cdn_saw = s.cdn.requests();
    assert_eq!(cdn_saw.len(), 1, "{cdn_saw:?}");
    assert_eq!(cdn_saw[0].header("range"), Some("bytes=1000-"));
    assert!(cdn_saw[0].header("authorization").is_none());
}

#[tokio::test]
async fn echo_headers_fault_returns_the_request_headers() {
    let s = setup(false).await;
    let c = client(&s);
    s.front.faults().add(
        FaultRule::new(Fault::EchoHeaders { status: 400 })
            .on("GET", "/manifests/")
            .unwrap(),
    );
    let resp = c
        .get(manifest_url(&s))
        .bearer_auth("echo-canary-token")
        .header("x-extra", "visible")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("authorization: Bearer echo-canary-token")
            && text.contains("x-extra: visible"),
        "{text}"
    );
}
