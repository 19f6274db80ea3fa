//! Patch vectors: RFC 7386 Appendix A, RFC 6902 Appendix A, and strategic merge cases
//! modelled on apimachinery strategicpatch patch_test.go, as data.

use serde_json::{Value, json};
use wire::patch::{
    PatchError, apply, json_patch, json_patch_with_limit, merge_patch, strategic_merge_patch,
};

#[test]
fn rfc7386_appendix_a() {
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        ),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (target, patch, want) in cases {
        assert_eq!(
            merge_patch(&target, &patch).unwrap(),
            want,
            "{target} + {patch}"
        );
    }
}

#[test]
fn merge_patch_must_be_an_object() {
    // RFC 7386 allows a non-object patch to replace the whole document; the API refuses it.
    assert_eq!(
        merge_patch(&json!({"a":1}), &json!(["c"])),
        Err(PatchError::NotAnObject("an array"))
    );
}

#[test]
fn rfc6902_appendix_a() {
    let ok = [
        (
            "A.1",
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux"}]),
            json!({"baz":"qux","foo":"bar"}),
        ),
        (
            "A.2",
            json!({"foo":["bar","baz"]}),
            json!([{"op":"add","path":"/foo/1","value":"qux"}]),
            json!({"foo":["bar","qux","baz"]}),
        ),
        (
            "A.3",
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"remove","path":"/baz"}]),
            json!({"foo":"bar"}),
        ),
        (
            "A.4",
            json!({"foo":["bar","qux","baz"]}),
            json!([{"op":"remove","path":"/foo/1"}]),
            json!({"foo":["bar","baz"]}),
        ),
        (
            "A.5",
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"replace","path":"/baz","value":"boo"}]),
            json!({"baz":"boo","foo":"bar"}),
        ),
        (
            "A.6",
            json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
            json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
            json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
        ),
        (
            "A.7",
            json!({"foo":["all","grass","cows","eat"]}),
            json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
            json!({"foo":["all","cows","eat","grass"]}),
        ),
        (
            "A.8",
            json!({"baz":"qux","foo":["a",2,"c"]}),
            json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
            json!({"baz":"qux","foo":["a",2,"c"]}),
        ),
        (
            "A.10",
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
            json!({"foo":"bar","child":{"grandchild":{}}}),
        ),
        (
            "A.11",
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
            json!({"foo":"bar","baz":"qux"}),
        ),
        (
            "A.14",
            json!({"/":9,"~1":10}),
            json!([{"op":"test","path":"/~01","value":10}]),
            json!({"/":9,"~1":10}),
        ),
        (
            "A.16",
            json!({"foo":["bar"]}),
            json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
            json!({"foo":["bar",["abc","def"]]}),
        ),
    ];
    for (name, doc, patch, want) in ok {
        assert_eq!(json_patch(&doc, &patch).unwrap(), want, "{name}");
    }
    let fail = [
        (
            "A.9",
            json!({"baz":"qux"}),
            json!([{"op":"test","path":"/baz","value":"bar"}]),
        ),
        (
            "A.12",
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz/bat","value":"qux"}]),
        ),
        (
            "A.15",
            json!({"/":9,"~1":10}),
            json!([{"op":"test","path":"/~01","value":"10"}]),
        ),
    ];
    for (name, doc, patch) in fail {
        assert!(
            matches!(
                json_patch(&doc, &patch),
                Err(PatchError::JsonPatchOperation { index: 0, .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn json_patch_error_names_operation_and_path() {
    let err = json_patch(&json!({"spec":{}}), &json!([{"op":"add","path":"/a","value":1},{"op":"replace","path":"/spec/replicas","value":3}]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("operation 1 (replace /spec/replicas)"),
        "{err}"
    );
    let err = json_patch(&json!({}), &json!({"op":"add"})).unwrap_err();
    assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
}

#[test]
fn json_patch_copy_size_is_bounded() {
    let doc = json!({"a": "x".repeat(1000)});
    let ops: Vec<Value> = (0..5)
        .map(|i| json!({"op":"copy","from":"/a","path":format!("/b{i}")}))
        .collect();
    assert!(json_patch_with_limit(&doc, &Value::Array(ops.clone()), 10_000).is_ok());
    let err = json_patch_with_limit(&doc, &Value::Array(ops), 3_000).unwrap_err();
    assert_eq!(
        err,
        PatchError::CopyLimit {
            index: 2,
            limit: 3_000
        }
    );
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bar", "labels": {"app": "foo", "tier": "web"}, "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "u1", "name": "rs1"}]},
        "spec": {
            "containers": [
                {"name": "app", "image": "r/app:1.0", "ports": [{"containerPort": 80}, {"containerPort": 443}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "volumeMounts": [{"name": "v", "mountPath": "/data"}]},
                {"name": "sidecar", "image": "busybox"}
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k1", "operator": "Exists"}]
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// (name, kind, patch, [(JSON pointer, expected value)])
type SmpCase = (
    &'static str,
    &'static str,
    Value,
    Vec<(&'static str, Value)>,
);

#[test]
fn strategic_merge_cases() {
    // (name, kind, patch, JSON pointer -> expected value)
    let cases: Vec<SmpCase> = vec![
        (
            "merge container by name",
            "Pod",
            json!({"spec":{"containers":[{"name":"app","image":"r/app:2.0"}]}}),
            vec![
                ("/spec/containers/0/image", json!("r/app:2.0")),
                ("/spec/containers/0/ports/1/containerPort", json!(443)),
                ("/spec/containers/1/name", json!("sidecar")),
            ],
        ),
        (
            "add container",
            "Pod",
            json!({"spec":{"containers":[{"name":"new","image":"x"}]}}),
            // without $setElementOrder a new element lands in front (upstream mergeSortedSlice)
            vec![
                ("/spec/containers/0/name", json!("new")),
                ("/spec/containers/1/name", json!("app")),
                ("/spec/containers/2/name", json!("sidecar")),
            ],
        ),
        (
            "delete container with $patch",
            "Pod",
            json!({"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}),
            vec![(
                "/spec/containers",
                json!([pod()["spec"]["containers"][0].clone()]),
            )],
        ),
        (
            "replace whole list with $patch",
            "Pod",
            json!({"spec":{"containers":[{"name":"only","image":"y"},{"$patch":"replace"}]}}),
            vec![("/spec/containers", json!([{"name":"only","image":"y"}]))],
        ),
        (
            "null deletes a label",
            "Pod",
            json!({"metadata":{"labels":{"tier":null}}}),
            vec![("/metadata/labels", json!({"app":"foo"}))],
        ),
        (
            "env by name and ports by containerPort",
            "Pod",
            json!({"spec":{"containers":[{"name":"app","env":[{"name":"B","value":"3"},{"name":"C","value":"4"}],
                "ports":[{"containerPort":443,"name":"https"}]}]}}),
            vec![
                (
                    "/spec/containers/0/env",
                    json!([{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}]),
                ),
                (
                    "/spec/containers/0/ports/1",
                    json!({"containerPort":443,"name":"https"}),
                ),
            ],
        ),
        (
            "volumeMounts by mountPath",
            "Pod",
            json!({"spec":{"containers":[{"name":"app","volumeMounts":[{"name":"w","mountPath":"/data"}]}]}}),
            vec![(
                "/spec/containers/0/volumeMounts",
                json!([{"name":"w","mountPath":"/data"}]),
            )],
        ),
        (
            "tolerations are atomic",
            "Pod",
            json!({"spec":{"tolerations":[{"key":"k2","operator":"Exists"}]}}),
            vec![(
                "/spec/tolerations",
                json!([{"key":"k2","operator":"Exists"}]),
            )],
        ),
        (
            "finalizers merge as a set",
            "Pod",
            json!({"metadata":{"finalizers":["b","c"]}}),
            vec![("/metadata/finalizers", json!(["a", "b", "c"]))],
        ),
        (
            "deleteFromPrimitiveList",
            "Pod",
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
            vec![("/metadata/finalizers", json!(["b"]))],
        ),
        (
            "ownerReferences by uid",
            "Pod",
            json!({"metadata":{"ownerReferences":[{"uid":"u1","controller":true}]}}),
            vec![(
                "/metadata/ownerReferences",
                json!([{"uid":"u1","name":"rs1","controller":true}]),
            )],
        ),
        (
            "status conditions by type",
            "Pod",
            json!({"status":{"conditions":[{"type":"Initialized","status":"True"}]}}),
            vec![
                ("/status/conditions/0/type", json!("Initialized")),
                ("/status/conditions/1/type", json!("Ready")),
            ],
        ),
        (
            "volumes retainKeys switches the source",
            "Pod",
            json!({"spec":{"volumes":[{"name":"v","hostPath":{"path":"/x"},"$retainKeys":["hostPath","name"]}]}}),
            vec![(
                "/spec/volumes",
                json!([{"name":"v","hostPath":{"path":"/x"}}]),
            )],
        ),
        (
            "setElementOrder from kubectl apply",
            "Pod",
            json!({"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"app"}],
                "containers":[{"name":"app","image":"r/app:2.0"}]}}),
            vec![
                ("/spec/containers/0/name", json!("sidecar")),
                ("/spec/containers/1/image", json!("r/app:2.0")),
            ],
        ),
        (
            "map $patch replace",
            "Pod",
            json!({"metadata":{"labels":{"$patch":"replace","only":"x"}}}),
            vec![("/metadata/labels", json!({"only":"x"}))],
        ),
        (
            "map $patch delete",
            "Pod",
            json!({"metadata":{"labels":{"$patch":"delete"}}}),
            vec![("/metadata/labels", json!({}))],
        ),
    ];
    for (name, kind, patch, expects) in cases {
        let out =
            strategic_merge_patch(kind, &pod(), &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (ptr, want) in expects {
            let got = out.pointer(ptr).cloned().unwrap_or(Value::Null);
            assert_eq!(got, want, "{name}: {ptr}");
        }
        assert!(
            !out.to_string().contains('$'),
            "{name}: directive leaked into {out}"
        );
    }
}

#[test]
fn element_order_follows_the_upstream_design_examples() {
    // preserve-order-in-strategic-merge-patch.md: live [B, C, A], patch [A', B', D] -> [C, A', B', D]
    let live = json!({"spec":{"containers":[{"name":"app","env":[
        {"name":"B","value":"b"},{"name":"C","value":"c"},{"name":"A","value":"a"}]}]}});
    let patch = json!({"spec":{"containers":[{"name":"app","env":[
        {"name":"A","value":"a2"},{"name":"B","value":"b2"},{"name":"D","value":"d"}]}]}});
    let out = strategic_merge_patch("Pod", &live, &patch).unwrap();
    let names: Vec<&str> = out["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["C", "A", "B", "D"]);
    assert_eq!(out["spec"]["containers"][0]["env"][1]["value"], "a2");
    // $setElementOrder alone reorders: live [B, A], order [A, B] -> [A, B]
    let live = json!({"metadata":{"finalizers":["b","a"]}});
    let out = strategic_merge_patch(
        "Pod",
        &live,
        &json!({"metadata":{"$setElementOrder/finalizers":["a","b"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
    // with $setElementOrder naming every element, a new element goes where the order says
    let live = json!({"spec":{"containers":[{"name":"a"},{"name":"b"}]}});
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"},{"name":"c"}],"containers":[{"name":"c"}]}});
    let out = strategic_merge_patch("Pod", &live, &patch).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"a"},{"name":"b"},{"name":"c"}])
    );
}

#[test]
fn deployment_strategy_retain_keys_and_template_merge_keys() {
    let deploy = json!({"kind":"Deployment","spec":{"replicas":1,
        "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
        "template":{"spec":{"containers":[{"name":"app","image":"a:1"},{"name":"b","image":"b:1"}]}}}});
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null},
        "template":{"spec":{"containers":[{"name":"app","image":"a:2"}]}}}});
    let out = strategic_merge_patch("Deployment", &deploy, &patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "a:2"
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["image"],
        "b:1"
    );
    // kubectl set image on a StatefulSet
    let sts = json!({"spec":{"template":{"spec":{"containers":[{"name":"db","image":"pg:15"},{"name":"x","image":"y"}]}}}});
    let out = strategic_merge_patch(
        "StatefulSet",
        &sts,
        &json!({"spec":{"template":{"spec":{"containers":[{"name":"db","image":"pg:16"}]}}}}),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"db","image":"pg:16"},{"name":"x","image":"y"}])
    );
}

#[test]
fn strategic_merge_errors() {
    let err = strategic_merge_patch(
        "Pod",
        &pod(),
        &json!({"spec":{"containers":[{"image":"x"}]}}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("spec.containers") && err.contains("merge key \"name\""),
        "{err}"
    );
    let err = strategic_merge_patch("RegistryHost", &json!({}), &json!({})).unwrap_err();
    assert!(matches!(err, PatchError::UnsupportedStrategicMerge { .. }));
    assert!(err.to_string().contains("merge-patch+json"));
    let err = strategic_merge_patch("Pod", &pod(), &json!({"metadata":{"$patch":"explode"}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown $patch directive"), "{err}");
    let err = strategic_merge_patch(
        "Pod",
        &pod(),
        &json!({"spec":{"strategy":{"$retainKeys":["type"],"other":1}}}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("$retainKeys does not list \"other\""), "{err}");
}

#[test]
fn apply_creates_when_absent_and_merges_by_key() {
    let applied = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"ssa1","labels":{"app":"x"}},
        "spec":{"containers":[{"name":"app","image":"a:2"}]}});
    assert_eq!(apply(None, &applied, "Pod").unwrap(), applied);
    let live = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"ssa1","uid":"u","resourceVersion":"7","labels":{"keep":"y"}},
        "spec":{"containers":[{"name":"app","image":"a:1","terminationMessagePath":"/dev/termination-log"},{"name":"side","image":"s"}],
            "restartPolicy":"Always"},
        "status":{"phase":"Running"}});
    let out = apply(Some(&live), &applied, "Pod").unwrap();
    assert_eq!(out["metadata"]["uid"], "u");
    assert_eq!(out["metadata"]["labels"], json!({"keep":"y","app":"x"}));
    assert_eq!(
        out["spec"]["containers"][0],
        json!({"name":"app","image":"a:2","terminationMessagePath":"/dev/termination-log"})
    );
    assert_eq!(out["spec"]["containers"][1]["name"], "side");
    assert_eq!(out["status"]["phase"], "Running");
}

#[test]
fn apply_on_custom_kind_replaces_lists_and_refuses_directives() {
    let live = json!({"kind":"RegistryHost","spec":{"mirrors":["a","b"],"ca":{"pem":"x"}}});
    let applied = json!({"kind":"RegistryHost","spec":{"mirrors":["c"]}});
    let out = apply(Some(&live), &applied, "RegistryHost").unwrap();
    assert_eq!(out["spec"], json!({"mirrors":["c"],"ca":{"pem":"x"}}));
    let err = apply(
        Some(&live),
        &json!({"spec":{"$patch":"replace"}}),
        "RegistryHost",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("$patch"), "{err}");
}
