//! Editing the hosts directory for `berth trust add/remove/list`, with an audit log.
//!
//! Owns writing a CA for exactly one host:port: the PEM file (`berth-ca-<sha256 prefix>.crt`,
//! mode 0644) plus a `ca` entry in that host's `hosts.toml` whose comment pins the full SHA-256
//! fingerprint and subject (a folder already in Docker's certs.d layout gets only the `.crt` file,
//! which that layout reads as a CA, so its existing files keep working). Every write is atomic
//! (temp file in the same folder, fsync, rename, fsync of the folder); keys, when written, are
//! 0600. Each change appends one JSON line to `<dir>/.berth-trust.log` (time, user from
//! `$SUDO_USER`/`$USER`/uid, action, host, fingerprint, file). `toml_edit` keeps an admin's
//! comments and layout in an existing `hosts.toml`.
//!
//! It must never write a CA into a folder that governs another host (a `server` on another
//! host:port, a `_default` folder), never accept a certificate that cannot be a trust anchor
//! (`CA:FALSE` issued by someone else; a self-signed `CA:FALSE` server certificate is accepted as a
//! pin: it can vouch only for itself, and only for the host:port it is written for), never download or infer a certificate, and never touch files it did not write
//! except the `ca` entries it manages.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use registry::{HostPort, Scheme};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::config::{NamespaceSource, home_host, load_namespace};
use crate::error::HostsError;
use crate::parse::parse_hosts_toml;

/// The audit log file name inside the hosts directory.
pub const AUDIT_LOG: &str = ".berth-trust.log";

const MANAGED_PREFIX: &str = "berth-ca-";
const COMMENT_TAG: &str = "# berth trust: sha256:";
const HEADER: &str = "# managed by berth trust (berth trust add/remove); CA files here apply to this host:port only\n";

/// One trusted certificate as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustEntry {
    /// The host:port the certificate is trusted for (`_default` for a default folder's server).
    pub host: String,
    /// Lower-case hex SHA-256 of the certificate (DER).
    pub fingerprint: String,
    /// Subject DN.
    pub subject: String,
    /// End of validity.
    pub not_after: String,
    /// The file holding it.
    pub file: PathBuf,
    /// Written by `berth trust add`.
    pub managed: bool,
    /// For managed files: the file name and pin comment match the certificate's fingerprint.
    pub pin_ok: bool,
}

/// The result of listing: the entries and folders that could not be read.
#[derive(Clone, Debug, Default)]
pub struct TrustListing {
    /// Trusted certificates, by folder then file order.
    pub entries: Vec<TrustEntry>,
    /// Folders that failed to load.
    pub errors: Vec<HostsError>,
}

/// A hosts directory opened for trust edits.
#[derive(Clone, Debug)]
pub struct TrustStore {
    dir: PathBuf,
    user: String,
}

fn trust_err(msg: String) -> HostsError {
    HostsError::Trust(msg)
}

/// The acting user: `$SUDO_USER`, else `$USER`, else `uid:<n>`.
pub fn current_user() -> String {
    user_from(|var| std::env::var(var).ok())
}

fn user_from(env: impl Fn(&str) -> Option<String>) -> String {
    for var in ["SUDO_USER", "USER"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            return v;
        }
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    format!("uid:{uid}")
}

/// Lower-case hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

struct CertInfo {
    der: CertificateDer<'static>,
    fingerprint: String,
    subject: String,
    not_after: String,
}

fn inspect(der: CertificateDer<'static>) -> Result<CertInfo, HostsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| trust_err(format!("certificate cannot be parsed: {e}")))?;
    let subject = cert.subject().to_string();
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    if let Ok(Some(bc)) = cert.basic_constraints()
        && !bc.value.ca
        && !self_signed
    {
        return Err(trust_err(format!(
            "certificate {subject:?} is not a CA (basicConstraints CA:FALSE) and cannot be a trust anchor; add the CA that issued the registry's certificate (berth trust fetch shows the chain)"
        )));
    }
    Ok(CertInfo {
        fingerprint: fingerprint(der.as_ref()),
        not_after: cert.validity().not_after.to_string(),
        subject,
        der,
    })
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertInfo>, HostsError> {
    let mut ders = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        ders.push(item.map_err(|e| trust_err(format!("the CA is not valid PEM: {e}")))?);
    }
    if ders.is_empty() {
        if x509_parser::parse_x509_certificate(pem).is_ok() {
            ders.push(CertificateDer::from(pem.to_vec()));
        } else {
            return Err(trust_err(
                "no certificate found; give PEM -----BEGIN CERTIFICATE----- blocks or one DER certificate".to_string(),
            ));
        }
    }
    ders.into_iter().map(inspect).collect()
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Writes `bytes` to `path` atomically with `mode` (temp file in the same folder, fsync, rename,
/// fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HostsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // the umask may have narrowed the mode; set it exactly
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        HostsError::io(path, "cannot write", &e)
    })
}

fn folder_label(host: &HostPort) -> (String, String, Option<String>) {
    let hp = host.to_string();
    let i = hp.rfind(':').expect("host:port has a colon");
    let underscored = format!("{}_{}_", &hp[..i], &hp[i + 1..]);
    let bare = (host.port() == 443).then(|| hp[..i].to_string());
    (hp, underscored, bare)
}

fn is_certs_d_file(name: &str) -> bool {
    name.ends_with(".crt") || name.ends_with(".cert") || name.ends_with(".key")
}

impl TrustStore {
    /// Opens `dir` (created on the first add), acting as [`current_user`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            user: current_user(),
        }
    }

    /// The same store, recording `user` in the audit log.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The audit log path.
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join(AUDIT_LOG)
    }

    /// The folder that governs `host`: an existing `host_port_`, `host:port` or (port 443) `host`
    /// folder in containerd's lookup order, else a new `host:port` (`host` for 443) folder.
    pub fn folder_for(&self, host: &HostPort) -> PathBuf {
        let (hp, underscored, bare) = folder_label(host);
        for name in [Some(underscored), Some(hp.clone()), bare.clone()]
            .into_iter()
            .flatten()
        {
            let p = self.dir.join(&name);
            if p.is_dir() {
                return p;
            }
        }
        self.dir.join(bare.unwrap_or(hp))
    }

    fn audit(
        &self,
        action: &str,
        host: &HostPort,
        fp: &str,
        file: &Path,
    ) -> Result<(), HostsError> {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = serde_json::to_string(&serde_json::json!({
            "time": time,
            "user": self.user,
            "action": action,
            "host": host.to_string(),
            "fingerprint": format!("sha256:{fp}"),
            "file": file.display().to_string(),
        }))
        .expect("json of strings");
        line.push('\n');
        let path = self.audit_log_path();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| HostsError::io(&path, "cannot open audit log", &e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| HostsError::io(&path, "cannot append to audit log", &e))
    }

    /// Trusts the CA certificate(s) in `pem` for `host` only. Returns what was added (a
    /// certificate already trusted for that host is not added twice).
    pub fn add(&self, host: &HostPort, pem: &[u8]) -> Result<Vec<TrustEntry>, HostsError> {
        let certs = parse_certs(pem)?;
        let folder = self.folder_for(host);
        std::fs::create_dir_all(&folder)
            .map_err(|e| HostsError::io(&folder, "cannot create folder", &e))?;
        let toml_path = folder.join("hosts.toml");
        let existing_toml = std::fs::read_to_string(&toml_path)
            .ok()
            .filter(|s| !s.is_empty());
        let docker_layout = existing_toml.is_none()
            && std::fs::read_dir(&folder)
                .map_err(|e| HostsError::io(&folder, "cannot read folder", &e))?
                .filter_map(|e| e.ok())
                .any(|e| is_certs_d_file(&e.file_name().to_string_lossy()));
        if let Some(text) = &existing_toml {
            let parsed = parse_hosts_toml(&toml_path, text)?;
            if let Some(u) = &parsed.server.url {
                if u.scheme == Scheme::Http {
                    return Err(trust_err(format!(
                        "{} sets server = \"{}\" (plain http): a CA has no effect there; change it to https:// first",
                        toml_path.display(),
                        u.url
                    )));
                }
                if &u.host != host {
                    return Err(trust_err(format!(
                        "{} sends {host} to server {}: a CA written there would apply to {}, not {host}; edit that file by hand",
                        toml_path.display(),
                        u.host,
                        u.host
                    )));
                }
            }
        }
        let mut added = Vec::new();
        let mut doc: Option<toml_edit::DocumentMut> = None;
        if !docker_layout {
            let text = existing_toml
                .clone()
                .unwrap_or_else(|| format!("{HEADER}server = \"https://{host}\"\n"));
            doc = Some(text.parse().map_err(|e: toml_edit::TomlError| {
                trust_err(format!("{}: {}", toml_path.display(), e.message()))
            })?);
        }
        for c in &certs {
            let file_name = format!("{MANAGED_PREFIX}{}.crt", &c.fingerprint[..16]);
            let file = folder.join(&file_name);
            if let Some(doc) = doc.as_mut() {
                let ca = doc
                    .entry("ca")
                    .or_insert(toml_edit::value(toml_edit::Array::new()));
                // a single string becomes an array holding it
                if let Some(s) = ca.as_str().map(str::to_string) {
                    let mut arr = toml_edit::Array::new();
                    arr.push(s);
                    *ca = toml_edit::value(arr);
                }
                let arr = ca.as_array_mut().ok_or_else(|| {
                    trust_err(format!(
                        "{}: ca must be a string or an array of strings to add to it",
                        toml_path.display()
                    ))
                })?;
                if arr.iter().any(|v| v.as_str() == Some(file_name.as_str())) && file.exists() {
                    continue;
                }
                let mut v = toml_edit::Value::from(file_name.as_str());
                v.decor_mut().set_prefix(format!(
                    "\n  {COMMENT_TAG}{} {}\n  ",
                    c.fingerprint,
                    c.subject.replace('\n', " ")
                ));
                arr.push_formatted(v);
                arr.set_trailing("\n");
                arr.set_trailing_comma(true);
            } else if file.exists() {
                continue;
            }
            write_atomic(&file, pem_of(c.der.as_ref()).as_bytes(), 0o644)?;
            added.push(TrustEntry {
                host: host.to_string(),
                fingerprint: c.fingerprint.clone(),
                subject: c.subject.clone(),
                not_after: c.not_after.clone(),
                file,
                managed: true,
                pin_ok: true,
            });
        }
        if let Some(doc) = doc
            && !added.is_empty()
        {
            write_atomic(&toml_path, doc.to_string().as_bytes(), 0o644)?;
        }
        for e in &added {
            self.audit("add", host, &e.fingerprint, &e.file)?;
        }
        Ok(added)
    }

    /// Removes berth-managed CAs for `host`: the one whose fingerprint starts with `fingerprint`
    /// (hex, optional `sha256:` prefix, at least 8 digits), or all of them when `None`.
    pub fn remove(
        &self,
        host: &HostPort,
        fingerprint: Option<&str>,
    ) -> Result<Vec<TrustEntry>, HostsError> {
        let want = match fingerprint {
            Some(f) => {
                let f = f.trim().to_ascii_lowercase();
                let f = f.strip_prefix("sha256:").unwrap_or(&f).replace(':', "");
                if f.len() < 8 || !f.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(trust_err(format!(
                        "fingerprint {f:?} is not at least 8 hex digits of a SHA-256; copy it from berth trust list"
                    )));
                }
                Some(f)
            }
            None => None,
        };
        let host_s = host.to_string();
        let listing = self.list();
        let matched: Vec<TrustEntry> = listing
            .entries
            .into_iter()
            .filter(|e| e.managed && e.host == host_s)
            .filter(|e| {
                want.as_ref()
                    .is_none_or(|w| e.fingerprint.starts_with(w.as_str()))
            })
            .collect();
        if matched.is_empty() {
            return Err(trust_err(format!(
                "no berth-managed CA{} is trusted for {host}; berth trust list shows what is",
                want.map(|w| format!(" with fingerprint {w}"))
                    .unwrap_or_default()
            )));
        }
        if want.is_some() {
            let files: std::collections::BTreeSet<_> =
                matched.iter().map(|e| &e.fingerprint).collect();
            if files.len() > 1 {
                return Err(trust_err(format!(
                    "fingerprint prefix matches {} certificates for {host}; give more digits",
                    files.len()
                )));
            }
        }
        for e in &matched {
            let folder = e.file.parent().unwrap_or(&self.dir).to_path_buf();
            let toml_path = folder.join("hosts.toml");
            if let Ok(text) = std::fs::read_to_string(&toml_path)
                && !text.is_empty()
            {
                let mut doc: toml_edit::DocumentMut =
                    text.parse().map_err(|err: toml_edit::TomlError| {
                        trust_err(format!("{}: {}", toml_path.display(), err.message()))
                    })?;
                let name = e
                    .file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let abs = e.file.display().to_string();
                let mut now_empty = false;
                if let Some(arr) = doc.get_mut("ca").and_then(|i| i.as_array_mut()) {
                    arr.retain(|v| {
                        v.as_str() != Some(name.as_str()) && v.as_str() != Some(abs.as_str())
                    });
                    now_empty = arr.is_empty();
                } else if doc
                    .get("ca")
                    .and_then(|i| i.as_str())
                    .is_some_and(|s| s == name || s == abs)
                {
                    now_empty = true;
                }
                if now_empty {
                    doc.remove("ca");
                }
                let managed_only =
                    text.starts_with(HEADER) && doc.iter().all(|(k, _)| k == "server");
                if managed_only {
                    std::fs::remove_file(&toml_path)
                        .map_err(|err| HostsError::io(&toml_path, "cannot remove", &err))?;
                } else {
                    write_atomic(&toml_path, doc.to_string().as_bytes(), 0o644)?;
                }
            }
            match std::fs::remove_file(&e.file) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(HostsError::io(&e.file, "cannot remove", &err)),
            }
            // a folder berth created and emptied goes too
            let _ = std::fs::remove_dir(&folder);
            self.audit("remove", host, &e.fingerprint, &e.file)?;
        }
        Ok(matched)
    }

    /// Every CA configured in the directory, per host:port.
    pub fn list(&self) -> TrustListing {
        let mut out = TrustListing::default();
        let mut names: Vec<(String, PathBuf)> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(|n| (n.to_string(), e.path())))
                .filter(|(n, _)| !n.starts_with('.'))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                out.errors
                    .push(HostsError::io(&self.dir, "cannot read hosts directory", &e));
                return out;
            }
        };
        names.sort();
        for (name, path) in names {
            let ns = match load_namespace(&name, &path) {
                Ok(ns) => ns,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            };
            let pins = match &ns.source {
                NamespaceSource::HostsToml(p) => std::fs::read_to_string(p).unwrap_or_default(),
                NamespaceSource::CertsD(_) => String::new(),
            };
            let folder_host = || {
                if name == crate::config::DEFAULT_NAMESPACE {
                    return name.clone();
                }
                let as_ns = match name.strip_suffix('_').and_then(|s| s.rsplit_once('_')) {
                    Some((h, p)) if p.parse::<u16>().is_ok() => format!("{h}:{p}"),
                    _ => name.clone(),
                };
                home_host(&as_ns)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| name.clone())
            };
            let mut rows = Vec::new();
            for le in ns.hosts.iter() {
                let host = le
                    .entry
                    .url
                    .as_ref()
                    .map(|u| u.host.to_string())
                    .unwrap_or_default();
                rows.push((host, le));
            }
            let server_host = ns
                .server
                .entry
                .url
                .as_ref()
                .map(|u| u.host.to_string())
                .unwrap_or_else(folder_host);
            rows.push((server_host, &ns.server));
            for (host, le) in rows {
                for ca in &le.cas {
                    let file_name = ca
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let managed = file_name.starts_with(MANAGED_PREFIX);
                    for der in &ca.certs {
                        let fp = fingerprint(der.as_ref());
                        let (subject, not_after) =
                            x509_parser::parse_x509_certificate(der.as_ref())
                                .map(|(_, c)| {
                                    (c.subject().to_string(), c.validity().not_after.to_string())
                                })
                                .unwrap_or_default();
                        let pin_ok = managed
                            && file_name == format!("{MANAGED_PREFIX}{}.crt", &fp[..16])
                            && (matches!(ns.source, NamespaceSource::CertsD(_))
                                || pins.contains(&format!("{COMMENT_TAG}{fp}")));
                        out.entries.push(TrustEntry {
                            host: host.clone(),
                            fingerprint: fp,
                            subject,
                            not_after,
                            file: ca.path.clone(),
                            managed,
                            pin_ok,
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostsConfig;
    use crate::config::tests::ca_pem;
    use registry::HostConfigSource;

    fn audit_lines(store: &TrustStore) -> Vec<serde_json::Value> {
        std::fs::read_to_string(store.audit_log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn add_list_remove_round_trip_with_audit_log() {
        let d = tempfile::tempdir().unwrap();
        let store = TrustStore::new(d.path()).with_user("alice");
        let host = HostPort::new("reg.example", 5000);
        let pem = ca_pem("Private Registry CA");

        let added = store.add(&host, pem.as_bytes()).unwrap();
        assert_eq!(added.len(), 1);
        let fp = added[0].fingerprint.clone();
        assert_eq!(fp.len(), 64);
        assert!(added[0].subject.contains("CN=Private Registry CA"));
        let file = d
            .path()
            .join(format!("reg.example:5000/berth-ca-{}.crt", &fp[..16]));
        assert_eq!(added[0].file, file);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let toml = std::fs::read_to_string(d.path().join("reg.example:5000/hosts.toml")).unwrap();
        assert!(
            toml.contains(&format!("# berth trust: sha256:{fp}")),
            "{toml}"
        );
        assert!(
            toml.contains("server = \"https://reg.example:5000\""),
            "{toml}"
        );

        // the configuration now trusts it for that host:port only
        let cfg = HostsConfig::load(d.path()).unwrap();
        let hc = cfg.host_config(&host).unwrap();
        assert_eq!(hc.ca_certs.len(), 1);
        assert_eq!(fingerprint(hc.ca_certs[0].1.as_ref()), fp);
        assert!(
            cfg.host_config(&HostPort::new("reg.example", 443))
                .unwrap()
                .ca_certs
                .is_empty()
        );
        assert!(
            cfg.host_config(&HostPort::new("cdn.example", 443))
                .unwrap()
                .ca_certs
                .is_empty()
        );

        // adding the same CA again changes nothing
        assert!(store.add(&host, pem.as_bytes()).unwrap().is_empty());

        let listing = store.list();
        assert!(listing.errors.is_empty(), "{:?}", listing.errors);
        assert_eq!(listing.entries.len(), 1);
        let e = &listing.entries[0];
        assert_eq!(
            (e.host.as_str(), e.fingerprint.as_str()),
            ("reg.example:5000", fp.as_str())
        );
        assert!(e.managed && e.pin_ok);
        assert!(e.subject.contains("Private Registry CA"));

        // wrong fingerprint, too short a prefix, another host: refused
        assert!(
            store
                .remove(&host, Some("00000000"))
                .unwrap_err()
                .to_string()
                .contains("no berth-managed CA")
        );
        assert!(store.remove(&host, Some("abc")).is_err());
        assert!(
            store
                .remove(&HostPort::new("reg.example", 5001), None)
                .is_err()
        );

        let removed = store
            .remove(&host, Some(&format!("sha256:{}", &fp[..12])))
            .unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!file.exists());
        assert!(
            !d.path().join("reg.example:5000").exists(),
            "berth's own empty folder goes"
        );
        assert!(store.list().entries.is_empty());

        let log = audit_lines(&store);
        assert_eq!(log.len(), 2);
        assert_eq!(log[0]["action"], "add");
        assert_eq!(log[1]["action"], "remove");
        for l in &log {
            assert_eq!(l["user"], "alice");
            assert_eq!(l["host"], "reg.example:5000");
            assert_eq!(l["fingerprint"], format!("sha256:{fp}"));
            assert!(l["time"].as_str().unwrap().ends_with('Z'));
        }
    }

    #[test]
    fn add_keeps_an_admins_hosts_toml_and_mirrors() {
        let d = tempfile::tempdir().unwrap();
        let folder = d.path().join("reg.example");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("old.pem"), ca_pem("old")).unwrap();
        let original = "# admin notes\nserver = \"https://reg.example\"\nca = \"old.pem\"\n\n[host.\"https://mirror.example\"]\n  capabilities = [\"pull\"] # public\n";
        std::fs::write(folder.join("hosts.toml"), original).unwrap();
        let store = TrustStore::new(d.path()).with_user("bob");
        let host = HostPort::new("reg.example", 443);
        let added = store.add(&host, ca_pem("new").as_bytes()).unwrap();
        let text = std::fs::read_to_string(folder.join("hosts.toml")).unwrap();
        assert!(text.starts_with("# admin notes\n"), "{text}");
        assert!(
            text.contains("capabilities = [\"pull\"] # public"),
            "{text}"
        );
        let cfg = HostsConfig::load(d.path()).unwrap();
        let eps = cfg.resolve("reg.example").unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(
            eps[1].ca_files,
            [folder.join("old.pem"), added[0].file.clone()]
        );
        assert!(
            eps[0].ca_files.is_empty(),
            "the mirror does not inherit the registry's CA"
        );

        store.remove(&host, None).unwrap();
        let text = std::fs::read_to_string(folder.join("hosts.toml")).unwrap();
        assert!(
            text.contains("old.pem") && !text.contains("berth-ca-"),
            "{text}"
        );
        assert!(folder.join("old.pem").exists());
        let listing = store.list();
        assert_eq!(listing.entries.len(), 1);
        assert!(!listing.entries[0].managed);
    }

    #[test]
    fn docker_layout_folder_gets_a_crt_and_keeps_its_files() {
        let d = tempfile::tempdir().unwrap();
        let folder = d.path().join("reg.example:5000");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("ca.crt"), ca_pem("docker")).unwrap();
        let store = TrustStore::new(d.path());
        let host = HostPort::new("reg.example", 5000);
        store.add(&host, ca_pem("berth").as_bytes()).unwrap();
        assert!(!folder.join("hosts.toml").exists());
        let cfg = HostsConfig::load(d.path()).unwrap();
        assert_eq!(cfg.host_config(&host).unwrap().ca_certs.len(), 2);
        let listing = store.list();
        assert_eq!(
            listing
                .entries
                .iter()
                .filter(|e| e.managed && e.pin_ok)
                .count(),
            1
        );
    }

    #[test]
    fn refuses_leaves_garbage_and_folders_for_other_hosts() {
        let d = tempfile::tempdir().unwrap();
        let store = TrustStore::new(d.path());
        let host = HostPort::new("reg.example", 5000);
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "issuing ca");
        let issuer = rcgen::Issuer::new(ca_params, rcgen::KeyPair::generate().unwrap());
        let mut params = rcgen::CertificateParams::new(vec!["reg.example".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let leaf = params
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        let e = store
            .add(&host, leaf.pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CA"), "{e}");
        assert!(
            store
                .add(&host, b"hello")
                .unwrap_err()
                .to_string()
                .contains("no certificate found")
        );
        let folder = d.path().join("reg.example_5000_");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(
            folder.join("hosts.toml"),
            "server = \"https://elsewhere.example\"\n",
        )
        .unwrap();
        let e = store
            .add(&host, ca_pem("x").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("elsewhere.example:443"), "{e}");
        assert!(
            !store.audit_log_path().exists(),
            "nothing was changed, nothing logged"
        );
    }

    #[test]
    fn a_self_signed_server_certificate_is_accepted_as_a_pin_for_its_host_only() {
        let d = tempfile::tempdir().unwrap();
        let store = TrustStore::new(d.path()).with_user("test");
        let host = HostPort::new("reg.example", 5000);
        let mut params = rcgen::CertificateParams::new(vec!["reg.example".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let leaf = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let added = store.add(&host, leaf.pem().as_bytes()).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].fingerprint, fingerprint(leaf.der()));
        let listing = store.list();
        assert_eq!(listing.entries.len(), 1);
        assert_eq!(listing.entries[0].host, "reg.example:5000");
    }

    #[test]
    fn user_comes_from_sudo_user_then_user_then_uid() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            user_from(env(&[("SUDO_USER", "admin"), ("USER", "root")])),
            "admin"
        );
        assert_eq!(
            user_from(env(&[("SUDO_USER", ""), ("USER", "root")])),
            "root"
        );
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(user_from(env(&[])), format!("uid:{uid}"));
    }

    #[test]
    fn atomic_write_sets_the_exact_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("client.key");
        write_atomic(&p, b"k", 0o600).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"k2", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"k2");
        let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
