//! The real kubectl (`/usr/bin/kubectl`, or `$KUBECTL`) against an in-process `apiserver::spawn`, for the kinds
//! added for the node agent and controllers: berth.dev/v1 RegistryHost (apply, `get rh` columns, explain,
//! client-side schema and server-side validation errors), the create-only berth.dev/v1 RegistryCheck (create, 422,
//! 405 on get), coordination.k8s.io/v1 Lease and apps/v1 ControllerRevision.

#[path = "common/kubectl.rs"]
mod kubectl;

use kubectl::Kubectl;

async fn start() -> (
    tempfile::TempDir,
    apiserver::CancellationToken,
    apiserver::Running,
) {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, None, shutdown.clone())
        .await
        .unwrap();
    (dir, shutdown, running)
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_lists_explains_and_validates_registry_hosts() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    let manifest = format!(
        "apiVersion: berth.dev/v1
kind: RegistryHost
metadata:
  name: registry.example.com-5000
spec:
  host: registry.example.com:5000
  caBundle: |
{}  pinnedFingerprints: [\"sha256:{}\"]
  clientCertificateSecretRef: {{namespace: berth-system, name: registry-client}}
  mirrors:
  - {{endpoint: \"https://mirror.example.com:5000\", resolve: false, sendCredentials: false}}
  insecure: false
",
        indent(&ca_pem(), 4),
        "ab".repeat(32)
    );
    let out = k.run(&["apply", "-f", "-"], Some(&manifest)).await;
    assert_eq!(
        out.ok().trim(),
        "registryhost.berth.dev/registry.example.com-5000 created"
    );
    let out = k.run(&["apply", "-f", "-"], Some(&manifest)).await;
    assert_eq!(
        out.ok().trim(),
        "registryhost.berth.dev/registry.example.com-5000 unchanged"
    );
    let plain = "apiVersion: berth.dev/v1\nkind: RegistryHost\nmetadata: {name: plain}\nspec: {host: \"127.0.0.1:5000\", insecure: true}\n";
    k.run(&["apply", "-f", "-"], Some(plain)).await.ok();

    let out = k.run(&["get", "rh"], None).await;
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "HOST", "INSECURE", "AGE"]);
    assert_eq!(lines[1][..3], ["plain", "127.0.0.1:5000", "true"]);
    assert_eq!(
        lines[2][..3],
        [
            "registry.example.com-5000",
            "registry.example.com:5000",
            "false"
        ]
    );
    let out = k
        .run(
            &[
                "get",
                "registryhosts.berth.dev",
                "plain",
                "-o",
                "jsonpath={.spec.host}",
            ],
            None,
        )
        .await;
    assert_eq!(out.ok(), "127.0.0.1:5000");

    let out = k
        .run(&["api-resources", "--api-group=berth.dev"], None)
        .await;
    let rows: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            // The create-only review kind has no short name.
            vec!["registrychecks", "berth.dev/v1", "false", "RegistryCheck"],
            vec![
                "registryhosts",
                "rh",
                "berth.dev/v1",
                "false",
                "RegistryHost"
            ],
        ]
    );

    let out = k.run(&["explain", "registryhost.spec.mirrors"], None).await;
    let text = out.ok();
    assert!(text.contains("KIND:       RegistryHost"), "{text}");
    assert!(text.contains("sendCredentials\t<boolean>"), "{text}");
    assert!(text.contains("endpoint\t<string> -required-"), "{text}");

    // Client-side schema validation (fieldValidation=Strict): an unknown field is refused.
    let typo = "apiVersion: berth.dev/v1\nkind: RegistryHost\nmetadata: {name: typo}\nspec: {host: r.io, mirror: []}\n";
    let err = k.run(&["apply", "-f", "-"], Some(typo)).await;
    assert!(
        err.err().contains("unknown field \"spec.mirror\""),
        "{}",
        err.stderr
    );
    // Server-side validation: upstream-form 422 with causes.
    let bad = "apiVersion: berth.dev/v1\nkind: RegistryHost\nmetadata: {name: bad}\nspec:\n  host: https://r.io\n  caBundle: nope\n  pinnedFingerprints: [md5:00]\n";
    let err = k.run(&["apply", "-f", "-"], Some(bad)).await;
    let stderr = err.err();
    assert!(
        stderr.contains("The RegistryHost \"bad\" is invalid: "),
        "{stderr}"
    );
    assert!(stderr.contains("* spec.host: Invalid value: \"https://r.io\": must be host or host:port without a scheme"), "{stderr}");
    assert!(
        stderr.contains(
            "* spec.caBundle: Invalid value: must contain only PEM blocks of type CERTIFICATE"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("* spec.pinnedFingerprints[0]: Invalid value: \"md5:00\""),
        "{stderr}"
    );
    let out = k.run(&["get", "rh", "bad", "typo"], None).await;
    assert!(out.err().contains("NotFound"), "{}", out.stderr);

    shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_leases_and_controller_revisions() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    // kube-node-lease exists from the first start, as on a real cluster.
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: node-1, namespace: kube-node-lease}\nspec: {holderIdentity: node-1, leaseDurationSeconds: 40}\n";
    let out = k.run(&["apply", "-f", "-"], Some(lease)).await;
    assert_eq!(out.ok().trim(), "lease.coordination.k8s.io/node-1 created");
    let out = k.run(&["get", "leases", "-A"], None).await;
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAMESPACE", "NAME", "HOLDER", "AGE"]);
    assert_eq!(lines[1][..3], ["kube-node-lease", "node-1", "node-1"]);

    let bad = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: bad}\nspec: {leaseDurationSeconds: 0}\n";
    let err = k.run(&["apply", "-f", "-"], Some(bad)).await;
    assert!(
        err.err()
            .contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        "{}",
        err.stderr
    );

    // The owner must exist, or the garbage collector removes the revision (as upstream's would).
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  serviceName: web\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: registry.example.com/app:1}]}\n";
    k.run(&["apply", "-f", "-"], Some(sts)).await.ok();
    let uid = k
        .run(
            &["get", "sts", "web", "-o", "jsonpath={.metadata.uid}"],
            None,
        )
        .await
        .ok()
        .to_string();
    let revision = format!(
        "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: web-5d8f7c\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: StatefulSet, name: web, uid: {uid}, controller: true}}\ndata: {{spec: {{template: {{}}}}}}\nrevision: 2\n"
    );
    let revision = revision.as_str();
    let out = k.run(&["apply", "-f", "-"], Some(revision)).await;
    assert_eq!(
        out.ok().trim(),
        "controllerrevision.apps/web-5d8f7c created"
    );
    let out = k.run(&["get", "controllerrevisions"], None).await;
    let lines: Vec<Vec<&str>> = out
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "CONTROLLER", "REVISION", "AGE"]);
    assert_eq!(lines[1][..3], ["web-5d8f7c", "statefulset.apps/web", "2"]);
    let changed = revision
        .replace("template: {}", "template: {metadata: {}}")
        .replace("{spec: {template: {metadata: {}}}}", "{other: 1}");
    let err = k.run(&["apply", "-f", "-"], Some(&changed)).await;
    assert!(err.err().contains("data: Invalid value"), "{}", err.stderr);
    assert!(err.stderr.contains("field is immutable"), "{}", err.stderr);

    shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_registry_checks_but_cannot_get_them() {
    let (_dir, shutdown, running) = start().await;
    let k = Kubectl::new(&running.admin_kubeconfig);
    // No node agent runs here: the check is decoded, validated and routed, then answered 503 with the fix.
    let check = "apiVersion: berth.dev/v1\nkind: RegistryCheck\nmetadata: {name: try}\nspec: {server: \"127.0.0.1:5000\", username: robot, password: pw-do-not-echo}\n";
    let out = k.run(&["create", "-f", "-"], Some(check)).await;
    let err = out.err();
    assert!(
        err.contains("no node is Ready, so no agent can run the registry check"),
        "{err}"
    );
    assert!(!err.contains("pw-do-not-echo"), "{err}");
    let invalid = "apiVersion: berth.dev/v1\nkind: RegistryCheck\nmetadata: {name: bad}\nspec: {server: \"127.0.0.1:5000\", username: robot}\n";
    let out = k.run(&["create", "-f", "-"], Some(invalid)).await;
    assert!(
        out.err()
            .contains("spec.password: Required value: the password or token for spec.username"),
        "{}",
        out.stderr
    );
    let out = k.run(&["get", "registrychecks"], None).await;
    assert!(out.err().contains("(MethodNotAllowed)"), "{}", out.stderr);
    shutdown.cancel();
    running.task.await.unwrap().unwrap();
}
