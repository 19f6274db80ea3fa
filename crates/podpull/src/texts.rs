//! Every text a user reads from podpull: kubelet's Event reasons and message templates (kept byte-for-byte, with
//! Go's `%q` quoting and `Duration` printing), the aggregate of failures from several credentials, and berth's
//! own TLS failure text (host:port, its role, the trust sources checked and the `berth trust` fix). It owns
//! wording only and must never decide anything, and never receive a credential value: its inputs are image
//! names, labels of where a credential came from, and already-redacted error texts.
//!
//! Go's `%q` and `Duration.String()` are reproduced by hand: no crate formats exactly like Go's `strconv.Quote`
//! and `time.Duration`, and users compare these texts with what kubelet prints.

use std::time::Duration;

use registry::{Role, TlsFailure};

/// Event reasons (kubelet `pkg/kubelet/events/event.go`, plus `FailedToRetrieveImagePullSecret` from
/// `kubelet_pods.go` and berth's TLS reason).
pub mod reason {
    /// Normal: a pull starts.
    pub const PULLING: &str = "Pulling";
    /// Normal: a pull finished, or the image is already present.
    pub const PULLED: &str = "Pulled";
    /// Warning: a pull failed (`Failed to pull image ...`) or the container cannot start (`Error: ...`).
    pub const FAILED: &str = "Failed";
    /// Warning: the image name is invalid or the local image cannot be inspected.
    pub const INSPECT_FAILED: &str = "InspectFailed";
    /// Warning: policy Never and the image is absent (or not accessible to the pod).
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    /// Normal: the pull is in back-off.
    pub const BACK_OFF: &str = "BackOff";
    /// Warning: some `imagePullSecrets` could not be read.
    pub const FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET: &str = "FailedToRetrieveImagePullSecret";
    /// Warning (berth): the TLS handshake with the registry, its token server or its blob CDN failed.
    pub const REGISTRY_TLS_FAILED: &str = "RegistryTLSFailed";
}

/// Container waiting reasons (kubelet `pkg/kubelet/images/types.go`).
pub mod waiting {
    /// The last pull failed.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// The pull is in back-off after a failure.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// Policy Never and the image is absent (or not accessible to the pod).
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    /// The image name does not parse.
    pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";
    /// The local image could not be inspected.
    pub const IMAGE_INSPECT_ERROR: &str = "ImageInspectError";
    /// A present image could not be prepared (unpacked) for the container.
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    /// berth: the container spec carries a pull policy the API would never accept.
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
}

/// Go `strconv.Quote` (`%q`): `"` and `\` escaped, `\a \b \f \n \r \t \v`, other control characters as `\xNN`
/// (below 0x80) or `\uNNNN` / `\UNNNNNNNN`; printable characters, non-ASCII included, kept as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `Duration.String()` of `d.Truncate(time.Millisecond)`, as kubelet prints pull times (`1.234s`,
/// `500ms`, `1m1.5s`, `0s`).
pub fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, frac) = (rem / 1000, rem % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// `Unable to retrieve some image pull secrets (a, b); attempting to pull the image may not succeed.`
pub fn failed_to_retrieve_secrets(names: &[String]) -> String {
    format!(
        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
        names.join(", ")
    )
}

/// `couldn't parse image name "x": <err>` (kubelet `parsers.ParseImageName`).
pub fn couldnt_parse_image_name(image: &str, error: &str) -> String {
    format!("couldn't parse image name {}: {error}", go_quote(image))
}

/// `Failed to apply default image tag "x": <err>`.
pub fn failed_to_apply_default_tag(image: &str, error: &str) -> String {
    format!(
        "Failed to apply default image tag {}: {error}",
        go_quote(image)
    )
}

/// `Failed to inspect image "x": <err>`.
pub fn failed_to_inspect(image: &str, error: &str) -> String {
    format!("Failed to inspect image {}: {error}", go_quote(image))
}

/// `Container image "x" is not present with pull policy of Never` (also used, deliberately identical, when a
/// present image may not be used by the pod under KEP-2535).
pub fn never_pull(image: &str) -> String {
    format!(
        "Container image {} is not present with pull policy of Never",
        go_quote(image)
    )
}

/// `Container image "x" already present on machine`, with KEP-2535's `and can be accessed by the pod` when
/// the pod's credentials were verified.
pub fn already_present(image: &str, verified: bool) -> String {
    if verified {
        format!(
            "Container image {} already present on machine and can be accessed by the pod",
            go_quote(image)
        )
    } else {
        format!(
            "Container image {} already present on machine",
            go_quote(image)
        )
    }
}

/// `Back-off pulling image "x"` (the BackOff Event; the waiting message adds the previous error).
pub fn back_off(image: &str) -> String {
    format!("Back-off pulling image {}", go_quote(image))
}

/// The ImagePullBackOff waiting message: `Back-off pulling image "x": ErrImagePull: <previous message>`
/// (kubernetes PR #127918), or the bare Event text when no previous failure is known.
pub fn back_off_waiting(image: &str, previous: Option<(&str, &str)>) -> String {
    match previous {
        Some((reason, message)) => format!("{}: {reason}: {message}", back_off(image)),
        None => back_off(image),
    }
}

/// `Pulling image "x"`.
pub fn pulling(image: &str) -> String {
    format!("Pulling image {}", go_quote(image))
}

/// `Successfully pulled image "x" in 1.234s (1.5s including waiting). Image size: N bytes.`
pub fn pulled(image: &str, pulling: Duration, including_waiting: Duration, size: u64) -> String {
    format!(
        "Successfully pulled image {} in {} ({} including waiting). Image size: {size} bytes.",
        go_quote(image),
        go_duration_ms(pulling),
        go_duration_ms(including_waiting.max(pulling))
    )
}

/// `Failed to pull image "x": <err>`.
pub fn failed_to_pull(image: &str, error: &str) -> String {
    format!("Failed to pull image {}: {error}", go_quote(image))
}

/// kuberuntime's `Error: <reason>` Event when the container cannot be created.
pub fn container_error(reason: &str) -> String {
    format!("Error: {reason}")
}

/// One refused credential, for [`aggregate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Where the credential came from (`secret team/regcred key "reg:5000" user "alice"`), or `anonymous`.
    pub label: String,
    /// The registry's refusal, rendered (no secret).
    pub message: String,
}

/// kubelet's `utilerrors.NewAggregate` over the attempts: identical messages are de-duplicated, one distinct
/// message is shown bare, several as `[e1, e2]`. berth appends which credentials produced each message
/// (`(tried secret a/b key ..., secret c/d key ...)`); an anonymous attempt adds nothing, as kubelet shows it.
pub fn aggregate(refusals: &[Refusal]) -> String {
    let mut distinct: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in refusals {
        match distinct.iter_mut().find(|(m, _)| *m == r.message) {
            Some((_, labels)) => labels.push(&r.label),
            None => distinct.push((&r.message, vec![&r.label])),
        }
    }
    let render = |(message, labels): &(&str, Vec<&str>)| -> String {
        let tried: Vec<&str> = labels
            .iter()
            .copied()
            .filter(|l| *l != image::Attempt::anonymous().label)
            .collect();
        if tried.is_empty() {
            message.to_string()
        } else {
            format!("{message} (tried {})", tried.join(", "))
        }
    };
    match distinct.as_slice() {
        [] => "no credential was tried".to_string(),
        [one] => render(one),
        many => format!(
            "[{}]",
            many.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What a host is to the pull, in the words of a TLS failure.
fn role_words(role: Role) -> &'static str {
    match role {
        Role::Registry => "the registry",
        Role::TokenRealm => "the registry's token server",
        Role::RedirectTarget => "the blob CDN the registry redirected the layer download to",
    }
}

/// berth's TLS failure text for the agent: the Go-style verifier phrase (`x509: certificate signed by unknown
/// authority` when that is the cause, so searches find it), the host:port and whether it is the registry, its
/// token server or the blob CDN, the trust sources checked, and the cluster-wide fix:
/// `berth trust fetch HOST:PORT`, then `berth trust add --cluster HOST:PORT --fingerprint sha256:...`.
pub fn tls_failure(failure: &TlsFailure) -> String {
    let host = &failure.host;
    let full = failure.to_string();
    // The registry crate renders "tls: failed to verify certificate of H (role): <cause>[; trust sources
    // consulted: ...]; fix: <local fix>". Keep the cause (the verifier's words), replace the rest.
    let prefix = format!(
        "tls: failed to verify certificate of {host} ({}): ",
        failure.role
    );
    let suffix = format!("; fix: {}", failure.hint());
    let cause = full
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(&suffix))
        .unwrap_or(&full);
    let cause = match cause.rfind("; trust sources consulted: ") {
        Some(i) => &cause[..i],
        None => cause,
    };
    let sources = if failure.sources.is_empty() {
        "none configured".to_string()
    } else {
        failure.sources.join(", ")
    };
    let fingerprint = failure
        .presented
        .as_ref()
        .and_then(|p| p.top_ca_sha256.as_deref())
        .map(|fp| format!("sha256:{fp}"));
    let add = match &fingerprint {
        Some(fp) => format!("`berth trust add --cluster {host} --fingerprint {fp}`"),
        None => format!(
            "`berth trust add --cluster {host} --fingerprint sha256:<the CA fingerprint it prints>`"
        ),
    };
    let fix = match failure.class {
        registry::TlsErrorClass::UnknownAuthority
        | registry::TlsErrorClass::MissingIntermediate
        | registry::TlsErrorClass::SelfSignedLeaf => format!(
            "run `berth trust fetch {host}` and check the fingerprints with the registry's administrator, then trust \
             its CA for this host:port on every node with {add}; pulls retry on the next back-off, no restart needed"
        ),
        _ => failure.hint(),
    };
    format!(
        "tls: failed to verify certificate of {host} ({}): {cause}; trust sources checked for {host}: {sources}; fix: {fix}",
        role_words(failure.role)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::{HostPort, TlsErrorClass};

    #[test]
    fn go_quote_matches_strconv_quote() {
        // Expected values are Go's strconv.Quote outputs.
        let table = [
            ("busybox", r#""busybox""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\there\n", r#""tab\there\n""#),
            ("\u{1}\u{7f}", r#""\x01\x7f""#),
            ("ünïcode", "\"ünïcode\""),
            ("\u{85}", r#""\u0085""#),
            ("\u{7}\u{8}\u{b}\u{c}\r", r#""\a\b\v\f\r""#),
        ];
        for (input, want) in table {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn durations_print_like_go_truncated_to_milliseconds() {
        let table = [
            (Duration::from_micros(1_234_567), "1.234s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(2000), "2s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(61_500), "1m1.5s"),
            (Duration::from_millis(3_600_000), "1h0m0s"),
            (Duration::from_millis(3_723_004), "1h2m3.004s"),
            (Duration::from_micros(999), "0s"),
        ];
        for (d, want) in table {
            assert_eq!(go_duration_ms(d), want, "{d:?}");
        }
    }

    #[test]
    fn kubelet_event_texts_are_exact() {
        assert_eq!(pulling("busybox"), r#"Pulling image "busybox""#);
        assert_eq!(
            pulled(
                "reg:5000/team/app:v1",
                Duration::from_micros(1_234_567),
                Duration::from_micros(1_500_900),
                2048
            ),
            r#"Successfully pulled image "reg:5000/team/app:v1" in 1.234s (1.5s including waiting). Image size: 2048 bytes."#
        );
        // A follower of a shared pull may have waited less than the pull took: never print less.
        assert_eq!(
            pulled(
                "a",
                Duration::from_millis(900),
                Duration::from_millis(10),
                1
            ),
            r#"Successfully pulled image "a" in 900ms (900ms including waiting). Image size: 1 bytes."#
        );
        assert_eq!(
            already_present("nginx:1.27", false),
            r#"Container image "nginx:1.27" already present on machine"#
        );
        assert_eq!(
            already_present("nginx:1.27", true),
            r#"Container image "nginx:1.27" already present on machine and can be accessed by the pod"#
        );
        assert_eq!(
            never_pull("nginx"),
            r#"Container image "nginx" is not present with pull policy of Never"#
        );
        assert_eq!(back_off("nginx"), r#"Back-off pulling image "nginx""#);
        assert_eq!(
            back_off_waiting("nginx", Some(("ErrImagePull", "pull access denied"))),
            r#"Back-off pulling image "nginx": ErrImagePull: pull access denied"#
        );
        assert_eq!(
            failed_to_pull("nginx", "boom"),
            r#"Failed to pull image "nginx": boom"#
        );
        assert_eq!(container_error("ErrImagePull"), "Error: ErrImagePull");
        assert_eq!(
            failed_to_retrieve_secrets(&["a".into(), "b".into()]),
            "Unable to retrieve some image pull secrets (a, b); attempting to pull the image may not succeed."
        );
        assert_eq!(
            failed_to_apply_default_tag(
                "Foo/Bar",
                &couldnt_parse_image_name("Foo/Bar", "invalid reference format")
            ),
            r#"Failed to apply default image tag "Foo/Bar": couldn't parse image name "Foo/Bar": invalid reference format"#
        );
        assert_eq!(
            failed_to_inspect("a", "gone"),
            r#"Failed to inspect image "a": gone"#
        );
    }

    fn refusal(label: &str, message: &str) -> Refusal {
        Refusal {
            label: label.into(),
            message: message.into(),
        }
    }

    #[test]
    fn aggregate_shows_one_message_bare_several_bracketed_and_deduplicates() {
        assert_eq!(aggregate(&[refusal("anonymous", "denied")]), "denied");
        assert_eq!(
            aggregate(&[refusal("secret ns/a", "denied")]),
            "denied (tried secret ns/a)"
        );
        assert_eq!(
            aggregate(&[
                refusal("secret ns/a", "denied"),
                refusal("secret ns/b", "denied")
            ]),
            "denied (tried secret ns/a, secret ns/b)"
        );
        assert_eq!(
            aggregate(&[
                refusal("secret ns/a", "unauthorized"),
                refusal("secret ns/b", "denied"),
                refusal("secret ns/c", "unauthorized"),
            ]),
            "[unauthorized (tried secret ns/a, secret ns/c), denied (tried secret ns/b)]"
        );
        assert_eq!(aggregate(&[]), "no credential was tried");
    }

    fn failure(role: Role, class: TlsErrorClass, fingerprint: Option<&str>) -> TlsFailure {
        TlsFailure {
            host: HostPort::new("127.0.0.2", 4431),
            role,
            class,
            detail: "UnknownIssuer".into(),
            presented: Some(registry::tls::PresentedChain {
                subject: "CN=cdn".into(),
                issuer: "CN=cdn intermediate".into(),
                not_before: "now".into(),
                not_after: "later".into(),
                self_signed: false,
                leaf_is_ca: false,
                intermediates: 1,
                names: vec!["127.0.0.2".into()],
                issuer_is_anchor_subject: false,
                has_aia_ca_issuers: false,
                host_cas: 0,
                top_ca_sha256: fingerprint.map(str::to_string),
            }),
            sources: vec![
                "system roots disabled".into(),
                "/hosts/127.0.0.2:4431 (absent)".into(),
            ],
            client_cert_configured: false,
            hosts_dir: None,
        }
    }

    #[test]
    fn tls_text_names_host_role_sources_and_the_cluster_fix_and_keeps_the_x509_phrase() {
        let text = tls_failure(&failure(
            Role::RedirectTarget,
            TlsErrorClass::UnknownAuthority,
            Some("ab12"),
        ));
        assert!(
            text.starts_with("tls: failed to verify certificate of 127.0.0.2:4431 (the blob CDN the registry redirected the layer download to): x509: certificate signed by unknown authority"),
            "{text}"
        );
        assert!(
            text.contains("trust sources checked for 127.0.0.2:4431: system roots disabled, /hosts/127.0.0.2:4431 (absent)"),
            "{text}"
        );
        assert!(
            text.contains("`berth trust fetch 127.0.0.2:4431`"),
            "{text}"
        );
        assert!(
            text.contains("`berth trust add --cluster 127.0.0.2:4431 --fingerprint sha256:ab12`"),
            "{text}"
        );
        assert!(
            !text.contains("trust sources consulted"),
            "no duplicate: {text}"
        );
        let registry = tls_failure(&failure(
            Role::Registry,
            TlsErrorClass::UnknownAuthority,
            None,
        ));
        assert!(
            registry.contains("127.0.0.2:4431 (the registry)"),
            "{registry}"
        );
        assert!(
            registry.contains("--fingerprint sha256:<the CA fingerprint it prints>"),
            "{registry}"
        );
    }

    #[test]
    fn tls_text_keeps_the_registry_fix_for_problems_trust_cannot_solve() {
        let f = failure(Role::Registry, TlsErrorClass::Expired, None);
        let text = tls_failure(&f);
        assert!(text.contains("x509: certificate has expired"), "{text}");
        assert!(text.ends_with(&format!("; fix: {}", f.hint())), "{text}");
    }
}
