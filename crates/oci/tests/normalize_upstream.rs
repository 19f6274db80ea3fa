//! Conformance vectors ported from distribution/reference `normalize_test.go`: every row of
//! TestValidateReferenceName, TestValidateRemoteName, TestParseRepositoryInfo, TestParseAnyReference,
//! TestNormalizedSplitHostname, TestMatch and TestParseDockerRef, plus the non-table tests
//! TestParseReferenceWithTagAndDigest, TestInvalidReferenceComponents and TestMatchError.

use oci::{AnyReference, Digest, Reference};

struct InfoRow {
    remotename: &'static str,
    familiarname: &'static str,
    fullname: &'static str,
    ambiguousname: &'static str,
    domain: &'static str,
}

struct AnyRow {
    reference: &'static str,
    equivalent: &'static str,
    expected: Option<&'static str>,
}

struct SplitRow {
    input: &'static str,
    domain: &'static str,
    path: &'static str,
}

struct MatchRow {
    reference: &'static str,
    pattern: &'static str,
    expected: bool,
}

struct DockerRefRow {
    name: &'static str,
    input: &'static str,
    expected: &'static str,
}

#[test]
fn validate_reference_name_matches_upstream_lists() {
    for name in TESTVALIDATEREFERENCENAME_VALIDREPONAMES {
        Reference::parse_normalized(name)
            .unwrap_or_else(|e| panic!("{name:?} should be valid: {e}"));
    }
    for name in TESTVALIDATEREFERENCENAME_INVALIDREPONAMES {
        assert!(
            Reference::parse_normalized(name).is_err(),
            "{name:?} should be invalid"
        );
    }
}

#[test]
fn validate_remote_name_matches_upstream_lists() {
    for name in TESTVALIDATEREMOTENAME_VALIDREPOSITORYNAMES {
        Reference::parse_normalized(name)
            .unwrap_or_else(|e| panic!("{name:?} should be valid: {e}"));
    }
    for name in TESTVALIDATEREMOTENAME_INVALIDREPOSITORYNAMES {
        assert!(
            Reference::parse_normalized(name).is_err(),
            "{name:?} should be invalid"
        );
    }
}

#[test]
fn repository_info_matches_upstream_table() {
    for row in TESTPARSEREPOSITORYINFO {
        let mut inputs = vec![row.familiarname, row.fullname];
        if !row.ambiguousname.is_empty() {
            inputs.push(row.ambiguousname);
        }
        for input in inputs {
            let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(
                r.familiar_name(),
                row.familiarname,
                "FamiliarName of {input:?}"
            );
            assert_eq!(r.to_string(), row.fullname, "String of {input:?}");
            assert_eq!(r.domain(), row.domain, "Domain of {input:?}");
            assert_eq!(r.path(), row.remotename, "Path of {input:?}");
        }
    }
}

#[test]
fn reference_with_tag_and_digest_keeps_both() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = Reference::parse_normalized(short).unwrap();
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert!(r.tag().is_some() && r.digest().is_some());
    assert_eq!(r.familiar_string(), short);
}

#[test]
fn invalid_reference_components_are_rejected() {
    assert!(Reference::parse_normalized("-foo").is_err());
    let r = Reference::parse_normalized("busybox").unwrap();
    assert_eq!(
        r.with_tag("-foo").unwrap_err().to_string(),
        "invalid tag format"
    );
    // WithDigest(ref, "foo"): our Digest type cannot hold "foo"; parsing it is the rejection.
    assert!("foo".parse::<Digest>().is_err());
}

#[test]
fn parse_any_reference_matches_upstream_table() {
    for row in TESTPARSEANYREFERENCE {
        let got = Reference::parse_any(row.reference)
            .unwrap_or_else(|e| panic!("{:?}: {e}", row.reference));
        assert_eq!(
            got.to_string(),
            row.equivalent,
            "String of {:?}",
            row.reference
        );
        let expected = match row.expected {
            Some(d) => AnyReference::Digest(d.parse().unwrap()),
            None => AnyReference::Named(Reference::parse(row.equivalent).unwrap()),
        };
        assert_eq!(got, expected, "value of {:?}", row.reference);
    }
}

#[test]
fn normalized_split_hostname_matches_upstream_table() {
    for row in TESTNORMALIZEDSPLITHOSTNAME {
        let r = Reference::parse_normalized(row.input).unwrap();
        assert_eq!(
            (r.domain(), r.path()),
            (row.domain, row.path),
            "input {:?}",
            row.input
        );
    }
}

#[test]
fn familiar_match_reports_bad_pattern() {
    let r = match Reference::parse_any("foo").unwrap() {
        AnyReference::Named(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(r.familiar_match("[-x]").is_err());
}

#[test]
fn familiar_match_matches_upstream_table() {
    for row in TESTMATCH {
        let r = match Reference::parse_any(row.reference).unwrap() {
            AnyReference::Named(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            r.familiar_match(row.pattern),
            Ok(row.expected),
            "{:?} vs {:?}",
            row.reference,
            row.pattern
        );
    }
}

#[test]
fn parse_docker_ref_matches_upstream_table() {
    for row in TESTPARSEDOCKERREF {
        let r =
            Reference::parse_docker_ref(row.input).unwrap_or_else(|e| panic!("{}: {e}", row.name));
        assert_eq!(r.to_string(), row.expected, "{}", row.name);
        Reference::parse(&r.to_string()).unwrap();
    }
}

// ---- tables generated from distribution/reference normalize_test.go (every row, in upstream order) ----

/// `TestParseRepositoryInfo`: 20 rows.
const TESTPARSEREPOSITORYINFO: &[InfoRow] = &[
    InfoRow {
        remotename: "fooo",
        familiarname: "localhost/fooo",
        fullname: "localhost/fooo",
        ambiguousname: "localhost/fooo",
        domain: "localhost",
    },
    InfoRow {
        remotename: "fooo/bar",
        familiarname: "localhost/fooo/bar",
        fullname: "localhost/fooo/bar",
        ambiguousname: "localhost/fooo/bar",
        domain: "localhost",
    },
    InfoRow {
        remotename: "fooo",
        familiarname: "LOCALDOMAIN/fooo",
        fullname: "LOCALDOMAIN/fooo",
        ambiguousname: "LOCALDOMAIN/fooo",
        domain: "LOCALDOMAIN",
    },
    InfoRow {
        remotename: "fooo/bar",
        familiarname: "LOCALDOMAIN/fooo/bar",
        fullname: "LOCALDOMAIN/fooo/bar",
        ambiguousname: "LOCALDOMAIN/fooo/bar",
        domain: "LOCALDOMAIN",
    },
    InfoRow {
        remotename: "fooo/bar",
        familiarname: "fooo/bar",
        fullname: "docker.io/fooo/bar",
        ambiguousname: "index.docker.io/fooo/bar",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "library/ubuntu",
        familiarname: "ubuntu",
        fullname: "docker.io/library/ubuntu",
        ambiguousname: "library/ubuntu",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "nonlibrary/ubuntu",
        familiarname: "nonlibrary/ubuntu",
        fullname: "docker.io/nonlibrary/ubuntu",
        ambiguousname: "",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "other/library",
        familiarname: "other/library",
        fullname: "docker.io/other/library",
        ambiguousname: "",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "private/moonbase",
        familiarname: "127.0.0.1:8000/private/moonbase",
        fullname: "127.0.0.1:8000/private/moonbase",
        ambiguousname: "",
        domain: "127.0.0.1:8000",
    },
    InfoRow {
        remotename: "privatebase",
        familiarname: "127.0.0.1:8000/privatebase",
        fullname: "127.0.0.1:8000/privatebase",
        ambiguousname: "",
        domain: "127.0.0.1:8000",
    },
    InfoRow {
        remotename: "private/moonbase",
        familiarname: "example.com/private/moonbase",
        fullname: "example.com/private/moonbase",
        ambiguousname: "",
        domain: "example.com",
    },
    InfoRow {
        remotename: "privatebase",
        familiarname: "example.com/privatebase",
        fullname: "example.com/privatebase",
        ambiguousname: "",
        domain: "example.com",
    },
    InfoRow {
        remotename: "private/moonbase",
        familiarname: "example.com:8000/private/moonbase",
        fullname: "example.com:8000/private/moonbase",
        ambiguousname: "",
        domain: "example.com:8000",
    },
    InfoRow {
        remotename: "privatebasee",
        familiarname: "example.com:8000/privatebasee",
        fullname: "example.com:8000/privatebasee",
        ambiguousname: "",
        domain: "example.com:8000",
    },
    InfoRow {
        remotename: "library/ubuntu-12.04-base",
        familiarname: "ubuntu-12.04-base",
        fullname: "docker.io/library/ubuntu-12.04-base",
        ambiguousname: "index.docker.io/library/ubuntu-12.04-base",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "library/foo",
        familiarname: "foo",
        fullname: "docker.io/library/foo",
        ambiguousname: "docker.io/foo",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "library/foo/bar",
        familiarname: "library/foo/bar",
        fullname: "docker.io/library/foo/bar",
        ambiguousname: "",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "store/foo/bar",
        familiarname: "store/foo/bar",
        fullname: "docker.io/store/foo/bar",
        ambiguousname: "",
        domain: "docker.io",
    },
    InfoRow {
        remotename: "bar",
        familiarname: "Foo/bar",
        fullname: "Foo/bar",
        ambiguousname: "",
        domain: "Foo",
    },
    InfoRow {
        remotename: "bar",
        familiarname: "FOO/bar",
        fullname: "FOO/bar",
        ambiguousname: "",
        domain: "FOO",
    },
];

/// `TestParseAnyReference`: 14 rows.
const TESTPARSEANYREFERENCE: &[AnyRow] = &[
    AnyRow {
        reference: "redis",
        equivalent: "docker.io/library/redis",
        expected: None,
    },
    AnyRow {
        reference: "redis:latest",
        equivalent: "docker.io/library/redis:latest",
        expected: None,
    },
    AnyRow {
        reference: "docker.io/library/redis:latest",
        equivalent: "docker.io/library/redis:latest",
        expected: None,
    },
    AnyRow {
        reference: "redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: None,
    },
    AnyRow {
        reference: "docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: None,
    },
    AnyRow {
        reference: "dmcgowan/myapp",
        equivalent: "docker.io/dmcgowan/myapp",
        expected: None,
    },
    AnyRow {
        reference: "dmcgowan/myapp:latest",
        equivalent: "docker.io/dmcgowan/myapp:latest",
        expected: None,
    },
    AnyRow {
        reference: "docker.io/mcgowan/myapp:latest",
        equivalent: "docker.io/mcgowan/myapp:latest",
        expected: None,
    },
    AnyRow {
        reference: "dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "docker.io/dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: None,
    },
    AnyRow {
        reference: "docker.io/dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "docker.io/dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: None,
    },
    AnyRow {
        reference: "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: Some("sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
    },
    AnyRow {
        reference: "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        equivalent: "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        expected: Some("sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"),
    },
    AnyRow {
        reference: "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
        equivalent: "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
        expected: None,
    },
    AnyRow {
        reference: "dbcc1",
        equivalent: "docker.io/library/dbcc1",
        expected: None,
    },
];

/// `TestNormalizedSplitHostname`: 11 rows.
const TESTNORMALIZEDSPLITHOSTNAME: &[SplitRow] = &[
    SplitRow {
        input: "test.com/foo",
        domain: "test.com",
        path: "foo",
    },
    SplitRow {
        input: "test_com/foo",
        domain: "docker.io",
        path: "test_com/foo",
    },
    SplitRow {
        input: "docker/migrator",
        domain: "docker.io",
        path: "docker/migrator",
    },
    SplitRow {
        input: "test.com:8080/foo",
        domain: "test.com:8080",
        path: "foo",
    },
    SplitRow {
        input: "test-com:8080/foo",
        domain: "test-com:8080",
        path: "foo",
    },
    SplitRow {
        input: "foo",
        domain: "docker.io",
        path: "library/foo",
    },
    SplitRow {
        input: "xn--n3h.com/foo",
        domain: "xn--n3h.com",
        path: "foo",
    },
    SplitRow {
        input: "xn--n3h.com:18080/foo",
        domain: "xn--n3h.com:18080",
        path: "foo",
    },
    SplitRow {
        input: "docker.io/foo",
        domain: "docker.io",
        path: "library/foo",
    },
    SplitRow {
        input: "docker.io/library/foo",
        domain: "docker.io",
        path: "library/foo",
    },
    SplitRow {
        input: "docker.io/library/foo/bar",
        domain: "docker.io",
        path: "library/foo/bar",
    },
];

/// `TestMatch`: 9 rows.
const TESTMATCH: &[MatchRow] = &[
    MatchRow {
        reference: "foo",
        pattern: "foo/**/ba[rz]",
        expected: false,
    },
    MatchRow {
        reference: "foo/any/bat",
        pattern: "foo/**/ba[rz]",
        expected: false,
    },
    MatchRow {
        reference: "foo/a/bar",
        pattern: "foo/**/ba[rz]",
        expected: true,
    },
    MatchRow {
        reference: "foo/b/baz",
        pattern: "foo/**/ba[rz]",
        expected: true,
    },
    MatchRow {
        reference: "foo/c/baz:tag",
        pattern: "foo/**/ba[rz]",
        expected: true,
    },
    MatchRow {
        reference: "foo/c/baz:tag",
        pattern: "foo/*/baz:tag",
        expected: true,
    },
    MatchRow {
        reference: "foo/c/baz:tag",
        pattern: "foo/c/baz:tag",
        expected: true,
    },
    MatchRow {
        reference: "example.com/foo/c/baz:tag",
        pattern: "*/foo/c/baz",
        expected: true,
    },
    MatchRow {
        reference: "example.com/foo/c/baz:tag",
        pattern: "example.com/foo/c/baz",
        expected: true,
    },
];

/// `TestParseDockerRef`: 11 rows.
const TESTPARSEDOCKERREF: &[DockerRefRow] = &[
    DockerRefRow {
        name: "nothing",
        input: "busybox",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "tag only",
        input: "busybox:latest",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "digest only",
        input: "busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        expected: "docker.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
    },
    DockerRefRow {
        name: "path only",
        input: "library/busybox",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "hostname only",
        input: "docker.io/busybox",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "no tag",
        input: "docker.io/library/busybox",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "no path",
        input: "docker.io/busybox:latest",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "no hostname",
        input: "library/busybox:latest",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "full reference with tag",
        input: "docker.io/library/busybox:latest",
        expected: "docker.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "gcr reference without tag",
        input: "gcr.io/library/busybox",
        expected: "gcr.io/library/busybox:latest",
    },
    DockerRefRow {
        name: "both tag and digest",
        input: "gcr.io/library/busybox:latest@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        expected: "gcr.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
    },
];

/// `TestValidateReferenceName` `validRepoNames`: 27 names.
const TESTVALIDATEREFERENCENAME_VALIDREPONAMES: &[&str] = &[
    "docker/docker",
    "library/debian",
    "debian",
    "localhost/library/debian",
    "localhost/debian",
    "LOCALDOMAIN/library/debian",
    "LOCALDOMAIN/debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
];

/// `TestValidateReferenceName` `invalidRepoNames`: 14 names.
const TESTVALIDATEREFERENCENAME_INVALIDREPONAMES: &[&str] = &[
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
];

/// `TestValidateRemoteName` `validRepositoryNames`: 8 names.
const TESTVALIDATEREMOTENAME_VALIDREPOSITORYNAMES: &[&str] = &[
    "docker/docker",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
];

/// `TestValidateRemoteName` `invalidRepositoryNames`: 13 names.
const TESTVALIDATEREMOTENAME_INVALIDREPOSITORYNAMES: &[&str] = &[
    "docker/Docker",
    "docker///docker",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "-docker/docker",
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
];
