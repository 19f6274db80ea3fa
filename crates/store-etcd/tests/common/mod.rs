//! Test fixture: real etcd processes (Debian's /usr/bin/etcd) on loopback ports with temporary
//! data directories. Every process is killed and reaped when its fixture is dropped, so no test
//! leaves one behind, even when it panics.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use store_etcd::{EtcdConfig, EtcdStore, EtcdTls};

pub const ETCD: &str = "/usr/bin/etcd";

/// A temporary directory for etcd data: on tmpfs when there is one (etcd preallocates a 64 MB
/// WAL per member and fsyncs every write, which a shared disk makes slow or fills up).
fn data_root() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("berth-etcd-test-");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return Ok(dir);
    }
    builder.tempdir()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// PEM files for a TLS member and a client.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, written into `dir`.
    pub fn generate(dir: &Path) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth etcd test ca");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<String>, cn: &str, usage: rcgen::ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec![],
            "berth-apiserver",
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TlsFiles {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// One etcd cluster of one or more members on 127.0.0.1.
pub struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    tls: bool,
}

impl Cluster {
    /// A single plain-text member.
    pub fn single() -> Cluster {
        Cluster::start(1, None)
    }

    /// `n` members; with `tls`, clients must use TLS and present a certificate of the CA.
    pub fn start(n: usize, tls: Option<&TlsFiles>) -> Cluster {
        let dir = data_root().expect("temporary directory for etcd data");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut cluster = Cluster {
            dir,
            members,
            tls: tls.is_some(),
        };
        for i in 0..n {
            let m = &cluster.members[i];
            let data = cluster.dir.path().join(&m.name);
            let log =
                std::fs::File::create(cluster.dir.path().join(format!("{}.log", m.name))).unwrap();
            let client_url = format!("{scheme}://127.0.0.1:{}", m.client_port);
            let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
            let mut cmd = Command::new(ETCD);
            cmd.arg("--name")
                .arg(&m.name)
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "berth-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            if let Some(tls) = tls {
                cmd.arg("--cert-file")
                    .arg(&tls.server_cert)
                    .arg("--key-file")
                    .arg(&tls.server_key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
            }
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let child = cmd
                .spawn()
                .expect("start /usr/bin/etcd (apt-get install etcd-server)");
            cluster.members[i].child = Some(child);
        }
        cluster
    }

    /// `etcd://127.0.0.1:P1,...` (or `etcds://`) of every member, dead ones included.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        let endpoints = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",");
        format!("{scheme}://{endpoints}")
    }

    /// A client configuration with a startup allowance suited to a loaded test machine.
    pub fn config(&self) -> EtcdConfig {
        let mut config = EtcdConfig::from_url(&self.url()).unwrap();
        config.dial_timeout = Duration::from_secs(30);
        config
    }

    pub async fn connect(&self) -> EtcdStore {
        EtcdStore::connect(self.config())
            .await
            .expect("connect to the test etcd")
    }

    pub async fn connect_tls(&self, tls: &TlsFiles) -> EtcdStore {
        EtcdStore::connect(self.config().with_tls(EtcdTls {
            ca_file: tls.ca.clone(),
            cert_file: Some(tls.client_cert.clone()),
            key_file: Some(tls.client_key.clone()),
        }))
        .await
        .expect("connect to the test etcd over tls")
    }

    pub fn client_port(&self, member: usize) -> u16 {
        self.members[member].client_port
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The member's log, for assertion messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
