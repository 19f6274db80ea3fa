//! Shared fixtures of podpull's integration tests: the real docker-registry (TLS + htpasswd) from testkit, a
//! certs.d hosts directory trusting only what a test asks for, pull Secrets as the API returns them, a
//! recording Event sink, and an `ImageManager` over a real content store and native snapshotter with a manual
//! clock. Never used outside tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{PullOptions, Puller};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podpull::{
    EventType, FetchedSecret, ImageManager, ManagerOptions, ManualClock, PodRef, Recorder,
};
use registry::{Client, ClientConfig, RetryPolicy, TrustConfig};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

pub const PASSWORD: &str = "podpull-canary-pw-51e0";
pub const BOB_PASSWORD: &str = "podpull-bob-pw-77c1";

/// Events as the agent would post them.
#[derive(Default)]
pub struct Events(Mutex<Vec<(EventType, String, String)>>);

impl Recorder for Events {
    fn event(&self, kind: EventType, reason: &str, message: String) {
        self.0
            .lock()
            .unwrap()
            .push((kind, reason.to_string(), message));
    }
}

impl Events {
    pub fn all(&self) -> Vec<(EventType, String, String)> {
        self.0.lock().unwrap().clone()
    }

    /// `(reason, message)` pairs, in order.
    pub fn reasons(&self) -> Vec<String> {
        self.all().into_iter().map(|(_, r, _)| r).collect()
    }

    /// Messages of events with `reason`.
    pub fn messages(&self, reason: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|(_, r, _)| r == reason)
            .map(|(_, _, m)| m)
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Every text, for "no secret anywhere" checks.
    pub fn text(&self) -> String {
        self.all()
            .into_iter()
            .map(|(k, r, m)| format!("{} {r} {m}\n", k.as_str()))
            .collect()
    }
}

pub fn pod(name: &str) -> PodRef {
    PodRef {
        namespace: "team".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

/// A `kubernetes.io/dockerconfigjson` Secret in namespace `team` for `host`.
pub fn secret(name: &str, uid: &str, host: &str, user: &str, password: &str) -> FetchedSecret {
    let config =
        format!(r#"{{"auths":{{"{host}":{{"username":"{user}","password":"{password}"}}}}}}"#);
    FetchedSecret::Found(Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(config.into_bytes()),
        )])),
        ..Default::default()
    })
}

/// Writes `pem` as `DIR/HOST:PORT/ca.crt` (containerd/Docker certs.d layout).
pub fn trust_host(dir: &Path, host_port: &str, pem: &str) {
    let d = dir.join(host_port);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ca.crt"), pem).unwrap();
}

/// A registry client reading `hosts_dir`, no system roots, quick retries.
pub fn client(hosts_dir: &Path) -> Client {
    Client::new(ClientConfig {
        hosts: Arc::new(TrustConfig {
            hosts_dir: Some(hosts_dir.to_path_buf()),
            ..TrustConfig::default()
        }),
        system_roots: false,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        response_header_timeout: Duration::from_secs(10),
        no_progress_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// A manager over a fresh store, native snapshotter and state dir under `root`.
pub fn manager(root: &Path, client: Client, clock: Arc<ManualClock>) -> ImageManager {
    manager_with(
        root,
        client,
        clock,
        ManagerOptions {
            platform: oci::Platform::parse("linux/amd64").unwrap(),
            ..ManagerOptions::default()
        },
    )
}

/// [`manager`] with explicit options.
pub fn manager_with(
    root: &Path,
    client: Client,
    clock: Arc<ManualClock>,
    opts: ManagerOptions,
) -> ImageManager {
    let store = content::Store::open(root.join("content")).unwrap();
    let snapshotter = Arc::new(
        unpack::Snapshotter::open(root.join("snapshots"))
            .unwrap()
            .with_mode(unpack::Mode::Native),
    );
    let puller = Puller::new(client, store, PullOptions::default()).with_snapshotter(snapshotter);
    ImageManager::with_clock(puller, &root.join("state"), opts, clock).unwrap()
}

/// A two-layer image with incompressible layers of `layer_bytes`.
pub fn sample_image(layer_bytes: usize) -> testkit::image::Image {
    let mut b = ImageBuilder::new().cmd(["/bin/app"]);
    for i in 0..2u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i + 1);
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

/// A TLS + htpasswd registry (alice and bob) holding `team/app:v1`, and a hosts dir trusting it.
pub struct Env {
    pub pki: TestPki,
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    pub image: testkit::image::Image,
}

impl Env {
    pub async fn start() -> Env {
        let pki = TestPki::new().unwrap();
        let registry = Registry::start(
            RegistryOptions::new()
                .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
                .htpasswd([User::new("alice", PASSWORD), User::new("bob", BOB_PASSWORD)]),
        )
        .await
        .unwrap();
        let image = sample_image(150_000);
        image
            .push(
                &registry,
                "team/app:v1",
                Some(&Credentials::new("alice", PASSWORD)),
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        Env {
            pki,
            registry,
            dir,
            image,
        }
    }

    pub fn host(&self) -> String {
        self.registry.host_port()
    }

    pub fn image_ref(&self) -> String {
        format!("{}/team/app:v1", self.host())
    }

    /// A hosts dir trusting the registry's CA for its host:port.
    pub fn trusted_hosts(&self) -> std::path::PathBuf {
        let d = self.dir.path().join("hosts");
        trust_host(&d, &self.host(), self.pki.ca_pem());
        d
    }

    pub fn alice(&self, name: &str, uid: &str) -> FetchedSecret {
        secret(name, uid, &self.host(), "alice", PASSWORD)
    }
}
