//! The front proxy before the real registry: blob redirects to a CDN on 127.0.0.2 with its own CA,
//! and injected faults (reset, ignored Range, flipped byte, 429, 5xx, stall, oversized manifest,
//! extra bytes, hostile realms, redirect loops and downgrades).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{fast_retry, trust_host};
use futures_util::StreamExt;
use registry::{
    Client, ClientConfig, Credential, ErrorKind, MinThroughput, RegistryError, TlsErrorClass,
    TrustConfig,
};
use testkit::front::{Cdn, CdnOptions, Fault, FaultRule, Front, FrontOptions};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "canary-front-pw-0c2d";
const BIG: usize = 400_000;

struct Fixture {
    _reg: Registry,
    cdn: Cdn,
    front: Front,
    pki: TestPki,
    cdn_pki: TestPki,
    image: testkit::image::Image,
}

async fn fixture() -> Fixture {
    let pki = TestPki::new().unwrap();
    let cdn_pki = TestPki::named("cdn").unwrap();
    let reg = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    let image = ImageBuilder::new()
        .layer(vec![Entry::file("big.bin", big)], Compression::None)
        .build()
        .unwrap();
    image
        .push_raw(
            &reg,
            "team/app:v1",
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
    Fixture {
        _reg: reg,
        cdn,
        front,
        pki,
        cdn_pki,
        image,
    }
}

impl Fixture {
    fn cdn_host(&self) -> String {
        self.cdn.addr().to_string()
    }

    /// hosts-dir trusting the front and (when `cdn`) the CDN, each with its own CA.
    fn hosts_dir(&self, cdn: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        trust_host(dir.path(), &self.front.host_port(), self.pki.ca_pem());
        if cdn {
            trust_host(dir.path(), &self.cdn_host(), self.cdn_pki.ca_pem());
        }
        dir
    }

    fn client(&self, dir: &tempfile::TempDir, stall: Duration) -> Client {
        Client::new(ClientConfig {
            hosts: Arc::new(TrustConfig {
                hosts_dir: Some(dir.path().to_path_buf()),
                ..TrustConfig::default()
            }),
            system_roots: false,
            retry: fast_retry(),
            no_progress_timeout: stall,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn repo(&self, c: &Client) -> registry::Repository {
        c.repository_at(
            &self.front.host_port(),
            "team/app",
            Some(Credential::password("alice", PASSWORD)),
        )
        .unwrap()
    }

    fn layer(&self) -> (oci::Descriptor, Bytes) {
        let l = &self.image.layers[0];
        let d = oci::Descriptor::new(
            &l.descriptor.media_type,
            l.descriptor.digest.parse().unwrap(),
            l.descriptor.size,
        );
        (d, l.data.clone())
    }
}

async fn read_all<S>(s: S) -> Result<Vec<u8>, RegistryError>
where
    S: futures_util::Stream<Item = Result<Bytes, RegistryError>>,
{
    let mut s = std::pin::pin!(s);
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

fn base64_basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
}

fn rule(fault: Fault, method: &str, path: &str) -> FaultRule {
    FaultRule::new(fault).on(method, path).unwrap()
}

#[tokio::test]
async fn blob_redirect_to_cdn_trusted_for_that_host_carries_no_authorization() {
    let f = fixture().await;
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, data) = f.layer();
    let got = read_all(repo.fetch_blob(&desc, 0).await.unwrap().verified())
        .await
        .unwrap();
    assert_eq!(got, data.to_vec());
    let cdn_reqs = f.cdn.requests();
    assert!(!cdn_reqs.is_empty(), "the blob came from the CDN");
    for r in &cdn_reqs {
        assert!(
            r.header("authorization").is_none(),
            "Authorization reached the CDN: {r:?}"
        );
        assert!(r.header("cookie").is_none());
    }
    assert!(
        f.front
            .requests()
            .iter()
            .any(|r| r.path.contains("/blobs/") && r.header("authorization").is_some()),
        "the registry itself got the credential"
    );
}

#[tokio::test]
async fn untrusted_cdn_fails_naming_the_redirect_target() {
    let f = fixture().await;
    // the CDN's CA is trusted for the front's host only: it must not cover 127.0.0.2
    let dir = f.hosts_dir(false);
    trust_host(
        dir.path(),
        &f.front.host_port(),
        &format!("{}{}", f.pki.ca_pem(), f.cdn_pki.ca_pem()),
    );
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Tls, "{msg}");
    assert!(
        msg.contains(&format!("{} (redirect target)", f.cdn_host())),
        "{msg}"
    );
    assert!(
        msg.contains("x509: certificate signed by unknown authority"),
        "{msg}"
    );
    assert!(!msg.contains("sig="), "query strings are secrets: {msg}");
    let RegistryError::Tls(t) = err else {
        unreachable!()
    };
    assert_eq!(t.class, TlsErrorClass::UnknownAuthority);
}

#[tokio::test]
async fn cdn_challenge_is_never_answered_with_registry_credentials() {
    let f = fixture().await;
    f.cdn.faults().add(rule(
        Fault::Challenge {
            www_authenticate: "Basic realm=\"cdn\"".into(),
        },
        "GET",
        "/blobs/",
    ));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    assert!(
        err.to_string().contains("never sent to other hosts"),
        "{err}"
    );
    assert!(
        !err.is_auth_failure(),
        "another credential would not help: {err}"
    );
    assert!(
        f.cdn
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

#[tokio::test]
async fn reset_mid_blob_resumes_with_range_and_verifies() {
    let f = fixture().await;
    let fired = f
        .cdn
        .faults()
        .add(rule(Fault::ResetAfter { bytes: 150_000 }, "GET", "/blobs/").times(1));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, data) = f.layer();
    let got = read_all(repo.fetch_blob(&desc, 0).await.unwrap().verified())
        .await
        .unwrap();
    assert_eq!(got, data.to_vec());
    assert_eq!(fired.fired(), 1);
    // the resumed request goes to the registry again (which may redirect it or serve the range)
    let ranges: Vec<String> = f
        .front
        .requests()
        .iter()
        .chain(f.cdn.requests().iter())
        .filter_map(|r| r.header("range").map(String::from))
        .collect();
    assert!(
        !ranges.is_empty() && ranges.iter().all(|r| *r == ranges[0]),
        "{ranges:?}"
    );
    let start: u64 = ranges[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(start > 0 && start <= 150_000, "{ranges:?}");
    // the resumed GET was authorised by the registry and redirected: the CDN served the range
    let cdn = f.cdn.requests();
    assert!(
        cdn.iter()
            .any(|r| r.header("range") == Some(ranges[0].as_str()))
            && cdn.iter().all(|r| r.header("authorization").is_none()),
        "{cdn:?}"
    );
}

#[tokio::test]
async fn server_ignoring_range_is_handled_by_discarding_the_prefix() {
    let f = fixture().await;
    f.cdn
        .faults()
        .add(rule(Fault::ResetAfter { bytes: 100_000 }, "GET", "/blobs/").times(1));
    f.cdn
        .faults()
        .add(rule(Fault::IgnoreRange, "GET", "/blobs/"));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, data) = f.layer();
    let got = read_all(repo.fetch_blob(&desc, 0).await.unwrap().verified())
        .await
        .unwrap();
    assert_eq!(got, data.to_vec());
}

#[tokio::test]
async fn flipped_byte_is_caught_by_the_verifying_wrapper() {
    let f = fixture().await;
    f.cdn
        .faults()
        .add(rule(Fault::FlipByte { offset: 1234 }, "GET", "/blobs/"));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = read_all(repo.fetch_blob(&desc, 0).await.unwrap().verified())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains(&desc.digest.to_string()), "{err}");
}

#[tokio::test]
async fn retry_after_is_honoured_before_retrying() {
    let f = fixture().await;
    let fired = f.front.faults().add(
        FaultRule::new(Fault::TooManyRequests {
            retry_after: "2".into(),
        })
        .on_path("/manifests/")
        .unwrap()
        .times(1),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let t0 = Instant::now();
    let r = repo.resolve_str("v1").await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(fired.fired(), 1);
    assert_eq!(r.bytes, f.image.manifest);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_fast_with_a_rate_limit_error() {
    let f = fixture().await;
    f.front.faults().add(
        FaultRule::new(Fault::TooManyRequests {
            retry_after: "3600".into(),
        })
        .on_path("/manifests/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let t0 = Instant::now();
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let msg = err.to_string();
    assert!(
        msg.contains(&f.front.host_port()) && msg.contains("retry after 3600s"),
        "{msg}"
    );
    assert!(msg.contains("429 Too Many Requests"), "{msg}");
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let f = fixture().await;
    let fired = f.front.faults().add(
        FaultRule::new(Fault::Status { status: 503 })
            .on_path("/manifests/")
            .unwrap()
            .times(2),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    assert_eq!(
        repo.resolve_str("v1").await.unwrap().bytes,
        f.image.manifest
    );
    assert_eq!(fired.fired(), 2);
}

#[tokio::test]
async fn persistent_server_errors_fail_after_bounded_attempts() {
    let f = fixture().await;
    let fired = f.front.faults().add(
        FaultRule::new(Fault::Status { status: 500 })
            .on_path("/manifests/")
            .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert_eq!(fired.fired(), 5);
    assert!(err.to_string().contains("after 5 attempt(s)"), "{err}");
}

fn cdn_ranges(f: &Fixture) -> Vec<String> {
    f.cdn
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.header("range").unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn stalled_body_is_resumed_with_range_and_completes() {
    let f = fixture().await;
    let stall = f
        .cdn
        .faults()
        .add(rule(Fault::Stall { after_bytes: 1000 }, "GET", "/blobs/").times(1));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_millis(500)));
    let (desc, data) = f.layer();
    let got = read_all(repo.fetch_blob(&desc, 0).await.unwrap().verified())
        .await
        .unwrap();
    assert_eq!(got, data.to_vec());
    assert_eq!(stall.fired(), 1);
    assert_eq!(cdn_ranges(&f), vec!["".to_string(), "bytes=1000-".into()]);
}

#[tokio::test]
async fn stalled_body_fails_after_the_resume_budget_with_a_clear_error() {
    let f = fixture().await;
    // the first answer stalls after 1000 bytes, every resume stalls before its first byte
    f.cdn
        .faults()
        .add(rule(Fault::Stall { after_bytes: 0 }, "GET", "/blobs/"));
    f.cdn
        .faults()
        .add(rule(Fault::Stall { after_bytes: 1000 }, "GET", "/blobs/").times(1));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_millis(700)));
    let (desc, _) = f.layer();
    let t0 = Instant::now();
    let err = read_all(repo.fetch_blob(&desc, 0).await.unwrap())
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Stalled { .. }), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Network);
    assert!(
        msg.contains("stalled") && msg.contains(&f.cdn_host()),
        "{msg}"
    );
    // the first request plus max_resume_without_progress (3) resumes, all from byte 1000
    let ranges = cdn_ranges(&f);
    assert_eq!(ranges.len(), 4, "{ranges:?}");
    assert!(ranges[1..].iter().all(|r| r == "bytes=1000-"), "{ranges:?}");
}

#[tokio::test]
async fn trickling_body_fails_below_the_minimum_throughput() {
    let f = fixture().await;
    // every answer stalls after 1000 bytes: each resume makes progress, so only the throughput
    // minimum can end this
    f.cdn
        .faults()
        .add(rule(Fault::Stall { after_bytes: 1000 }, "GET", "/blobs/"));
    let dir = f.hosts_dir(true);
    let client = Client::new(ClientConfig {
        hosts: Arc::new(TrustConfig {
            hosts_dir: Some(dir.path().to_path_buf()),
            ..TrustConfig::default()
        }),
        system_roots: false,
        retry: fast_retry(),
        no_progress_timeout: Duration::from_millis(200),
        min_blob_throughput: Some(MinThroughput {
            bytes: 100_000,
            window: Duration::from_millis(1500),
        }),
        ..ClientConfig::default()
    })
    .unwrap();
    let repo = f.repo(&client);
    let (desc, _) = f.layer();
    let t0 = Instant::now();
    let err = read_all(repo.fetch_blob(&desc, 0).await.unwrap())
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::TooSlow { .. }), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Network);
    assert!(
        msg.contains("too slow")
            && msg.contains("minimum of 100000 bytes per 1.5s")
            && msg.contains(&desc.digest.to_string()),
        "{msg}"
    );
    assert!(cdn_ranges(&f).len() >= 3, "it resumed while progressing");
}

#[tokio::test]
async fn resumed_blob_get_is_redirected_to_the_cdn_without_authorization() {
    let f = fixture().await;
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, data) = f.layer();
    let s = repo.fetch_blob(&desc, 1000).await.unwrap();
    assert_eq!(
        s.served_by().map(|(h, r)| (h.to_string(), r)),
        Some((f.cdn_host(), registry::Role::RedirectTarget))
    );
    assert_eq!(read_all(s).await.unwrap(), data[1000..].to_vec());
    let cdn = f.cdn.requests();
    assert_eq!(cdn.len(), 1, "{cdn:?}");
    assert_eq!(cdn[0].header("range"), Some("bytes=1000-"));
    assert!(cdn[0].header("authorization").is_none(), "{cdn:?}");
}

#[tokio::test]
async fn cdn_error_text_never_reaches_the_error() {
    let f = fixture().await;
    // an object store's 403 echoes the signed request
    let xml = format!(
        "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><StringToSign>GET /blobs/x?sig=SASCANARY0f3&amp;se=2030</StringToSign><Echo>authorization: Basic {}</Echo><Canary>raw-text-canary-91</Canary></Error>",
        base64_basic()
    );
    f.cdn.faults().add(
        rule(
            Fault::Respond {
                status: 403,
                headers: vec![("content-type".into(), "application/xml".into())],
                body: Bytes::from(xml),
            },
            "GET",
            "/blobs/",
        )
        .times(1),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(
        msg.contains("403 Forbidden") && msg.contains(&format!("redirect target {}", f.cdn_host())),
        "{msg}"
    );
    for leak in [
        "SASCANARY0f3",
        "sig=",
        "StringToSign",
        "raw-text-canary-91",
        PASSWORD,
        &base64_basic(),
    ] {
        assert!(!msg.contains(leak), "{leak} leaked: {msg}");
    }

    // a JSON errors[] body: its code and message stay, queries and key=value words do not
    f.cdn.faults().add(
        rule(
            Fault::Respond {
                status: 403,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from_static(
                    br#"{"errors":[{"code":"DENIED","message":"expired link https://cdn/blobs/x?sig=SASCANARY0f3&se=1 token=SASCANARY0f3","detail":"raw-text-canary-91"}]}"#,
                ),
            },
            "GET",
            "/blobs/",
        )
        .times(1),
    );
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(
        msg.contains("denied: expired link https://cdn/blobs/x?<redacted> token=<redacted>"),
        "{msg}"
    );
    assert!(
        !msg.contains("SASCANARY0f3") && !msg.contains("raw-text-canary-91"),
        "{msg}"
    );
}

#[tokio::test]
async fn token_realm_fault_is_a_protocol_error_without_raw_text() {
    let f = fixture().await;
    let realm = format!("{}/token", f.front.url());
    f.front.faults().add(
        FaultRule::new(Fault::bearer_realm(&realm))
            .on_path("^/v2/")
            .unwrap(),
    );
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 400,
            headers: vec![("content-type".into(), "text/html".into())],
            body: Bytes::from_static(
                b"<html>bad request for /token?sig=SASCANARY0f3 raw-text-canary-91</html>",
            ),
        })
        .on_path("^/token")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, RegistryError::Token { .. }), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{msg}");
    assert!(
        !err.is_auth_failure(),
        "a broken token server is no credential refusal"
    );
    assert!(msg.contains("unexpected status 400"), "{msg}");
    assert!(
        !msg.contains("SASCANARY0f3") && !msg.contains("raw-text-canary-91"),
        "{msg}"
    );

    // bad JSON with 200: a server fault too
    f.front.faults().clear();
    f.front.faults().add(
        FaultRule::new(Fault::bearer_realm(&realm))
            .on_path("^/v2/")
            .unwrap(),
    );
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"{not json"),
        })
        .on_path("^/token")
        .unwrap(),
    );
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[tokio::test]
async fn head_content_length_over_the_cap_is_refused_without_a_get() {
    let f = fixture().await;
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![
                ("content-type".into(), f.image.descriptor.media_type.clone()),
                ("docker-content-digest".into(), f.image.digest().to_string()),
                ("content-length".into(), "5000000".into()),
            ],
            body: Bytes::new(),
        })
        .on("HEAD", "/manifests/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{msg}");
    assert!(
        msg.contains("4194304 byte limit") && msg.contains("(5000000 bytes)"),
        "{msg}"
    );
    assert!(
        !f.front
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/manifests/")),
        "the HEAD's size was enough to refuse"
    );
}

#[tokio::test]
async fn head_without_content_length_falls_back_to_get() {
    let f = fixture().await;
    // a HEAD answered as chunked: a digest, but no declared size
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![
                ("content-type".into(), f.image.descriptor.media_type.clone()),
                ("docker-content-digest".into(), f.image.digest().to_string()),
                ("transfer-encoding".into(), "chunked".into()),
            ],
            body: Bytes::new(),
        })
        .on("HEAD", "/manifests/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let r = repo.resolve_str("v1").await.unwrap();
    assert_eq!(r.bytes, f.image.manifest);
    let mut gets: Vec<String> = f
        .front
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/manifests/"))
        .map(|r| r.path.clone())
        .collect();
    // (the first GET is answered with the registry's challenge, the second authorised)
    gets.dedup();
    assert_eq!(
        gets,
        vec!["/v2/team/app/manifests/v1".to_string()],
        "the fallback GETs the tag itself, not the digest the HEAD named"
    );
}

#[tokio::test]
async fn oversized_manifest_is_rejected_with_cap_and_size() {
    let f = fixture().await;
    let size = (4 << 20) + 1;
    f.front.faults().add(
        FaultRule::new(Fault::OversizedManifest { size })
            .on_path("/manifests/")
            .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("4194304 byte limit"), "{msg}");
    assert!(msg.contains(&size.to_string()), "{msg}");
}

#[tokio::test]
async fn oversized_manifest_without_length_is_cut_while_reading() {
    let f = fixture().await;
    // HEAD passes; the GET by digest streams a chunked body past the cap
    f.front.faults().add(rule(
        Fault::ExtraBytes {
            count: 5 << 20,
            declare: false,
        },
        "GET",
        "/manifests/",
    ));
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str("v1").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("4194304 byte limit") && msg.contains("at least"),
        "{msg}"
    );
}

#[tokio::test]
async fn blob_larger_than_descriptor_is_refused() {
    let f = fixture().await;
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    // declared: refused before reading
    let rule_a = f.cdn.faults().add(
        rule(
            Fault::ExtraBytes {
                count: 10,
                declare: true,
            },
            "GET",
            "/blobs/",
        )
        .times(1),
    );
    let err = match repo.fetch_blob(&desc, 0).await {
        Err(e) => e,
        Ok(s) => read_all(s).await.unwrap_err(),
    };
    assert_eq!(rule_a.fired(), 1);
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("exceeds declared size {}", desc.size)),
        "{err}"
    );
    // undeclared: cut at size + 1
    f.cdn.faults().add(rule(
        Fault::ExtraBytes {
            count: u64::MAX,
            declare: false,
        },
        "GET",
        "/blobs/",
    ));
    let err = read_all(repo.fetch_blob(&desc, 0).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds declared size"), "{err}");
}

#[tokio::test]
async fn hostile_realms_are_refused_before_any_token_request() {
    let f = fixture().await;
    let dir = f.hosts_dir(true);
    for realm in [
        "https://169.254.169.254/latest/meta-data".to_string(),
        format!("http://{}/token", f.front.host_port()),
        "https://127.0.0.9:4443/token".to_string(),
    ] {
        f.front.faults().clear();
        f.front.faults().add(
            FaultRule::new(Fault::bearer_realm(&realm))
                .on_path("/manifests/")
                .unwrap(),
        );
        let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
        let err = repo.resolve_str("v1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Policy, "{realm}: {err}");
        assert!(err.to_string().contains("refusing bearer realm"), "{err}");
    }
}

#[tokio::test]
async fn redirect_loops_stop_after_ten_hops() {
    let f = fixture().await;
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 307,
            headers: vec![("location".into(), "/v2/team/app/blobs/loop".into())],
            body: Bytes::new(),
        })
        .on_path("/blobs/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    assert!(
        err.to_string().contains("stopped after 10 redirects"),
        "{err}"
    );
}

#[tokio::test]
async fn https_to_http_redirect_is_refused() {
    let f = fixture().await;
    let target = format!(
        "http://{}/v2/team/app/blobs/x?sig=secret-sig",
        f.front.host_port()
    );
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 302,
            headers: vec![("location".into(), target)],
            body: Bytes::new(),
        })
        .on_path("/blobs/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Policy, "{msg}");
    assert!(
        msg.contains("redirected to plain http") && !msg.contains("secret-sig"),
        "{msg}"
    );
}

#[tokio::test]
async fn redirect_to_link_local_address_is_refused() {
    let f = fixture().await;
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 307,
            headers: vec![("location".into(), "https://169.254.169.254/latest".into())],
            body: Bytes::new(),
        })
        .on_path("/blobs/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let (desc, _) = f.layer();
    let err = repo.fetch_blob(&desc, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Policy, "{err}");
    assert!(err.to_string().contains("link-local"), "{err}");
}

#[tokio::test]
async fn head_405_falls_back_to_get_and_the_tag_body_is_checked_against_its_header() {
    let f = fixture().await;
    let head = f.front.faults().add(
        FaultRule::new(Fault::Status { status: 405 })
            .on("HEAD", "/manifests/")
            .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let r = repo.resolve_str("v1").await.unwrap();
    assert!(head.fired() >= 1);
    assert_eq!(r.bytes, f.image.manifest);
    assert_eq!(r.descriptor.digest.to_string(), f.image.digest());

    // a GET whose Docker-Content-Digest does not match the body
    let lie = oci::Digest::sha256(b"something else");
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![
                ("content-type".into(), f.image.descriptor.media_type.clone()),
                ("docker-content-digest".into(), lie.to_string()),
            ],
            body: f.image.manifest.clone(),
        })
        .on("GET", "/manifests/v1")
        .unwrap(),
    );
    let err = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("Docker-Content-Digest {lie}")) && msg.contains(f.image.digest()),
        "{msg}"
    );
}

#[tokio::test]
async fn head_without_digest_header_falls_back_to_get() {
    let f = fixture().await;
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![],
            body: Bytes::new(),
        })
        .on("HEAD", "/manifests/")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    assert_eq!(
        repo.resolve_str("v1").await.unwrap().bytes,
        f.image.manifest
    );
}

#[tokio::test]
async fn by_digest_fetch_is_verified_against_the_requested_digest() {
    let f = fixture().await;
    let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    f.front.faults().add(
        FaultRule::new(Fault::Respond {
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    "application/vnd.oci.image.index.v1+json".into(),
                ),
                (
                    "docker-content-digest".into(),
                    oci::Digest::sha256(other).to_string(),
                ),
            ],
            body: Bytes::from_static(other),
        })
        .on("GET", "/manifests/sha256:")
        .unwrap(),
    );
    let dir = f.hosts_dir(true);
    let repo = f.repo(&f.client(&dir, Duration::from_secs(10)));
    let err = repo.resolve_str(f.image.digest()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("expected {}", f.image.digest())),
        "{err}"
    );
}
