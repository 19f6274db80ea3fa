//! Validation of berth's own `berth.dev/v1 RegistryHost`: the per-registry trust and mirror settings
//! every node agent applies (`spec.host`, `caBundle`, `pinnedFingerprints`, `clientCertificateSecretRef`,
//! `mirrors[].{endpoint,resolve,sendCredentials}`, `insecure`), with upstream-form causes (type errors in
//! the CRD structural-schema wording).
//!
//! The checks are local: host:port form, every caBundle block parsed as an X.509 certificate
//! (x509-parser), fingerprint format, mirror URL form, reference names. They never dial the registry and
//! never read the referenced Secret.

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::names;
use super::{BadValue, EMPTY, FieldError, Path, arr_at, str_at};

/// The fingerprint form berth prints and accepts: `sha256:` followed by 64 lowercase hex digits of the
/// certificate's DER encoding.
pub const FINGERPRINT_FORMAT: &str = "sha256:<64 lowercase hex digits>";

pub(super) fn validate_registry_host(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::new("spec");
    let Some(spec) = obj.get("spec").and_then(Value::as_object) else {
        errs.push(FieldError::required(&path, ""));
        return;
    };
    let host = match spec.get("host") {
        None | Some(Value::Null) => "",
        Some(Value::String(h)) => h.as_str(),
        Some(other) => {
            errs.push(type_error(&path.child("host"), other, "string"));
            return;
        }
    };
    if host.is_empty() {
        errs.push(FieldError::required(
            &path.child("host"),
            "the registry as host or host:port, e.g. registry.example.com:5000",
        ));
    } else if let Err(msg) = check_host_port(host) {
        errs.push(FieldError::invalid_str(&path.child("host"), host, msg));
    }
    match spec.get("caBundle") {
        None | Some(Value::Null) => {}
        Some(Value::String(ca)) if ca.is_empty() => {}
        Some(Value::String(ca)) => {
            if let Err(msg) = check_pem_certificates(ca) {
                // The bundle is public material, but it can be megabytes long: name the problem, not the value.
                errs.push(FieldError::invalid(
                    &path.child("caBundle"),
                    BadValue::Omit,
                    msg,
                ));
            }
        }
        Some(other) => errs.push(type_error(&path.child("caBundle"), other, "string")),
    }
    check_bool(spec, "insecure", &path, errs);
    let mut seen = HashSet::new();
    for (i, pin) in arr_at(spec, "pinnedFingerprints").iter().enumerate() {
        let p = path.child("pinnedFingerprints").index(i);
        let s = pin.as_str().unwrap_or("");
        if !is_fingerprint(s) {
            errs.push(FieldError::invalid(
                &p,
                BadValue::from_json(pin),
                format!("must be {FINGERPRINT_FORMAT}, as printed by `berth trust fetch`"),
            ));
        } else if !seen.insert(s) {
            errs.push(FieldError::duplicate(&p, BadValue::Str(s.to_string())));
        }
    }
    if let Some(r) = spec
        .get("clientCertificateSecretRef")
        .filter(|v| !v.is_null())
    {
        validate_secret_ref(
            r.as_object().unwrap_or(&EMPTY),
            &path.child("clientCertificateSecretRef"),
            errs,
        );
    }
    let mut seen = HashSet::new();
    for (i, m) in arr_at(spec, "mirrors").iter().enumerate() {
        let p = path.child("mirrors").index(i);
        let Some(m) = m.as_object() else {
            errs.push(type_error(&p, m, "object"));
            continue;
        };
        let ep = p.child("endpoint");
        let endpoint = str_at(m, "endpoint");
        if endpoint.is_empty() {
            errs.push(FieldError::required(
                &ep,
                "the mirror's base URL, e.g. https://mirror.example.com:5000",
            ));
        } else if let Err(msg) = check_endpoint(endpoint) {
            errs.push(FieldError::invalid_str(&ep, endpoint, msg));
        } else if !seen.insert(endpoint.trim_end_matches('/')) {
            errs.push(FieldError::duplicate(
                &ep,
                BadValue::Str(endpoint.to_string()),
            ));
        }
        check_bool(m, "resolve", &p, errs);
        check_bool(m, "sendCredentials", &p, errs);
    }
}

/// The JSON type name the upstream CRD validator prints.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Upstream's structural-schema type error: `spec.insecure: Invalid value: "string": spec.insecure in body
/// must be of type boolean: "string"`.
pub(super) fn type_error(path: &Path, v: &Value, want: &str) -> FieldError {
    let got = json_type(v);
    FieldError::invalid_str(
        path,
        got,
        format!("{path} in body must be of type {want}: \"{got}\""),
    )
}

fn check_bool(m: &Map<String, Value>, key: &str, path: &Path, errs: &mut Vec<FieldError>) {
    match m.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => errs.push(type_error(&path.child(key), other, "boolean")),
    }
}

/// A mirror endpoint: `http://` or `https://`, then host[:port], then an optional path; no user info, query or
/// fragment (containerd's `hosts.toml` server form).
pub fn check_endpoint(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(
            "must be a URL with scheme http or https, e.g. https://mirror.example.com:5000".into(),
        );
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "scheme {scheme:?} is not supported: use https (or http for a plain-http mirror)"
        ));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("must not contain a query or fragment".into());
    }
    let (authority, _path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err("must name a host, e.g. https://mirror.example.com:5000".into());
    }
    check_host_port(authority)
}

fn validate_secret_ref(r: &Map<String, Value>, path: &Path, errs: &mut Vec<FieldError>) {
    let name = str_at(r, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name of a kubernetes.io/tls Secret",
        ));
    } else {
        for msg in names::is_dns1123_subdomain(name) {
            errs.push(FieldError::invalid_str(&path.child("name"), name, msg));
        }
    }
    let ns = str_at(r, "namespace");
    if ns.is_empty() {
        errs.push(FieldError::required(
            &path.child("namespace"),
            "namespace of the Secret (RegistryHost is cluster-scoped)",
        ));
    } else {
        for msg in names::is_dns1123_label(ns) {
            errs.push(FieldError::invalid_str(&path.child("namespace"), ns, msg));
        }
    }
}

/// `host`, `host:port`, `1.2.3.4:5000` or `[::1]:5000`; no scheme, path or user info.
pub fn check_host_port(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err(
            "must be host or host:port without a scheme, e.g. registry.example.com:5000".into(),
        );
    }
    if s.contains('/') || s.contains('@') {
        return Err(
            "must be host or host:port without a path or user info, e.g. registry.example.com:5000"
                .into(),
        );
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err("an IPv6 address must be enclosed in brackets, e.g. [::1]:5000".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("must contain a valid IPv6 address between the brackets".into());
        }
        match after {
            "" => (None, None),
            a => match a.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err("only :port may follow the bracketed IPv6 address".into()),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host {
        if h.contains(':') {
            return Err("an IPv6 address must be enclosed in brackets, e.g. [::1]:5000".into());
        }
        let lower = h.to_ascii_lowercase();
        if h.parse::<std::net::Ipv4Addr>().is_err()
            && !names::is_dns1123_subdomain(&lower).is_empty()
        {
            return Err("the host part must be a DNS name or an IP address".into());
        }
    }
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && !p.starts_with('+') => {}
            _ => return Err("the port must be a number between 1 and 65535".into()),
        }
    }
    Ok(())
}

/// Whether `s` has the form `sha256:<64 lowercase hex>`.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// One or more `CERTIFICATE` PEM blocks, each a DER X.509 certificate, and nothing else but whitespace.
fn check_pem_certificates(pem: &str) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = pem.trim();
    let mut count = 0;
    while !rest.is_empty() {
        let Some(after_begin) = rest.strip_prefix(BEGIN) else {
            return Err(format!(
                "must contain only PEM blocks of type CERTIFICATE; block {} does not start with {BEGIN}",
                count + 1
            ));
        };
        let Some((body, after_end)) = after_begin.split_once(END) else {
            return Err(format!("PEM block {} has no {END} line", count + 1));
        };
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = match base64::engine::general_purpose::STANDARD.decode(compact) {
            Ok(der) if !der.is_empty() => der,
            _ => return Err(format!("PEM block {} is not valid base64", count + 1)),
        };
        match x509_parser::parse_x509_certificate(&der) {
            Ok(([], _)) => {}
            Ok(_) => {
                return Err(format!(
                    "PEM block {} has trailing bytes after its X.509 certificate",
                    count + 1
                ));
            }
            Err(e) => {
                return Err(format!(
                    "PEM block {} is not a valid X.509 certificate: {e}",
                    count + 1
                ));
            }
        }
        count += 1;
        rest = after_end.trim_start();
    }
    if count == 0 {
        return Err("must contain at least one PEM-encoded CERTIFICATE".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind_name;
    use crate::validation::validate_create;
    use serde_json::json;

    /// A real self-signed certificate in PEM.
    fn pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec!["registry.example.com".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    }

    fn errors(spec: Value) -> Vec<String> {
        let info = by_kind_name("RegistryHost").unwrap();
        let obj = json!({"apiVersion":"berth.dev/v1","kind":"RegistryHost","metadata":{"name":"registry.example.com"},"spec":spec});
        validate_create(info, &obj)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_complete_registry_host_in_the_contract_shape_is_valid() {
        let spec = json!({"host":"registry.example.com:5000","caBundle":format!("{}{}", pem(), pem()),
            "pinnedFingerprints":[format!("sha256:{}", "a".repeat(64))],
            "clientCertificateSecretRef":{"name":"client-tls","namespace":"berth-system"},
            "mirrors":[{"endpoint":"https://mirror:5000","resolve":false,"sendCredentials":false},
                       {"endpoint":"http://10.0.0.5:5000/v2/prefix"},{"endpoint":"https://[::1]:5000"}],
            "insecure":false});
        assert_eq!(errors(spec), Vec::<String>::new());
    }

    #[test]
    fn host_is_required_and_must_be_host_port() {
        assert_eq!(
            errors(json!({})),
            [
                "spec.host: Required value: the registry as host or host:port, e.g. registry.example.com:5000"
            ]
        );
        for bad in [
            "https://r.io",
            "r.io/path",
            "r.io:0",
            "r.io:99999",
            "::1",
            "[::1",
            "r_io",
            "u@r.io",
        ] {
            let errs = errors(json!({"host": bad}));
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(
                errs[0].starts_with(&format!("spec.host: Invalid value: \"{bad}\"")),
                "{errs:?}"
            );
        }
        for good in [
            "r.io",
            "R.IO:443",
            "127.0.0.1:5000",
            "[fe80::1]",
            "localhost",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn every_ca_bundle_block_must_parse_as_an_x509_certificate() {
        let errs = errors(json!({"host":"r.io","caBundle":"not a pem"}));
        assert_eq!(
            errs,
            [
                "spec.caBundle: Invalid value: must contain only PEM blocks of type CERTIFICATE; block 1 does not start with -----BEGIN CERTIFICATE-----"
            ]
        );
        let errs = errors(
            json!({"host":"r.io","caBundle":"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"}),
        );
        assert_eq!(
            errs,
            ["spec.caBundle: Invalid value: PEM block 1 is not valid base64"]
        );
        let errs = errors(
            json!({"host":"r.io","caBundle":format!("{}-----BEGIN CERTIFICATE-----\nAAAA", pem())}),
        );
        assert_eq!(
            errs,
            ["spec.caBundle: Invalid value: PEM block 2 has no -----END CERTIFICATE----- line"]
        );
        // Well-framed base64 that is not a certificate.
        let errs = errors(json!({"host":"r.io","caBundle":format!(
            "{}-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n", pem())}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "spec.caBundle: Invalid value: PEM block 2 is not a valid X.509 certificate: "
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn fingerprints_are_sha256_hex_and_unique() {
        let pin = format!("sha256:{}", "b".repeat(64));
        let errs = errors(json!({"host":"r.io","pinnedFingerprints":[pin, pin, "SHA256:AB", 5]}));
        assert_eq!(
            errs[0],
            format!("spec.pinnedFingerprints[1]: Duplicate value: \"{pin}\"")
        );
        assert_eq!(
            errs[1],
            "spec.pinnedFingerprints[2]: Invalid value: \"SHA256:AB\": must be sha256:<64 lowercase hex digits>, as printed by `berth trust fetch`"
        );
        assert!(
            errs[2].starts_with("spec.pinnedFingerprints[3]: Invalid value: 5"),
            "{errs:?}"
        );
    }

    #[test]
    fn wrong_json_types_get_the_upstream_structural_schema_message() {
        let errs = errors(
            json!({"host":"r.io","insecure":"yes","mirrors":[{"endpoint":"https://m.io","sendCredentials":1}, "m.io"]}),
        );
        assert_eq!(
            errs,
            [
                "spec.insecure: Invalid value: \"string\": spec.insecure in body must be of type boolean: \"string\"",
                "spec.mirrors[0].sendCredentials: Invalid value: \"integer\": spec.mirrors[0].sendCredentials in body must be of type boolean: \"integer\"",
                "spec.mirrors[1]: Invalid value: \"string\": spec.mirrors[1] in body must be of type object: \"string\"",
            ]
        );
        assert_eq!(
            errors(json!({"host":5})),
            [
                "spec.host: Invalid value: \"integer\": spec.host in body must be of type string: \"integer\""
            ]
        );
    }

    #[test]
    fn client_certificate_ref_and_mirror_endpoints_are_checked() {
        let errs = errors(json!({"host":"r.io",
            "clientCertificateSecretRef":{"name":"Bad_Name"},
            "mirrors":[{"endpoint":"mirror:5000"},{"endpoint":"https://m.io"},{"endpoint":"https://m.io/"},
                       {},{"endpoint":"ftp://m.io"},{"endpoint":"https://u@m.io"},{"endpoint":"https://m.io?x=1"}]}));
        assert!(
            errs[0]
                .starts_with("spec.clientCertificateSecretRef.name: Invalid value: \"Bad_Name\""),
            "{errs:?}"
        );
        assert_eq!(
            &errs[1..],
            [
                "spec.clientCertificateSecretRef.namespace: Required value: namespace of the Secret (RegistryHost is cluster-scoped)",
                "spec.mirrors[0].endpoint: Invalid value: \"mirror:5000\": must be a URL with scheme http or https, e.g. https://mirror.example.com:5000",
                "spec.mirrors[2].endpoint: Duplicate value: \"https://m.io/\"",
                "spec.mirrors[3].endpoint: Required value: the mirror's base URL, e.g. https://mirror.example.com:5000",
                "spec.mirrors[4].endpoint: Invalid value: \"ftp://m.io\": scheme \"ftp\" is not supported: use https (or http for a plain-http mirror)",
                "spec.mirrors[5].endpoint: Invalid value: \"https://u@m.io\": must be host or host:port without a path or user info, e.g. registry.example.com:5000",
                "spec.mirrors[6].endpoint: Invalid value: \"https://m.io?x=1\": must not contain a query or fragment",
            ]
        );
    }
}
