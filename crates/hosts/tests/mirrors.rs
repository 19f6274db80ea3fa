//! Mirrors and endpoint rules of hosts.toml on the real pull path: real docker-registry instances
//! (TLS, htpasswd, token auth) with testkit's recording Front as the mirror, reached by the real
//! registry client whose endpoints and trust come from a watched hosts directory. Each test asserts
//! on what the mirror (or the upstream's access log) actually received: order, resolve capability,
//! credentials, configured headers, override_path, plain http only where configured, no http
//! after a TLS failure, fail-over when a mirror is down, and per-key token single flight.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hosts::TrustSource;
use registry::{Client, ClientConfig, Credential, ErrorKind, Repository, RetryPolicy};
use testkit::front::{Fault, FaultRule, Front, FrontOptions};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};
use testkit::token::{Grant, TokenServer, TokenServerOptions, TokenUser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "canary-mirror-pw-5e1b";
const REPO: &str = "team/app";

fn creds() -> Credentials {
    Credentials::new("alice", PASSWORD)
}

fn alice() -> Option<Credential> {
    Some(Credential::password("alice", PASSWORD))
}

fn image(seed: &str) -> testkit::image::Image {
    ImageBuilder::new()
        .layer(
            vec![Entry::file(
                "a.txt",
                format!("mirror test {seed}").into_bytes(),
            )],
            Compression::Gzip,
        )
        .build()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn client(dir: &Path) -> Client {
    Client::new(ClientConfig {
        hosts: Arc::new(TrustSource::open(Some(dir)).unwrap()),
        system_roots: false,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

fn layer_desc(img: &testkit::image::Image) -> oci::Descriptor {
    let l = &img.layers[0].descriptor;
    oci::Descriptor::new(&l.media_type, l.digest.parse().unwrap(), l.size)
}

async fn fetch_layer(
    repo: &Repository,
    img: &testkit::image::Image,
) -> Result<Vec<u8>, registry::RegistryError> {
    let mut s = repo.fetch_blob(&layer_desc(img), 0).await?.verified();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

fn reference(host: &str, tag: &str) -> oci::Reference {
    oci::Reference::parse_normalized(&format!("{host}/{REPO}:{tag}")).unwrap()
}

/// One CA for every TLS server; upstream with htpasswd; an anonymous mirror registry behind a
/// recording Front; the image pushed to both.
struct Env {
    pki: TestPki,
    ca_file: std::path::PathBuf,
    upstream: Registry,
    _mirror_reg: Registry,
    front: Front,
    img: testkit::image::Image,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let pki = TestPki::new().unwrap();
    let upstream = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    let mirror_reg = Registry::start(
        RegistryOptions::new().tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let front = Front::start(
        &mirror_reg,
        None,
        FrontOptions::new(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem()),
    )
    .await
    .unwrap();
    let img = image("one");
    img.push_raw(&upstream, &format!("{REPO}:v1"), Some(&creds()))
        .await
        .unwrap();
    img.push_raw(&mirror_reg, &format!("{REPO}:v1"), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    Env {
        pki,
        ca_file,
        upstream,
        _mirror_reg: mirror_reg,
        front,
        img,
        dir,
    }
}

impl Env {
    fn hosts_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("certs.d")
    }

    /// Writes the upstream namespace's hosts.toml: `mirrors` (raw `[host]` tables) then the server.
    fn configure(&self, mirrors: &str) {
        let ca = self.ca_file.display();
        write(
            &self
                .hosts_dir()
                .join(self.upstream.host_port())
                .join("hosts.toml"),
            &format!(
                "server = \"https://{}\"\nca = \"{ca}\"\n\n{mirrors}",
                self.upstream.host_port()
            ),
        );
    }

    fn mirror_table(&self, url: &str, extra: &str) -> String {
        format!(
            "[host.\"{url}\"]\n  ca = \"{}\"\n{extra}\n",
            self.ca_file.display()
        )
    }

    fn repo(&self, c: &Client) -> Repository {
        c.repository_at(&self.upstream.host_port(), REPO, alice())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_only_mirror_serves_content_without_credentials_gets_its_header_and_never_resolves()
{
    let env = env().await;
    let front = env.front.url();
    env.configure(&format!(
        "[host.\"{front}\"]\n  capabilities = [\"pull\"]\n  ca = \"{}\"\n  [host.\"{front}\".header]\n    x-berth-mirror = \"hdr-canary-17\"\n",
        env.ca_file.display()
    ));
    let c = client(&env.hosts_dir());
    let repo = env.repo(&c);
    let eps = repo.endpoints();
    assert_eq!(eps.len(), 2, "{eps:?}");
    assert!(eps[0].mirror && !eps[0].send_credentials && !eps[0].resolve);

    let resolved = repo
        .resolve_image(
            &reference(&env.upstream.host_port(), "v1"),
            &oci::Platform::parse("linux/amd64").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resolved.top.descriptor.digest.to_string(), env.img.digest());
    let data = fetch_layer(&repo, &env.img).await.unwrap();
    assert_eq!(data, env.img.layers[0].data.to_vec());

    let seen = env.front.requests();
    // the tag was never asked of the pull-only mirror
    assert!(
        !seen.iter().any(|r| r.path.ends_with("/manifests/v1")),
        "{:?}",
        seen.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // the layer came from the mirror, with its header, its ns, and no credentials
    let blob_path = format!("/v2/{REPO}/blobs/{}", env.img.layers[0].descriptor.digest);
    let blob_gets: Vec<_> = seen.iter().filter(|r| r.path == blob_path).collect();
    assert_eq!(blob_gets.len(), 1, "{seen:?}");
    assert_eq!(blob_gets[0].header("x-berth-mirror"), Some("hdr-canary-17"));
    assert_eq!(
        blob_gets[0].query.as_deref(),
        Some(format!("ns={}", env.upstream.host_port().replace(':', "%3A")).as_str())
    );
    for r in &seen {
        assert!(
            r.header("authorization").is_none(),
            "credentials reached the mirror: {} {}",
            r.method,
            r.path
        );
    }
    // the upstream resolved the tag (with credentials) and served no layer bytes
    assert!(
        env.upstream
            .count_requests("HEAD", &format!("/v2/{REPO}/manifests/v1"))
            .await
            >= 1
    );
    assert_eq!(
        env.upstream
            .blob_gets(REPO, &env.img.layers[0].descriptor.digest)
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_resolves_tags_only_with_the_resolve_capability() {
    let env = env().await;
    env.configure(&env.mirror_table(&env.front.url(), "  capabilities = [\"pull\", \"resolve\"]"));
    let c = client(&env.hosts_dir());
    let repo = env.repo(&c);
    let r = repo.resolve_str("v1").await.unwrap();
    assert_eq!(r.descriptor.digest.to_string(), env.img.digest());
    let seen = env.front.requests();
    assert!(
        seen.iter()
            .any(|r| r.method == "HEAD" && r.path == format!("/v2/{REPO}/manifests/v1")),
        "{seen:?}"
    );
    assert_eq!(
        env.upstream
            .count_requests("HEAD", &format!("/v2/{REPO}/manifests/v1"))
            .await,
        0,
        "the upstream was not needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_and_a_dead_failing_or_empty_mirror_falls_through_to_the_server()
{
    let env = env().await;
    let dead = format!(
        "https://127.0.0.1:{}",
        testkit::registry::free_port("127.0.0.1".parse().unwrap()).unwrap()
    );
    let caps = "  capabilities = [\"pull\", \"resolve\"]";
    env.configure(&format!(
        "{}{}",
        env.mirror_table(&dead, caps),
        env.mirror_table(&env.front.url(), caps)
    ));
    let c = client(&env.hosts_dir());
    let repo = env.repo(&c);
    assert_eq!(
        repo.endpoints()
            .iter()
            .map(|e| e.label())
            .collect::<Vec<_>>(),
        [
            format!("{dead}/v2"),
            format!("{}/v2", env.front.url()),
            format!("https://{}/v2", env.upstream.host_port())
        ]
    );
    // mirror 1 refuses connections, mirror 2 answers 503 (once: no retries on a mirror)
    let fault = env.front.faults().add(
        FaultRule::new(Fault::Status { status: 503 })
            .on("GET", "/blobs/")
            .unwrap(),
    );
    let data = fetch_layer(&repo, &env.img).await.unwrap();
    assert_eq!(data, env.img.layers[0].data.to_vec());
    assert_eq!(fault.fired(), 1, "a failing mirror gets one attempt");
    assert_eq!(
        env.upstream
            .blob_gets(REPO, &env.img.layers[0].descriptor.digest)
            .await,
        1
    );
    env.front.faults().clear();

    // a tag only the upstream has: the mirror's 404 moves on, the upstream answers
    let img2 = image("only upstream");
    img2.push_raw(&env.upstream, &format!("{REPO}:v2"), Some(&creds()))
        .await
        .unwrap();
    let r = repo.resolve_str("v2").await.unwrap();
    assert_eq!(r.descriptor.digest.to_string(), img2.digest());
    assert!(
        env.front
            .requests()
            .iter()
            .any(|r| r.path == format!("/v2/{REPO}/manifests/v2"))
    );

    // nothing has it: the error is the server's (the last endpoint), a not-found
    let e = repo.resolve_str("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains(&env.upstream.host_port()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_a_mirror_only_with_send_credentials() {
    let env = env().await;
    // a mirror that requires the same user
    let locked = Registry::start(
        RegistryOptions::new()
            .tls(env.pki.server(["127.0.0.1"]).unwrap(), env.pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    env.img
        .push_raw(&locked, &format!("{REPO}:v1"), Some(&creds()))
        .await
        .unwrap();
    let front = Front::start(
        &locked,
        None,
        FrontOptions::new(env.pki.server(["127.0.0.1"]).unwrap(), env.pki.ca_pem()),
    )
    .await
    .unwrap();
    let digest = env.img.layers[0].descriptor.digest.clone();
    env.configure(&env.mirror_table(&front.url(), "  capabilities = [\"pull\"]"));
    let c = client(&env.hosts_dir());
    // without send_credentials: the mirror's 401 moves on to the upstream
    let data = fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    assert_eq!(data, env.img.layers[0].data.to_vec());
    assert!(!front.requests().is_empty());
    assert!(
        front
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    assert_eq!(env.upstream.blob_gets(REPO, &digest).await, 1);
    assert_eq!(locked.blob_gets(REPO, &digest).await, 0);

    // with send_credentials = true (applied without a restart): the mirror gets them and serves
    env.configure(&env.mirror_table(
        &front.url(),
        "  capabilities = [\"pull\"]\n  send_credentials = true",
    ));
    let data = fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    assert_eq!(data, env.img.layers[0].data.to_vec());
    assert!(front.requests().iter().any(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    }));
    assert_eq!(locked.blob_gets(REPO, &digest).await, 1);
    assert_eq!(
        env.upstream.blob_gets(REPO, &digest).await,
        1,
        "the upstream was not asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_path_uses_the_written_api_root() {
    let env = env().await;
    let digest = &env.img.layers[0].descriptor.digest;
    let blob = format!("/{REPO}/blobs/{digest}");
    let front = env.front.url();
    // as written, exactly /v2: served by the mirror
    env.configure(&env.mirror_table(
        &format!("{front}/v2"),
        "  capabilities = [\"pull\"]\n  override_path = true",
    ));
    let c = client(&env.hosts_dir());
    fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    assert!(
        env.front
            .requests()
            .iter()
            .any(|r| r.path == format!("/v2{blob}"))
    );
    assert_eq!(env.upstream.blob_gets(REPO, digest).await, 0);

    // a custom root: with override_path the path is used as written, without it /v2 is appended
    env.configure(&env.mirror_table(
        &format!("{front}/cache/api"),
        "  capabilities = [\"pull\"]\n  override_path = true",
    ));
    fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    env.configure(&env.mirror_table(&format!("{front}/cache/api"), "  capabilities = [\"pull\"]"));
    fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    let paths: Vec<String> = env.front.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&format!("/cache/api{blob}")), "{paths:?}");
    assert!(paths.contains(&format!("/cache/api/v2{blob}")), "{paths:?}");
    // neither root exists on the mirror: both fell through to the upstream
    assert_eq!(env.upstream.blob_gets(REPO, digest).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_for_an_endpoint_written_as_http() {
    let plain = Registry::start(RegistryOptions::new()).await.unwrap();
    let img = image("plain");
    img.push_raw(&plain, &format!("{REPO}:v1"), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path());
    // not configured: https, which fails as a TLS protocol error and is never retried over http
    let repo = c.repository_at(&plain.host_port(), REPO, None).unwrap();
    let e = repo.resolve_str("v1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let manifest = format!("/v2/{REPO}/manifests/v1");
    assert_eq!(
        plain.count_requests("HEAD", &manifest).await
            + plain.count_requests("GET", &manifest).await,
        0,
        "no plain http request was made"
    );
    // written as http:// for this host: plain http
    write(
        &dir.path().join(plain.host_port()).join("hosts.toml"),
        &format!("server = \"http://{}\"\n", plain.host_port()),
    );
    let repo = c.repository_at(&plain.host_port(), REPO, None).unwrap();
    let r = repo.resolve_str("v1").await.unwrap();
    assert_eq!(r.descriptor.digest.to_string(), img.digest());
    assert!(plain.count_requests("HEAD", &manifest).await >= 1);
}

/// A TCP listener that records the first bytes of every connection and answers each with a
/// plain-http 400: a TLS client fails its handshake there.
async fn not_tls_listener() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 512];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                s.lock().unwrap().push(buf[..n].to_vec());
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_error_never_falls_back_to_http_and_a_broken_mirror_falls_through_to_the_server() {
    let env = env().await;
    let (addr, seen) = not_tls_listener().await;
    // as the registry itself: a TLS error, final
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path());
    let e = c
        .repository_at(&addr.to_string(), REPO, alice())
        .unwrap()
        .resolve_str("v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    // as a mirror before the upstream: skipped, the upstream serves
    env.configure(&env.mirror_table(
        &format!("https://{addr}"),
        "  capabilities = [\"pull\", \"resolve\"]",
    ));
    let c = client(&env.hosts_dir());
    let data = fetch_layer(&env.repo(&c), &env.img).await.unwrap();
    assert_eq!(data, env.img.layers[0].data.to_vec());
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "both attempts reached the listener");
    for first in &seen {
        // 0x16: a TLS handshake record; never "GET " or "HEAD"
        assert_eq!(
            first.first(),
            Some(&0x16),
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verify_applies_to_the_configured_host_only() {
    let env = env().await;
    let other = TestPki::named("untrusted").unwrap();
    let reg = Registry::start(
        RegistryOptions::new().tls(other.server(["127.0.0.1"]).unwrap(), other.ca_pem()),
    )
    .await
    .unwrap();
    env.img
        .push_raw(&reg, &format!("{REPO}:v1"), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path());
    let e = c
        .repository_at(&reg.host_port(), REPO, None)
        .unwrap()
        .resolve_str("v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // the fix names this hosts directory
    assert!(
        e.to_string()
            .contains(&format!("--hosts-dir {}", dir.path().display())),
        "{e}"
    );
    write(
        &dir.path().join(reg.host_port()).join("hosts.toml"),
        &format!(
            "server = \"https://{}\"\nskip_verify = true\n",
            reg.host_port()
        ),
    );
    let r = c
        .repository_at(&reg.host_port(), REPO, None)
        .unwrap()
        .resolve_str("v1")
        .await
        .unwrap();
    assert_eq!(r.descriptor.digest.to_string(), env.img.digest());
    // the upstream (another host:port, same untrusted-by-this-dir situation) stays verified
    let e = c
        .repository_at(&env.upstream.host_port(), REPO, None)
        .unwrap()
        .resolve_str("v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
}

/// A TCP relay to `target` that holds every new connection for `delay` first: a slow token server.
async fn delaying_relay(target: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_token_server_delays_only_requests_that_need_its_token_and_fetches_it_once() {
    let pki = TestPki::new().unwrap();
    let realm_pki = TestPki::named("realm").unwrap();
    let mut opts =
        TokenServerOptions::new(realm_pki.server(["127.0.0.1"]).unwrap(), realm_pki.ca_pem()).user(
            TokenUser::new("alice", PASSWORD, vec![Grant::pull_push(REPO)]),
        );
    opts.anonymous = vec![Grant::pull(REPO)];
    let ts = TokenServer::start(opts).await.unwrap();
    let ts_addr: SocketAddr = ts.host_port().parse().unwrap();
    let delay = Duration::from_secs(3);
    let slow = delaying_relay(ts_addr, delay).await;
    let upstream = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(ts.registry_auth()),
    )
    .await
    .unwrap();
    let mut slow_auth = ts.registry_auth();
    slow_auth.realm = format!("https://{slow}/token");
    let mirror = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .token(slow_auth),
    )
    .await
    .unwrap();
    let img = ImageBuilder::new()
        .layer(vec![Entry::file("a", b"a".to_vec())], Compression::Gzip)
        .layer(vec![Entry::file("b", b"b".to_vec())], Compression::Gzip)
        .layer(vec![Entry::file("c", b"c".to_vec())], Compression::Gzip)
        .build()
        .unwrap();
    img.push_raw(&upstream, &format!("{REPO}:v1"), Some(&creds()))
        .await
        .unwrap();
    img.push_raw(&mirror, &format!("{REPO}:v1"), Some(&creds()))
        .await
        .unwrap();

    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    // the token realms' trust, certs.d style
    for realm in [ts.host_port(), slow.to_string()] {
        write(&dir.join(&realm).join("ca.crt"), realm_pki.ca_pem());
    }
    write(
        &dir.join(upstream.host_port()).join("hosts.toml"),
        &format!(
            "server = \"https://{}\"\nca = \"{}\"\n\n[host.\"https://{}\"]\n  capabilities = [\"pull\"]\n  ca = \"{}\"\n",
            upstream.host_port(),
            ca.display(),
            mirror.host_port(),
            ca.display()
        ),
    );
    let c = client(dir);
    let repo = c
        .repository_at(&upstream.host_port(), REPO, alice())
        .unwrap();
    let descs: Vec<oci::Descriptor> = img
        .layers
        .iter()
        .map(|l| {
            oci::Descriptor::new(
                &l.descriptor.media_type,
                l.descriptor.digest.parse().unwrap(),
                l.descriptor.size,
            )
        })
        .collect();

    // three layer downloads from the mirror (anonymous, slow realm) and, meanwhile, a tag
    // resolution on the upstream (credentials, fast realm)
    let started = Instant::now();
    let blobs = descs.iter().map(|desc| {
        let repo = repo.clone();
        let desc = desc.clone();
        tokio::spawn(async move {
            let mut s = repo.fetch_blob(&desc, 0).await?.verified();
            while let Some(c) = s.next().await {
                c?;
            }
            Ok::<Duration, registry::RegistryError>(started.elapsed())
        })
    });
    let blobs: Vec<_> = blobs.collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resolved = repo.resolve_str("v1").await.unwrap();
    let resolve_done = started.elapsed();
    assert_eq!(resolved.descriptor.digest.to_string(), img.digest());
    for b in blobs {
        let t = b.await.unwrap().unwrap();
        assert!(
            t >= delay,
            "the mirror's token took the relay's delay ({t:?})"
        );
    }
    assert!(
        resolve_done < delay,
        "the upstream's token exchange waited for the mirror's ({resolve_done:?})"
    );
    let reqs = ts.requests();
    let anonymous = reqs
        .iter()
        .filter(|r| r.grant == testkit::token::GrantType::Anonymous)
        .count();
    assert_eq!(anonymous, 1, "one exchange for the mirror's key: {reqs:?}");
    assert!(
        reqs.iter()
            .all(|r| r.grant == testkit::token::GrantType::Anonymous
                || r.user.as_deref() == Some("alice")),
        "{reqs:?}"
    );
    assert_eq!(
        mirror
            .blob_gets(REPO, &img.layers[0].descriptor.digest)
            .await,
        1
    );
    assert_eq!(
        upstream
            .blob_gets(REPO, &img.layers[0].descriptor.digest)
            .await,
        0
    );
}
