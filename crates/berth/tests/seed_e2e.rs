//! The seed's workflow, verbatim, against `berth server` with its embedded node agent, a real TLS + htpasswd
//! docker-registry whose CA this machine does not trust, Debian's runc and the real kubectl: the secret made by
//! `kubectl create secret docker-registry`, the seed's Pod applied with `kubectl apply -f` (image address changed
//! to the test registry), the x509 Event naming the registry's host:port, `berth trust add --cluster` fixing it
//! with no restart, `kubectl logs` and `kubectl describe` reading as on a real cluster; a pod without the secret in
//! ErrImagePull then ImagePullBackOff; and a 10-replica Deployment plus a 3-replica StatefulSet of the same image
//! rolling out with one download of each blob. Runs as root; nothing is skipped when a tool is missing.

#[path = "kubectl_harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Run, SEED_POD, Server};
use testkit::front::{Cdn, CdnOptions, Front, FrontOptions};
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "seed-canary-51d3";

fn awesomeapp() -> testkit::image::Image {
    let entries = testkit::image::busybox_rootfs(&["sh", "echo", "sleep", "cat"]);
    ImageBuilder::new()
        .cmd(["sh", "-c", "echo hello from awesomeapp; exec sleep 3600"])
        .env("PATH=/bin")
        .layer(entries, Compression::Gzip)
        .layer(
            vec![Entry::file("etc/motd", "awesome\n")],
            Compression::Gzip,
        )
        .build()
        .unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `check` every 250 ms until it returns Some, or fails with `what` and the server log.
#[track_caller]
fn wait_for<T>(
    s: &Server,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            let pods = s.kubectl(&["get", "pods", "-A", "-o", "wide"]);
            let events = s.kubectl(&["get", "events", "-A"]);
            panic!(
                "timed out after {timeout:?} waiting for {what}\npods:\n{}\nevents:\n{}\nserver log (tail):\n{}",
                pods.stdout,
                events.stdout,
                tail(&s.logs(), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn jsonpath(s: &Server, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &expr]);
    let r: Run = s.kubectl(&args);
    if r.code == 0 { r.stdout } else { String::new() }
}

fn events_of(s: &Server, pod: &str) -> String {
    s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ])
    .stdout
}

/// `berth trust add --cluster HOST --ca-file FILE` with the server's admin kubeconfig.
fn trust_cluster(s: &Server, host: &str, ca_pem: &str) {
    let ca = s.file(&format!("{}.crt", host.replace(':', "_")), ca_pem);
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "trust",
            "add",
            "--cluster",
            host,
            "--ca-file",
            &ca,
            "--kubeconfig",
        ])
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth trust add --cluster {host}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TLS + htpasswd docker-registry whose CA nobody trusts yet, holding `janedoe/awesomeapp:v1`. Fails unless
/// run as root (the tests run containers with runc).
async fn private_registry() -> (TestPki, Registry, testkit::image::Image) {
    assert!(
        is_root(),
        "this test runs containers with runc and must run as root"
    );
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("janedoe", PASSWORD)]),
    )
    .await
    .unwrap();
    let image = awesomeapp();
    image
        .push(
            &registry,
            "janedoe/awesomeapp:v1",
            Some(&Credentials::new("janedoe", PASSWORD)),
        )
        .await
        .unwrap();
    (pki, registry, image)
}

/// `berth server` with its embedded node agent on a fresh root and a 2 s first image pull back-off, so a trust fix
/// shows within seconds. Bind as `let (_root, s)`: the server is dropped (stopped) before its root is removed.
fn server_with_agent() -> (tempfile::TempDir, Server) {
    let node_root = tempfile::tempdir().unwrap();
    let s = Server::start_with(&[
        "--root",
        node_root.path().to_str().unwrap(),
        "--image-pull-backoff",
        "2s",
    ]);
    (node_root, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_runs_a_private_image_and_trust_is_fixed_cluster_wide_without_restart() {
    let (pki, registry, image) = private_registry().await;
    let host = registry.host_port();
    let image_ref = format!("{host}/janedoe/awesomeapp:v1");

    let (_node_root, s) = server_with_agent();

    // The node registers and is Ready.
    wait_for(&s, "a Ready node", Duration::from_secs(60), || {
        let ready = jsonpath(
            &s,
            &["nodes"],
            r#"{.items[*].status.conditions[?(@.type=="Ready")].status}"#,
        );
        (ready.trim() == "True").then_some(())
    });

    // 1. The secret, with real kubectl.
    s.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "myregistrykey",
        &format!("--docker-server={host}"),
        "--docker-username=janedoe",
        &format!("--docker-password={PASSWORD}"),
        "--docker-email=janedoe@example.com",
    ])
    .ok();

    // 2. The seed's Pod, its image address changed to the test registry.
    let pod_yaml = SEED_POD.replace("www.3rdregistry.com/janedoe/awesomeapp:v1", &image_ref);
    let file = s.file("pod.yaml", &pod_yaml);
    s.kubectl(&["apply", "-f", &file]).ok();

    // 3. The registry's CA is unknown here: the Event says so, names host:port and the fix.
    let failed = wait_for(&s, "the x509 Failed event", Duration::from_secs(90), || {
        let ev = events_of(&s, "foo");
        ev.lines()
            .find(|l| l.contains("x509: certificate signed by unknown authority"))
            .map(str::to_string)
    });
    assert!(failed.contains(&host), "the event names {host}: {failed}");
    assert!(
        failed.contains("berth trust"),
        "the event names the fix: {failed}"
    );
    assert!(!failed.contains(PASSWORD), "no secret in events");
    let waiting = wait_for(&s, "ImagePullBackOff", Duration::from_secs(60), || {
        let r = jsonpath(
            &s,
            &["pod", "foo"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        (r == "ImagePullBackOff").then_some(r)
    });
    assert_eq!(waiting, "ImagePullBackOff");

    // 4. Trust its CA for that host:port on every node; no restart.
    trust_cluster(&s, &host, pki.ca_pem());
    assert!(s.kubectl(&["get", "registryhosts"]).ok().contains(&host));

    wait_for(&s, "foo Running", Duration::from_secs(90), || {
        (jsonpath(&s, &["pod", "foo"], "{.status.phase}") == "Running").then_some(())
    });
    let logs = wait_for(&s, "foo's log line", Duration::from_secs(30), || {
        let r = s.kubectl(&["logs", "foo"]);
        r.stdout
            .contains("hello from awesomeapp")
            .then_some(r.stdout)
    });
    assert_eq!(logs, "hello from awesomeapp\n");
    let describe = s.kubectl(&["describe", "pod", "foo"]).ok().to_string();
    for want in [
        "Pulling",
        &format!("Pulling image \"{image_ref}\""),
        "Pulled",
        &format!("Successfully pulled image \"{image_ref}\" in "),
        "Image size: ",
        "Started",
    ] {
        assert!(
            describe.contains(want),
            "describe shows {want:?}:\n{describe}"
        );
    }
    assert!(!describe.contains(PASSWORD));

    // 5. The same image without the secret: the registry's denial, then back-off.
    let nosecret = pod_yaml
        .replace("name: foo\n  namespace", "name: nosecret\n  namespace")
        .replace("  imagePullSecrets:\n    - name: myregistrykey              #Use the created secret.\n", "")
        .replace("  imagePullSecrets:\n    - name: myregistrykey\n", "");
    assert!(!nosecret.contains("imagePullSecrets"), "{nosecret}");
    let file = s.file("nosecret.yaml", &nosecret);
    s.kubectl(&["apply", "-f", &file]).ok();
    let reasons = wait_for(
        &s,
        "ErrImagePull then ImagePullBackOff",
        Duration::from_secs(90),
        || {
            let ev = events_of(&s, "nosecret");
            (ev.contains("ErrImagePull") && ev.contains("BackOff")).then_some(ev)
        },
    );
    assert!(
        reasons.contains("pull access denied") && reasons.contains("no basic auth credentials"),
        "the registry's denial is in the events: {reasons}"
    );
    let message = wait_for(&s, "the back-off message", Duration::from_secs(60), || {
        let m = jsonpath(
            &s,
            &["pod", "nosecret"],
            "{.status.containerStatuses[0].state.waiting.message}",
        );
        m.starts_with(&format!("Back-off pulling image \"{image_ref}\""))
            .then_some(m)
    });
    assert!(message.contains("ErrImagePull"), "{message}");
    s.kubectl(&["delete", "pod", "nosecret", "--wait=true"])
        .ok();

    // 6. A 10-replica Deployment and a 3-replica StatefulSet of the image: rollouts complete, no new download.
    let workloads = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: awesome
spec:
  replicas: 10
  selector:
    matchLabels: {{app: awesome}}
  template:
    metadata:
      labels: {{app: awesome}}
    spec:
      imagePullSecrets: [{{name: myregistrykey}}]
      containers:
      - name: app
        image: {image_ref}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 3
  serviceName: web
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      imagePullSecrets: [{{name: myregistrykey}}]
      containers:
      - name: app
        image: {image_ref}
"
    );
    let file = s.file("workloads.yaml", &workloads);
    s.kubectl(&["apply", "-f", &file]).ok();
    s.kubectl(&["rollout", "status", "deployment/awesome", "--timeout=180s"])
        .ok();
    s.kubectl(&["rollout", "status", "statefulset/web", "--timeout=180s"])
        .ok();
    let names = jsonpath(&s, &["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    assert_eq!(names, "web-0 web-1 web-2");
    for layer in &image.layers {
        let layer = layer.descriptor.digest.to_string();
        let gets = registry.blob_gets("janedoe/awesomeapp", &layer).await;
        assert_eq!(gets, 1, "layer {layer} downloaded once for 14 pods");
    }
    s.kubectl(&["delete", "deployment", "awesome", "--wait=true"])
        .ok();
    s.kubectl(&["delete", "statefulset", "web", "--wait=true"])
        .ok();
    s.kubectl(&["delete", "pod", "foo", "--wait=true"]).ok();
    wait_for(&s, "every pod to go", Duration::from_secs(90), || {
        jsonpath(&s, &["pods"], "{.items[*].metadata.name}")
            .is_empty()
            .then_some(())
    });
}

/// The registry is trusted but the CDN it redirects layer downloads to (127.0.0.2) presents a certificate from
/// another unknown CA: the Event names the CDN's host:port, not the registry's, and trusting the CDN's CA for that
/// host:port cluster-wide lets the pod start without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_blob_cdn_is_named_in_the_event_and_trusting_it_cluster_wide_heals_the_pod() {
    let (_pki, registry, _image) = private_registry().await;
    let cdn_pki = TestPki::named("cdn").unwrap();
    let cdn = Cdn::start(
        &registry,
        CdnOptions::new(cdn_pki.server(["127.0.0.2"]).unwrap(), cdn_pki.ca_pem()),
    )
    .await
    .unwrap();
    let front_pki = TestPki::named("front").unwrap();
    let mut options =
        FrontOptions::new(front_pki.server(["127.0.0.1"]).unwrap(), front_pki.ca_pem());
    options.redirect_blobs = true;
    let front = Front::start(&registry, Some(&cdn), options).await.unwrap();
    let host = front.host_port();
    let cdn_host = cdn.addr().to_string();
    assert!(cdn_host.starts_with("127.0.0.2:"), "{cdn_host}");

    let (_node_root, s) = server_with_agent();
    trust_cluster(&s, &host, front_pki.ca_pem());
    s.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "myregistrykey",
        &format!("--docker-server={host}"),
        "--docker-username=janedoe",
        &format!("--docker-password={PASSWORD}"),
    ])
    .ok();
    let image_ref = format!("{host}/janedoe/awesomeapp:v1");
    let pod_yaml = SEED_POD.replace("www.3rdregistry.com/janedoe/awesomeapp:v1", &image_ref);
    let file = s.file("pod.yaml", &pod_yaml);
    s.kubectl(&["apply", "-f", &file]).ok();

    let failed = wait_for(&s, "the CDN's x509 event", Duration::from_secs(120), || {
        events_of(&s, "foo")
            .lines()
            .find(|l| l.contains("x509: certificate signed by unknown authority"))
            .map(str::to_string)
    });
    assert!(
        failed.contains(&cdn_host),
        "the event names the CDN {cdn_host}: {failed}"
    );
    assert!(
        failed.contains(&format!("berth trust add --cluster {cdn_host}")),
        "the fix names the CDN: {failed}"
    );
    assert!(
        !failed.contains(PASSWORD) && !failed.contains("sig="),
        "{failed}"
    );

    trust_cluster(&s, &cdn_host, cdn_pki.ca_pem());
    wait_for(&s, "foo Running", Duration::from_secs(90), || {
        (jsonpath(&s, &["pod", "foo"], "{.status.phase}") == "Running").then_some(())
    });
    let logs = wait_for(&s, "foo's log line", Duration::from_secs(30), || {
        let r = s.kubectl(&["logs", "foo"]);
        r.stdout
            .contains("hello from awesomeapp")
            .then_some(r.stdout)
    });
    assert_eq!(logs, "hello from awesomeapp\n");
    s.kubectl(&["delete", "pod", "foo", "--wait=true"]).ok();
}
