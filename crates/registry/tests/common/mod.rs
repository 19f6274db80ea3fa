//! Shared helpers of the registry integration tests: trust folders, clients with short timeouts,
//! and a bare TLS listener for handshake-only cases. Never used outside tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use registry::{Client, ClientConfig, HostPort, RetryPolicy, TrustConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const CDN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Writes `pem` as `DIR/HOST:PORT/ca.crt`.
pub fn trust_host(dir: &Path, host_port: &str, pem: &str) {
    let d = dir.join(host_port);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ca.crt"), pem).unwrap();
}

/// Test retry policy: quick back-off so fault tests finish fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

/// A client trusting `hosts_dir` (certs.d layout), no system roots, quick retries.
pub fn client(hosts_dir: &Path) -> Client {
    client_with(TrustConfig {
        hosts_dir: Some(hosts_dir.to_path_buf()),
        ..TrustConfig::default()
    })
}

pub fn client_with(trust: TrustConfig) -> Client {
    Client::new(ClientConfig {
        hosts: Arc::new(trust),
        system_roots: false,
        retry: fast_retry(),
        response_header_timeout: Duration::from_secs(10),
        no_progress_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Serves TLS with `cfg` on `ip`, answering every request with `200 OK` and an empty body.
/// Returns the host:port; the task ends with the test runtime.
pub async fn tls_listener(cfg: rustls::ServerConfig, ip: IpAddr) -> HostPort {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    HostPort::new(&addr.ip().to_string(), addr.port())
}
