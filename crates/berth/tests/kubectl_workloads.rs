//! kubectl end-to-end tests of workloads and the generic API machinery against `berth server`: apply
//! (client-side and server-side), create/replace -f, get (Table, -o wide, -w, all), describe with Events,
//! delete, deployments and scale, label/annotate/patch, discovery (api-resources), explain, version, and the
//! upstream-form errors for bad input.

#[path = "kubectl_harness.rs"]
mod harness;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{SEED_POD, Server};

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn apply_seed_pod_twice_then_change_then_server_side() {
    let s = Server::start();
    let pod = s.file("pod.yaml", SEED_POD);
    assert_eq!(
        s.kubectl(&["apply", "-f", &pod]).ok().trim(),
        "pod/foo created"
    );
    assert_eq!(
        s.kubectl(&["apply", "-f", &pod]).ok().trim(),
        "pod/foo unchanged"
    );
    let v2 = s.file(
        "pod2.yaml",
        &SEED_POD.replace("awesomeapp:v1", "awesomeapp:v2"),
    );
    assert_eq!(
        s.kubectl(&["apply", "-f", &v2]).ok().trim(),
        "pod/foo configured"
    );
    let image = s.kubectl(&[
        "get",
        "pod",
        "foo",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert_eq!(image.ok(), "www.3rdregistry.com/janedoe/awesomeapp:v2");
    let annotation = s.kubectl(&[
        "get",
        "pod",
        "foo",
        "-o",
        "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    ]);
    assert!(
        annotation.ok().contains("awesomeapp:v2"),
        "{}",
        annotation.stdout
    );
    let v3 = s.file(
        "pod3.yaml",
        &SEED_POD.replace("awesomeapp:v1", "awesomeapp:v3"),
    );
    assert_eq!(
        s.kubectl(&["apply", "--server-side", "-f", &v3])
            .ok()
            .trim(),
        "pod/foo serverside-applied"
    );
    let ssa_new = s.file(
        "ssa.yaml",
        &SEED_POD.replace("name: foo\n  namespace", "name: ssa1\n  namespace"),
    );
    assert_eq!(
        s.kubectl(&["apply", "--server-side", "-f", &ssa_new])
            .ok()
            .trim(),
        "pod/ssa1 serverside-applied"
    );
    let get = s.kubectl(&["get", "pods"]);
    let lines: Vec<&str> = get.ok().lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let foo = columns(lines.iter().find(|l| l.starts_with("foo ")).unwrap());
    assert_eq!(&foo[..4], ["foo", "0/1", "Pending", "0"]);
    let wide = s.kubectl(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        columns(wide.ok().lines().next().unwrap()),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    let yaml = s.kubectl(&["get", "pod", "foo", "-o", "yaml"]);
    let y = yaml.ok();
    assert!(
        y.contains("imagePullPolicy: IfNotPresent") && y.contains("- name: myregistrykey"),
        "{y}"
    );
    assert!(
        y.contains("restartPolicy: Always") && y.contains("phase: Pending"),
        "{y}"
    );
}

#[test]
fn create_replace_describe_events_and_delete() {
    let s = Server::start();
    let pod = s.file("pod.yaml", SEED_POD);
    assert_eq!(
        s.kubectl(&["create", "-f", &pod]).ok().trim(),
        "pod/foo created"
    );
    let again = s.kubectl(&["create", "-f", &pod]);
    assert!(
        again.err().contains(&format!("Error from server (AlreadyExists): error when creating \"{pod}\": pods \"foo\" already exists")),
        "{}",
        again.stderr
    );
    let live = s
        .kubectl(&["get", "pod", "foo", "-o", "yaml"])
        .ok()
        .replace("awesomeapp:v1", "awesomeapp:v9");
    let live_file = s.file("live.yaml", &live);
    assert_eq!(
        s.kubectl(&["replace", "-f", &live_file]).ok().trim(),
        "pod/foo replaced"
    );
    // The same file again carries a stale resourceVersion now.
    let stale = s.kubectl(&["replace", "-f", &live_file]);
    assert!(
        stale.err().contains("Error from server (Conflict): error when replacing")
            && stale.stderr.contains("Operation cannot be fulfilled on pods \"foo\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        stale.stderr
    );

    let uid = s
        .kubectl(&["get", "pod", "foo", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    let event = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"foo.pull","namespace":"default"}},
"involvedObject":{{"kind":"Pod","name":"foo","namespace":"default","uid":"{uid}","apiVersion":"v1"}},
"reason":"Failed","message":"Failed to pull image \"www.3rdregistry.com/janedoe/awesomeapp:v9\": 401 from www.3rdregistry.com:443",
"type":"Warning","source":{{"component":"kubelet"}},"count":3,
"firstTimestamp":"2025-01-01T00:00:00Z","lastTimestamp":"2025-01-01T00:00:00Z"}}"#
    );
    let other = event
        .replace("foo.pull", "other.pull")
        .replace(&uid, "someone-else");
    assert_eq!(
        s.kubectl_stdin(&["create", "-f", "-"], &event).ok().trim(),
        "event/foo.pull created"
    );
    s.kubectl_stdin(&["create", "-f", "-"], &other).ok();
    let describe = s.kubectl(&["describe", "pod", "foo"]);
    let d = describe.ok();
    assert!(d.lines().any(|l| columns(l) == ["Name:", "foo"]), "{d}");
    assert!(
        d.lines()
            .any(|l| columns(l) == ["Image:", "www.3rdregistry.com/janedoe/awesomeapp:v9"]),
        "{d}"
    );
    let events: Vec<&str> = d
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|l| l.contains("Failed to pull image"))
            .count(),
        1,
        "{d}"
    );
    assert!(
        events.iter().any(|l| l.contains("Warning")
            && l.contains("Failed")
            && l.contains("(x3 over")
            && l.contains("kubelet")),
        "{d}"
    );

    let ev = s.kubectl(&["get", "events"]);
    assert_eq!(
        columns(ev.ok().lines().next().unwrap()),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(ev.stdout.contains("pod/foo"), "{}", ev.stdout);

    assert_eq!(
        s.kubectl(&["delete", "pod", "foo"]).ok().trim(),
        "pod \"foo\" deleted"
    );
    let gone = s.kubectl(&["get", "pod", "foo"]);
    assert!(
        gone.err()
            .contains("Error from server (NotFound): pods \"foo\" not found"),
        "{}",
        gone.stderr
    );
}

#[test]
fn deployments_scale_label_annotate_and_patch() {
    let s = Server::start();
    assert_eq!(
        s.kubectl(&[
            "create",
            "deployment",
            "x",
            "--image=www.3rdregistry.com/team/app:1.0"
        ])
        .ok()
        .trim(),
        "deployment.apps/x created"
    );
    assert_eq!(
        s.kubectl(&["scale", "deployment", "x", "--replicas=3"])
            .ok()
            .trim(),
        "deployment.apps/x scaled"
    );
    let spec = s.kubectl(&[
        "get",
        "deploy",
        "x",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(spec.ok(), "3 2");
    let get = s.kubectl(&["get", "deploy,sts,rs"]);
    let out = get.ok();
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| columns(l) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("deployment.apps/x") && columns(l)[1] == "0/3"),
        "{out}"
    );
    let all = s.kubectl(&["get", "all"]);
    assert!(all.ok().contains("deployment.apps/x"), "{}", all.stdout);

    assert_eq!(
        s.kubectl(&["label", "deployment", "x", "tier=web"])
            .ok()
            .trim(),
        "deployment.apps/x labeled"
    );
    assert_eq!(
        s.kubectl(&["annotate", "deployment", "x", "note=hello"])
            .ok()
            .trim(),
        "deployment.apps/x annotated"
    );
    assert_eq!(
        s.kubectl(&[
            "patch",
            "deployment",
            "x",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":5}}"#
        ])
        .ok()
        .trim(),
        "deployment.apps/x patched"
    );
    assert_eq!(
        s.kubectl(&[
            "patch",
            "deployment",
            "x",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#
        ])
        .ok()
        .trim(),
        "deployment.apps/x patched"
    );
    assert_eq!(
        s.kubectl(&["patch", "deployment", "x", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"www.3rdregistry.com/team/app:2.0"}]}}}}"#]).ok().trim(),
        "deployment.apps/x patched"
    );
    let v = s.kubectl(&[
        "get",
        "deploy",
        "x",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.spec.minReadySeconds} {.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].name}",
    ]);
    assert_eq!(v.ok(), "web hello 5 2 www.3rdregistry.com/team/app:2.0 app");
    let selected = s.kubectl(&["get", "deploy", "-l", "tier=web", "-o", "name"]);
    assert_eq!(selected.ok().trim(), "deployment.apps/x");
    let none = s.kubectl(&["get", "deploy", "-l", "tier=db", "-o", "name"]);
    assert_eq!(none.ok().trim(), "");
}

#[test]
fn discovery_explain_version_and_namespaces() {
    let s = Server::start();
    let res = s.kubectl(&["api-resources"]);
    let out = res.ok();
    for (name, short) in [
        ("pods", "po"),
        ("deployments", "deploy"),
        ("statefulsets", "sts"),
        ("namespaces", "ns"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && columns(l).contains(&short)),
            "{out}"
        );
    }
    let explain = s.kubectl(&["explain", "pod.spec.imagePullSecrets"]);
    let e = explain.ok();
    assert!(
        e.contains("KIND:       Pod") && e.contains("FIELD: imagePullSecrets"),
        "{e}"
    );
    let version = s.kubectl(&["version"]);
    let v = version.ok();
    assert!(v.contains("Server Version: v1.32.0-berth."), "{v}");
    assert!(!version.stderr.contains("WARNING"), "{}", version.stderr);
    assert_eq!(
        s.kubectl(&["create", "namespace", "team1"]).ok().trim(),
        "namespace/team1 created"
    );
    assert_eq!(
        s.kubectl(&["get", "ns", "team1", "-o", "jsonpath={.status.phase}"])
            .ok(),
        "Active"
    );
}

#[test]
fn get_watch_sees_a_change() {
    let s = Server::start();
    let pod = s.file("pod.yaml", SEED_POD);
    s.kubectl(&["create", "-f", &pod]).ok();
    let mut watch =
        Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into()))
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(["get", "pods", "-w", "--request-timeout=20s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    s.kubectl(&["label", "pod", "foo", "changed=yes"]).ok();
    std::thread::sleep(Duration::from_secs(2));
    let _ = watch.kill();
    let _ = watch.wait();
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("foo ")).collect();
    assert!(
        rows.len() >= 2,
        "expected the initial row and a change:\n{out}"
    );
    assert!(!out.contains("<unknown>"), "{out}");
}

#[test]
fn bad_input_gets_upstream_errors_and_stores_nothing() {
    let s = Server::start();
    let unknown = s.file(
        "unknown.yaml",
        &SEED_POD.replace(
            "  imagePullSecrets:",
            "  containerz: []\n  imagePullSecrets:",
        ),
    );
    let r = s.kubectl(&["create", "-f", &unknown]);
    assert!(
        r.err().contains(&format!("Error from server (BadRequest): error when creating \"{unknown}\": Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containerz\""))
            || r.stderr.contains("strict decoding error: unknown field \"spec.containerz\""),
        "{}",
        r.stderr
    );
    let badname = s.file(
        "badname.yaml",
        &SEED_POD.replace("name: foo\n  namespace", "name: Foo_Bad\n  namespace"),
    );
    let r = s.kubectl(&["create", "-f", &badname]);
    assert!(
        r.err()
            .contains("The Pod \"Foo_Bad\" is invalid: metadata.name: Invalid value: \"Foo_Bad\""),
        "{}",
        r.stderr
    );
    let r = s.kubectl_stdin(
        &["create", "-f", "-", "--validate=false"],
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",",
    );
    assert_ne!(r.code, 0);
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: \"{}\"\n",
        "x".repeat(3 * 1024 * 1024)
    );
    let bigf = s.file("big.yaml", &big);
    let r = s.kubectl(&["create", "-f", &bigf, "--validate=false"]);
    assert!(r.err().contains("limit is 3145728"), "{}", r.stderr);
    let list = s.kubectl(&["get", "pods,configmaps", "-o", "name"]);
    assert_eq!(list.ok().trim(), "", "nothing may be stored");
}
