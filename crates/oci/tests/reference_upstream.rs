//! Conformance vectors ported from distribution/reference `reference_test.go`: every row of TestReferenceParse,
//! TestWithNameFailure, TestDomainAndPath, TestSerialization, TestWithTag, TestWithDigest and TestParseNamed.
//! Expected errors are upstream's error texts (each Go error variable maps to exactly one text).

use oci::{Digest, Reference};

struct ParseRow {
    input: &'static str,
    err: Option<&'static str>,
    repository: &'static str,
    domain: &'static str,
    tag: Option<&'static str>,
    digest: Option<&'static str>,
}

struct ErrRow {
    input: &'static str,
    err: Option<&'static str>,
}

struct SplitRow {
    input: &'static str,
    domain: &'static str,
    path: &'static str,
}

struct SerialRow {
    description: &'static str,
    input: &'static str,
    name: &'static str,
    tag: Option<&'static str>,
    digest: Option<&'static str>,
    err: Option<&'static str>,
}

struct CombineRow {
    name: &'static str,
    digest: Option<&'static str>,
    tag: Option<&'static str>,
    combined: &'static str,
}

struct NamedRow {
    input: &'static str,
    domain: &'static str,
    path: &'static str,
    err: Option<&'static str>,
}

/// The one deliberate deviation: upstream's test binary links only sha256, so a sha512 digest is
/// `unsupported digest algorithm` there. berth links sha512 like kubelet (`pkg/util/parsers`), so it parses.
const SHA512_ROW: &str = "validname@sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

#[test]
fn reference_parse_matches_upstream_table() {
    for row in TESTREFERENCEPARSE {
        let got = Reference::parse(row.input);
        let want_err = if row.input == SHA512_ROW {
            None
        } else {
            row.err
        };
        match (want_err, got) {
            (Some(want), Err(e)) => assert_eq!(e.to_string(), want, "input {:?}", row.input),
            (Some(want), Ok(r)) => {
                panic!("input {:?}: parsed as {r}, want error {want:?}", row.input)
            }
            (None, Err(e)) => panic!("input {:?}: unexpected error {e}", row.input),
            (None, Ok(r)) => {
                if row.input == SHA512_ROW {
                    assert_eq!(r.name(), "validname");
                    assert_eq!(r.digest().unwrap().algorithm(), oci::Algorithm::Sha512);
                    continue;
                }
                assert_eq!(r.to_string(), row.input, "String()");
                assert_eq!(r.name(), row.repository, "Name() of {:?}", row.input);
                assert_eq!(r.domain(), row.domain, "Domain() of {:?}", row.input);
                assert_eq!(r.tag(), row.tag, "Tag() of {:?}", row.input);
                assert_eq!(
                    r.digest().map(|d| d.to_string()).as_deref(),
                    row.digest,
                    "Digest() of {:?}",
                    row.input
                );
            }
        }
    }
}

#[test]
fn with_name_rejects_upstream_failure_table() {
    for row in TESTWITHNAMEFAILURE {
        let err = Reference::with_name(row.input).expect_err(row.input);
        assert_eq!(
            Some(err.to_string().as_str()),
            row.err,
            "input {:?}",
            row.input
        );
    }
}

#[test]
fn with_name_splits_domain_and_path_per_upstream_table() {
    for row in TESTDOMAINANDPATH {
        let r = Reference::with_name(row.input).unwrap();
        assert_eq!(
            (r.domain(), r.path()),
            (row.domain, row.path),
            "input {:?}",
            row.input
        );
    }
}

#[test]
fn serde_matches_upstream_serialization_table() {
    for row in TESTSERIALIZATION {
        let json =
            serde_json::json!({ "Description": row.description, "Field": row.input }).to_string();
        #[derive(serde::Deserialize, serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct S {
            description: String,
            field: Reference,
        }
        match (serde_json::from_str::<S>(&json), row.err) {
            (Err(e), Some(want)) => {
                assert!(e.to_string().contains(want), "{}: {e}", row.description)
            }
            (Err(e), None) => panic!("{}: {e}", row.description),
            (Ok(_), Some(want)) => panic!("{}: expected {want}", row.description),
            (Ok(s), None) => {
                assert_eq!(s.description, row.description);
                assert_eq!(s.field.name(), row.name);
                assert_eq!(s.field.tag(), row.tag);
                assert_eq!(
                    s.field.digest().map(|d| d.to_string()).as_deref(),
                    row.digest
                );
                assert_eq!(serde_json::to_string(&s).unwrap(), json, "re-serialised");
            }
        }
    }
}

/// Upstream's WithTag/WithDigest rows use `sha256:1234567890098765432112345667890098765`, which only
/// `WithDigest`'s pattern check accepts; go-digest (and so our [`Digest`] type, which cannot hold an invalid
/// digest) rejects it as too short. Those rows are run with that digest padded to 64 hex digits, and the
/// short form is asserted to be rejected by digest parsing.
fn row_digest(s: &str) -> Digest {
    assert_eq!(
        s.parse::<Digest>().unwrap_err().to_string(),
        "invalid checksum digest length",
        "upstream's short test digest is not a valid go-digest digest"
    );
    let (alg, hex) = s.split_once(':').unwrap();
    format!("{alg}:{hex:0<64}").parse().unwrap()
}

fn combined_with_padded_digest(row: &CombineRow) -> String {
    match row.digest {
        Some(d) => row.combined.replace(d, &row_digest(d).to_string()),
        None => row.combined.to_owned(),
    }
}

#[test]
fn with_tag_matches_upstream_table() {
    for row in TESTWITHTAG {
        let mut named = Reference::with_name(row.name).unwrap();
        if let Some(d) = row.digest {
            named = named.with_digest(row_digest(d));
        }
        let tagged = named.with_tag(row.tag.unwrap()).unwrap();
        assert_eq!(tagged.to_string(), combined_with_padded_digest(row));
    }
}

#[test]
fn with_digest_matches_upstream_table() {
    for row in TESTWITHDIGEST {
        let mut named = Reference::with_name(row.name).unwrap();
        if let Some(t) = row.tag {
            named = named.with_tag(t).unwrap();
        }
        let digested = named.with_digest(row_digest(row.digest.unwrap()));
        assert_eq!(digested.to_string(), combined_with_padded_digest(row));
    }
}

#[test]
fn parse_named_requires_canonical_form_per_upstream_table() {
    for row in TESTPARSENAMED {
        match (Reference::parse_named(row.input), row.err) {
            (Ok(r), None) => assert_eq!(
                (r.domain(), r.path()),
                (row.domain, row.path),
                "input {:?}",
                row.input
            ),
            (Err(e), Some(want)) => assert_eq!(e.to_string(), want, "input {:?}", row.input),
            (got, want) => panic!("input {:?}: got {got:?}, want error {want:?}", row.input),
        }
    }
}

// ---- tables generated from distribution/reference reference_test.go (every row, in upstream order) ----

/// `TestReferenceParse`: 48 rows.
const TESTREFERENCEPARSE: &[ParseRow] = &[
    ParseRow {
        input: "test_com",
        err: None,
        repository: "test_com",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "test.com:tag",
        err: None,
        repository: "test.com",
        domain: "",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "test.com:5000",
        err: None,
        repository: "test.com",
        domain: "",
        tag: Some("5000"),
        digest: None,
    },
    ParseRow {
        input: "test.com/repo:tag",
        err: None,
        repository: "test.com/repo",
        domain: "test.com",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "test:5000/repo",
        err: None,
        repository: "test:5000/repo",
        domain: "test:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "test:5000/repo:tag",
        err: None,
        repository: "test:5000/repo",
        domain: "test:5000",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "test:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: None,
        repository: "test:5000/repo",
        domain: "test:5000",
        tag: None,
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    },
    ParseRow {
        input: "test:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: None,
        repository: "test:5000/repo",
        domain: "test:5000",
        tag: Some("tag"),
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    },
    ParseRow {
        input: "test:5000/repo",
        err: None,
        repository: "test:5000/repo",
        domain: "test:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "",
        err: Some("repository name must have at least one component"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: ":justtag",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "repo@sha256:ffffffffffffffffffffffffffffffffff",
        err: Some("invalid checksum digest length"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: Some("unsupported digest algorithm"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "validname@sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: Some("unsupported digest algorithm"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "Uppercase:tag",
        err: Some("repository name must be lowercase"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "test:5000/Uppercase/lowercase:tag",
        err: Some("repository name must be lowercase"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "lowercase:Uppercase",
        err: None,
        repository: "lowercase",
        domain: "",
        tag: Some("Uppercase"),
        digest: None,
    },
    ParseRow {
        input: "domain/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:tag",
        err: Some("repository name must not be more than 255 characters"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a:tag-puts-this-over-max",
        err: None,
        repository: "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        domain: "a",
        tag: Some("tag-puts-this-over-max"),
        digest: None,
    },
    ParseRow {
        input: "aa/asdf$$^/aa",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "sub-dom1.foo.com/bar/baz/quux",
        err: None,
        repository: "sub-dom1.foo.com/bar/baz/quux",
        domain: "sub-dom1.foo.com",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        err: None,
        repository: "sub-dom1.foo.com/bar/baz/quux",
        domain: "sub-dom1.foo.com",
        tag: Some("some-long-tag"),
        digest: None,
    },
    ParseRow {
        input: "b.gcr.io/test.example.com/my-app:test.example.com",
        err: None,
        repository: "b.gcr.io/test.example.com/my-app",
        domain: "b.gcr.io",
        tag: Some("test.example.com"),
        digest: None,
    },
    ParseRow {
        input: "xn--n3h.com/myimage:xn--n3h.com",
        err: None,
        repository: "xn--n3h.com/myimage",
        domain: "xn--n3h.com",
        tag: Some("xn--n3h.com"),
        digest: None,
    },
    ParseRow {
        input: "xn--7o8h.com/myimage:xn--7o8h.com@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: None,
        repository: "xn--7o8h.com/myimage",
        domain: "xn--7o8h.com",
        tag: Some("xn--7o8h.com"),
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    },
    ParseRow {
        input: "foo_bar.com:8080",
        err: None,
        repository: "foo_bar.com",
        domain: "",
        tag: Some("8080"),
        digest: None,
    },
    ParseRow {
        input: "foo/foo_bar.com:8080",
        err: None,
        repository: "foo/foo_bar.com",
        domain: "foo",
        tag: Some("8080"),
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1",
        err: None,
        repository: "192.168.1.1",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1:tag",
        err: None,
        repository: "192.168.1.1",
        domain: "",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1:5000",
        err: None,
        repository: "192.168.1.1",
        domain: "",
        tag: Some("5000"),
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1/repo",
        err: None,
        repository: "192.168.1.1/repo",
        domain: "192.168.1.1",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1:5000/repo",
        err: None,
        repository: "192.168.1.1:5000/repo",
        domain: "192.168.1.1:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "192.168.1.1:5000/repo:5050",
        err: None,
        repository: "192.168.1.1:5000/repo",
        domain: "192.168.1.1:5000",
        tag: Some("5050"),
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]:5000",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]:tag",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]/repo",
        err: None,
        repository: "[2001:db8::1]/repo",
        domain: "[2001:db8::1]",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[2001:db8:1:2:3:4:5:6]/repo:tag",
        err: None,
        repository: "[2001:db8:1:2:3:4:5:6]/repo",
        domain: "[2001:db8:1:2:3:4:5:6]",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]:5000/repo",
        err: None,
        repository: "[2001:db8::1]:5000/repo",
        domain: "[2001:db8::1]:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]:5000/repo:tag",
        err: None,
        repository: "[2001:db8::1]:5000/repo",
        domain: "[2001:db8::1]:5000",
        tag: Some("tag"),
        digest: None,
    },
    ParseRow {
        input: "[2001:db8::1]:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: None,
        repository: "[2001:db8::1]:5000/repo",
        domain: "[2001:db8::1]:5000",
        tag: None,
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    },
    ParseRow {
        input: "[2001:db8::1]:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: None,
        repository: "[2001:db8::1]:5000/repo",
        domain: "[2001:db8::1]:5000",
        tag: Some("tag"),
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    },
    ParseRow {
        input: "[2001:db8::]:5000/repo",
        err: None,
        repository: "[2001:db8::]:5000/repo",
        domain: "[2001:db8::]:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[::1]:5000/repo",
        err: None,
        repository: "[::1]:5000/repo",
        domain: "[::1]:5000",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[fe80::1%eth0]:5000/repo",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "[fe80::1%@invalidzone]:5000/repo",
        err: Some("invalid reference format"),
        repository: "",
        domain: "",
        tag: None,
        digest: None,
    },
    ParseRow {
        input: "example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:tag",
        err: None,
        repository: "example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        domain: "example.com",
        tag: Some("tag"),
        digest: None,
    },
];

/// `TestWithNameFailure`: 7 rows.
const TESTWITHNAMEFAILURE: &[ErrRow] = &[
    ErrRow {
        input: "",
        err: Some("invalid reference format"),
    },
    ErrRow {
        input: ":justtag",
        err: Some("invalid reference format"),
    },
    ErrRow {
        input: "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: Some("invalid reference format"),
    },
    ErrRow {
        input: "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        err: Some("invalid reference format"),
    },
    ErrRow {
        input: "example.com/repo:tag",
        err: Some("invalid reference format"),
    },
    ErrRow {
        input: "example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        err: Some("repository name must not be more than 255 characters"),
    },
    ErrRow {
        input: "aa/asdf$$^/aa",
        err: Some("invalid reference format"),
    },
];

/// `TestDomainAndPath`: 6 rows.
const TESTDOMAINANDPATH: &[SplitRow] = &[
    SplitRow {
        input: "test.com/foo",
        domain: "test.com",
        path: "foo",
    },
    SplitRow {
        input: "test_com/foo",
        domain: "",
        path: "test_com/foo",
    },
    SplitRow {
        input: "test:8080/foo",
        domain: "test:8080",
        path: "foo",
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
        input: "xn--n3h.com:18080/foo",
        domain: "xn--n3h.com:18080",
        path: "foo",
    },
];

/// `TestSerialization`: 4 rows.
const TESTSERIALIZATION: &[SerialRow] = &[
    SerialRow {
        description: "empty value",
        input: "",
        name: "",
        tag: None,
        digest: None,
        err: Some("repository name must have at least one component"),
    },
    SerialRow {
        description: "just a name",
        input: "example.com:8000/named",
        name: "example.com:8000/named",
        tag: None,
        digest: None,
        err: None,
    },
    SerialRow {
        description: "name with a tag",
        input: "example.com:8000/named:tagged",
        name: "example.com:8000/named",
        tag: Some("tagged"),
        digest: None,
        err: None,
    },
    SerialRow {
        description: "name with digest",
        input: "other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112",
        name: "other.com/named",
        tag: None,
        digest: Some("sha256:1234567890098765432112345667890098765432112345667890098765432112"),
        err: None,
    },
];

/// `TestWithTag`: 5 rows.
const TESTWITHTAG: &[CombineRow] = &[
    CombineRow {
        name: "test.com/foo",
        digest: None,
        tag: Some("tag"),
        combined: "test.com/foo:tag",
    },
    CombineRow {
        name: "foo",
        digest: None,
        tag: Some("tag2"),
        combined: "foo:tag2",
    },
    CombineRow {
        name: "test.com:8000/foo",
        digest: None,
        tag: Some("tag4"),
        combined: "test.com:8000/foo:tag4",
    },
    CombineRow {
        name: "test.com:8000/foo",
        digest: None,
        tag: Some("TAG5"),
        combined: "test.com:8000/foo:TAG5",
    },
    CombineRow {
        name: "test.com:8000/foo",
        digest: Some("sha256:1234567890098765432112345667890098765"),
        tag: Some("TAG5"),
        combined: "test.com:8000/foo:TAG5@sha256:1234567890098765432112345667890098765",
    },
];

/// `TestWithDigest`: 4 rows.
const TESTWITHDIGEST: &[CombineRow] = &[
    CombineRow {
        name: "test.com/foo",
        digest: Some("sha256:1234567890098765432112345667890098765"),
        tag: None,
        combined: "test.com/foo@sha256:1234567890098765432112345667890098765",
    },
    CombineRow {
        name: "foo",
        digest: Some("sha256:1234567890098765432112345667890098765"),
        tag: None,
        combined: "foo@sha256:1234567890098765432112345667890098765",
    },
    CombineRow {
        name: "test.com:8000/foo",
        digest: Some("sha256:1234567890098765432112345667890098765"),
        tag: None,
        combined: "test.com:8000/foo@sha256:1234567890098765432112345667890098765",
    },
    CombineRow {
        name: "test.com:8000/foo",
        digest: Some("sha256:1234567890098765432112345667890098765"),
        tag: Some("latest"),
        combined: "test.com:8000/foo:latest@sha256:1234567890098765432112345667890098765",
    },
];

/// `TestParseNamed`: 8 rows.
const TESTPARSENAMED: &[NamedRow] = &[
    NamedRow {
        input: "test.com/foo",
        domain: "test.com",
        path: "foo",
        err: None,
    },
    NamedRow {
        input: "test:8080/foo",
        domain: "test:8080",
        path: "foo",
        err: None,
    },
    NamedRow {
        input: "test_com/foo",
        domain: "",
        path: "",
        err: Some("repository name must be canonical"),
    },
    NamedRow {
        input: "test.com",
        domain: "",
        path: "",
        err: Some("repository name must be canonical"),
    },
    NamedRow {
        input: "foo",
        domain: "",
        path: "",
        err: Some("repository name must be canonical"),
    },
    NamedRow {
        input: "library/foo",
        domain: "",
        path: "",
        err: Some("repository name must be canonical"),
    },
    NamedRow {
        input: "docker.io/library/foo",
        domain: "docker.io",
        path: "library/foo",
        err: None,
    },
    NamedRow {
        input: "docker.io/foo",
        domain: "",
        path: "",
        err: Some("repository name must be canonical"),
    },
];
