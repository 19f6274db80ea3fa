//! Conformance vectors ported from distribution/reference `regexp_test.go`: every row of TestDomainRegexp,
//! TestFullNameRegexp, TestReferenceRegexp and TestIdentifierRegexp, run against the hand-written matchers in
//! `oci::reference::grammar` that replace upstream's regular expressions.

use oci::reference::grammar;

struct BoolRow {
    input: &'static str,
    r#match: bool,
}

struct RegexpRow {
    input: &'static str,
    r#match: bool,
    subs: &'static [&'static str],
}

#[test]
fn domain_matcher_agrees_with_upstream_table() {
    for row in TESTDOMAINREGEXP {
        assert_eq!(
            grammar::is_domain_and_port(row.input),
            row.r#match,
            "input {:?}",
            row.input
        );
    }
}

#[test]
fn name_matcher_agrees_with_upstream_table() {
    for row in TESTFULLNAMEREGEXP {
        let got = grammar::split_name(row.input);
        assert_eq!(got.is_some(), row.r#match, "input {:?}", row.input);
        if let Some((domain, path)) = got {
            let subs = [domain, path];
            assert_eq!(&subs[..row.subs.len()], row.subs, "input {:?}", row.input);
        }
    }
}

#[test]
fn reference_matcher_agrees_with_upstream_table() {
    for row in TESTREFERENCEREGEXP {
        let got = grammar::split_reference(row.input);
        assert_eq!(got.is_some(), row.r#match, "input {:?}", row.input);
        if let Some((name, tag, digest)) = got {
            let subs = [name, tag, digest];
            assert_eq!(&subs[..row.subs.len()], row.subs, "input {:?}", row.input);
        }
    }
}

#[test]
fn identifier_matcher_agrees_with_upstream_table() {
    for row in TESTIDENTIFIERREGEXP {
        assert_eq!(
            grammar::is_identifier(row.input),
            row.r#match,
            "input {:?}",
            row.input
        );
    }
}

// ---- tables generated from distribution/reference regexp_test.go (every row, in upstream order) ----

/// `TestDomainRegexp`: 30 rows.
const TESTDOMAINREGEXP: &[BoolRow] = &[
    BoolRow {
        input: "test.com",
        r#match: true,
    },
    BoolRow {
        input: "test.com:10304",
        r#match: true,
    },
    BoolRow {
        input: "test.com:http",
        r#match: false,
    },
    BoolRow {
        input: "localhost",
        r#match: true,
    },
    BoolRow {
        input: "localhost:8080",
        r#match: true,
    },
    BoolRow {
        input: "a",
        r#match: true,
    },
    BoolRow {
        input: "a.b",
        r#match: true,
    },
    BoolRow {
        input: "ab.cd.com",
        r#match: true,
    },
    BoolRow {
        input: "a-b.com",
        r#match: true,
    },
    BoolRow {
        input: "-ab.com",
        r#match: false,
    },
    BoolRow {
        input: "ab-.com",
        r#match: false,
    },
    BoolRow {
        input: "ab.c-om",
        r#match: true,
    },
    BoolRow {
        input: "ab.-com",
        r#match: false,
    },
    BoolRow {
        input: "ab.com-",
        r#match: false,
    },
    BoolRow {
        input: "0101.com",
        r#match: true,
    },
    BoolRow {
        input: "001a.com",
        r#match: true,
    },
    BoolRow {
        input: "b.gbc.io:443",
        r#match: true,
    },
    BoolRow {
        input: "b.gbc.io",
        r#match: true,
    },
    BoolRow {
        input: "xn--n3h.com",
        r#match: true,
    },
    BoolRow {
        input: "Asdf.com",
        r#match: true,
    },
    BoolRow {
        input: "192.168.1.1:75050",
        r#match: true,
    },
    BoolRow {
        input: "192.168.1.1:750050",
        r#match: true,
    },
    BoolRow {
        input: "[fd00:1:2::3]:75050",
        r#match: true,
    },
    BoolRow {
        input: "[fd00:1:2::3]75050",
        r#match: false,
    },
    BoolRow {
        input: "[fd00:1:2::3]::75050",
        r#match: false,
    },
    BoolRow {
        input: "[fd00:1:2::3%eth0]:75050",
        r#match: false,
    },
    BoolRow {
        input: "[fd00123123123]:75050",
        r#match: true,
    },
    BoolRow {
        input: "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050",
        r#match: true,
    },
    BoolRow {
        input: "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505",
        r#match: true,
    },
    BoolRow {
        input: "fd00:1:2::3:75050",
        r#match: false,
    },
];

/// `TestFullNameRegexp`: 63 rows.
const TESTFULLNAMEREGEXP: &[RegexpRow] = &[
    RegexpRow {
        input: "",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "short",
        r#match: true,
        subs: &["", "short"],
    },
    RegexpRow {
        input: "simple/name",
        r#match: true,
        subs: &["simple", "name"],
    },
    RegexpRow {
        input: "library/ubuntu",
        r#match: true,
        subs: &["library", "ubuntu"],
    },
    RegexpRow {
        input: "docker/stevvooe/app",
        r#match: true,
        subs: &["docker", "stevvooe/app"],
    },
    RegexpRow {
        input: "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
        r#match: true,
        subs: &["aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb"],
    },
    RegexpRow {
        input: "aa/aa/bb/bb/bb",
        r#match: true,
        subs: &["aa", "aa/bb/bb/bb"],
    },
    RegexpRow {
        input: "a/a/a/a",
        r#match: true,
        subs: &["a", "a/a/a"],
    },
    RegexpRow {
        input: "a/a/a/a/",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "a//a/a",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "a",
        r#match: true,
        subs: &["", "a"],
    },
    RegexpRow {
        input: "a/aa",
        r#match: true,
        subs: &["a", "aa"],
    },
    RegexpRow {
        input: "a/aa/a",
        r#match: true,
        subs: &["a", "aa/a"],
    },
    RegexpRow {
        input: "foo.com",
        r#match: true,
        subs: &["", "foo.com"],
    },
    RegexpRow {
        input: "foo.com/",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo.com:8080/bar",
        r#match: true,
        subs: &["foo.com:8080", "bar"],
    },
    RegexpRow {
        input: "foo.com:http/bar",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo.com/bar",
        r#match: true,
        subs: &["foo.com", "bar"],
    },
    RegexpRow {
        input: "foo.com/bar/baz",
        r#match: true,
        subs: &["foo.com", "bar/baz"],
    },
    RegexpRow {
        input: "localhost:8080/bar",
        r#match: true,
        subs: &["localhost:8080", "bar"],
    },
    RegexpRow {
        input: "sub-dom1.foo.com/bar/baz/quux",
        r#match: true,
        subs: &["sub-dom1.foo.com", "bar/baz/quux"],
    },
    RegexpRow {
        input: "blog.foo.com/bar/baz",
        r#match: true,
        subs: &["blog.foo.com", "bar/baz"],
    },
    RegexpRow {
        input: "a^a",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "aa/asdf$$^/aa",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "asdf$$^/aa",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "aa-a/a",
        r#match: true,
        subs: &["aa-a", "a"],
    },
    RegexpRow {
        input: "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        r#match: true,
        subs: &[
            "a",
            "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a",
        ],
    },
    RegexpRow {
        input: "a-/a/a/a",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo.com/a-/a/a",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "-foo/bar",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo/bar-",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo-/bar",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo/-bar",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "_foo/bar",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo_bar",
        r#match: true,
        subs: &["", "foo_bar"],
    },
    RegexpRow {
        input: "foo_bar.com",
        r#match: true,
        subs: &["", "foo_bar.com"],
    },
    RegexpRow {
        input: "foo_bar.com:8080",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo_bar.com:8080/app",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "foo.com/foo_bar",
        r#match: true,
        subs: &["foo.com", "foo_bar"],
    },
    RegexpRow {
        input: "____/____",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "_docker/_docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "docker_/docker_",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "b.gcr.io/test.example.com/my-app",
        r#match: true,
        subs: &["b.gcr.io", "test.example.com/my-app"],
    },
    RegexpRow {
        input: "xn--n3h.com/myimage",
        r#match: true,
        subs: &["xn--n3h.com", "myimage"],
    },
    RegexpRow {
        input: "xn--7o8h.com/myimage",
        r#match: true,
        subs: &["xn--7o8h.com", "myimage"],
    },
    RegexpRow {
        input: "example.com/xn--7o8h.com/myimage",
        r#match: true,
        subs: &["example.com", "xn--7o8h.com/myimage"],
    },
    RegexpRow {
        input: "example.com/some_separator__underscore/myimage",
        r#match: true,
        subs: &["example.com", "some_separator__underscore/myimage"],
    },
    RegexpRow {
        input: "example.com/__underscore/myimage",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "example.com/..dots/myimage",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "example.com/.dots/myimage",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "example.com/nodouble..dots/myimage",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "example.com/nodouble..dots/myimage",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "docker./docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: ".docker/docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "docker-/docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "-docker/docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "do..cker/docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "do__cker:8080/docker",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "do__cker/docker",
        r#match: true,
        subs: &["", "do__cker/docker"],
    },
    RegexpRow {
        input: "b.gcr.io/test.example.com/my-app",
        r#match: true,
        subs: &["b.gcr.io", "test.example.com/my-app"],
    },
    RegexpRow {
        input: "registry.io/foo/project--id.module--name.ver---sion--name",
        r#match: true,
        subs: &[
            "registry.io",
            "foo/project--id.module--name.ver---sion--name",
        ],
    },
    RegexpRow {
        input: "Asdf.com/foo/bar",
        r#match: true,
        subs: &[],
    },
    RegexpRow {
        input: "Foo/FarB",
        r#match: false,
        subs: &[],
    },
];

/// `TestReferenceRegexp`: 12 rows.
const TESTREFERENCEREGEXP: &[RegexpRow] = &[
    RegexpRow {
        input: "registry.com:8080/myapp:tag",
        r#match: true,
        subs: &["registry.com:8080/myapp", "tag", ""],
    },
    RegexpRow {
        input: "registry.com:8080/myapp@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: true,
        subs: &[
            "registry.com:8080/myapp",
            "",
            "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        ],
    },
    RegexpRow {
        input: "registry.com:8080/myapp:tag2@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: true,
        subs: &[
            "registry.com:8080/myapp",
            "tag2",
            "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        ],
    },
    RegexpRow {
        input: "registry.com:8080/myapp@sha256:badbadbadbad",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "registry.com:8080/myapp:invalid~tag",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "bad_hostname.com:8080/myapp:tag",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "localhost:8080@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: true,
        subs: &[
            "localhost",
            "8080",
            "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        ],
    },
    RegexpRow {
        input: "localhost:8080/name@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: true,
        subs: &[
            "localhost:8080/name",
            "",
            "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        ],
    },
    RegexpRow {
        input: "localhost:http/name@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "localhost@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        r#match: true,
        subs: &[
            "localhost",
            "",
            "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912",
        ],
    },
    RegexpRow {
        input: "registry.com:8080/myapp@bad",
        r#match: false,
        subs: &[],
    },
    RegexpRow {
        input: "registry.com:8080/myapp@2bad",
        r#match: false,
        subs: &[],
    },
];

/// `TestIdentifierRegexp`: 5 rows.
const TESTIDENTIFIERREGEXP: &[BoolRow] = &[
    BoolRow {
        input: "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
        r#match: true,
    },
    BoolRow {
        input: "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
        r#match: false,
    },
    BoolRow {
        input: "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
        r#match: false,
    },
    BoolRow {
        input: "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
        r#match: false,
    },
    BoolRow {
        input: "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
        r#match: false,
    },
];
