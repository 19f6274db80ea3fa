//! Validation of berth's own `berth.dev/v1 RegistryHost`: the per-registry trust and mirror settings
//! every node agent applies (`spec.host`, `caBundle`, `pinnedFingerprints`, `clientCertSecretRef`,
//! `mirrors`, `insecure`).
//!
//! The checks are syntactic (host:port form, PEM framing and base64, fingerprint format, reference
//! names): they never dial the registry, never parse certificates beyond their framing, and never
//! read the referenced Secret.

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
    let host = str_at(spec, "host");
    if host.is_empty() {
        errs.push(FieldError::required(
            &path.child("host"),
            "the registry as host or host:port, e.g. registry.example.com:5000",
        ));
    } else if let Err(msg) = check_host_port(host) {
        errs.push(FieldError::invalid_str(&path.child("host"), host, msg));
    }
    let insecure = spec
        .get("insecure")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ca = str_at(spec, "caBundle");
    if !ca.is_empty() {
        if let Err(msg) = check_pem_certificates(ca) {
            // The bundle is public material, but it can be megabytes long: name the problem, not the value.
            errs.push(FieldError::invalid(
                &path.child("caBundle"),
                BadValue::Omit,
                msg,
            ));
        }
        if insecure {
            errs.push(FieldError::forbidden(
                &path.child("caBundle"),
                "may not be set when `insecure` is true: remove one of them",
            ));
        }
    }
    let pins = arr_at(spec, "pinnedFingerprints");
    let mut seen = HashSet::new();
    for (i, pin) in pins.iter().enumerate() {
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
    if insecure && !pins.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("pinnedFingerprints"),
            "may not be set when `insecure` is true: remove one of them",
        ));
    }
    if let Some(r) = spec.get("clientCertSecretRef").filter(|v| !v.is_null()) {
        validate_secret_ref(
            r.as_object().unwrap_or(&EMPTY),
            &path.child("clientCertSecretRef"),
            errs,
        );
    }
    let mut seen = HashSet::new();
    for (i, m) in arr_at(spec, "mirrors").iter().enumerate() {
        let p = path.child("mirrors").index(i);
        let s = m.as_str().unwrap_or("");
        if s.is_empty() {
            errs.push(FieldError::required(&p, ""));
        } else if let Err(msg) = check_host_port(s) {
            errs.push(FieldError::invalid_str(&p, s, msg));
        } else if s == host {
            errs.push(FieldError::invalid_str(&p, s, "must differ from spec.host"));
        } else if !seen.insert(s) {
            errs.push(FieldError::duplicate(&p, BadValue::Str(s.to_string())));
        }
    }
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

/// One or more `CERTIFICATE` PEM blocks whose bodies are valid base64, and nothing else but whitespace.
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
        match base64::engine::general_purpose::STANDARD.decode(compact) {
            Ok(der) if !der.is_empty() => {}
            _ => return Err(format!("PEM block {} is not valid base64", count + 1)),
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

    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";

    fn errors(spec: Value) -> Vec<String> {
        let info = by_kind_name("RegistryHost").unwrap();
        let obj = json!({"apiVersion":"berth.dev/v1","kind":"RegistryHost","metadata":{"name":"registry.example.com"},"spec":spec});
        validate_create(info, &obj)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_complete_registry_host_is_valid() {
        let spec = json!({"host":"registry.example.com:5000","caBundle":format!("{PEM}{PEM}"),
            "pinnedFingerprints":[format!("sha256:{}", "a".repeat(64))],
            "clientCertSecretRef":{"name":"client-tls","namespace":"berth-system"},
            "mirrors":["mirror.example.com","10.0.0.5:5000","[::1]:5000"]});
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
    fn ca_bundle_must_be_pem_certificates() {
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
            json!({"host":"r.io","caBundle":format!("{PEM}-----BEGIN CERTIFICATE-----\nAAAA")}),
        );
        assert_eq!(
            errs,
            ["spec.caBundle: Invalid value: PEM block 2 has no -----END CERTIFICATE----- line"]
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
    fn insecure_excludes_trust_material() {
        let errs = errors(
            json!({"host":"r.io","insecure":true,"caBundle":PEM,"pinnedFingerprints":[format!("sha256:{}", "c".repeat(64))]}),
        );
        assert_eq!(
            errs,
            [
                "spec.caBundle: Forbidden: may not be set when `insecure` is true: remove one of them",
                "spec.pinnedFingerprints: Forbidden: may not be set when `insecure` is true: remove one of them",
            ]
        );
    }

    #[test]
    fn client_cert_ref_and_mirrors_are_checked() {
        let errs = errors(
            json!({"host":"r.io","clientCertSecretRef":{"name":"Bad_Name"},"mirrors":["r.io","m.io","m.io",""]}),
        );
        assert!(
            errs[0].starts_with("spec.clientCertSecretRef.name: Invalid value: \"Bad_Name\""),
            "{errs:?}"
        );
        assert_eq!(
            errs[1],
            "spec.clientCertSecretRef.namespace: Required value: namespace of the Secret (RegistryHost is cluster-scoped)"
        );
        assert_eq!(
            errs[2],
            "spec.mirrors[0]: Invalid value: \"r.io\": must differ from spec.host"
        );
        assert_eq!(errs[3], "spec.mirrors[2]: Duplicate value: \"m.io\"");
        assert_eq!(errs[4], "spec.mirrors[3]: Required value");
    }
}
