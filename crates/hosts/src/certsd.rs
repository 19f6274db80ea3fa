//! Docker's certs.d folder layout, used when a namespace folder has no (or an empty) `hosts.toml`.
//!
//! Owns reading one folder the way Docker Engine does: `*.crt` files are CAs (appended to the
//! system roots, for this host only), `x.cert` + `x.key` are a client pair, and a `.cert` without
//! its `.key` (or the reverse) is an error with Docker's exact wording. Only the folder's own
//! regular files count (no recursion). It must never load key material (paths only) and never
//! apply the folder to any host other than the one it is named for.

use std::path::Path;

use crate::error::HostsError;
use crate::model::{Capabilities, ClientPair, Headers};
use crate::parse::HostEntry;

/// Reads a certs.d folder into a server entry (no URL: the namespace host).
pub fn load_certs_dir(dir: &Path) -> Result<HostEntry, HostsError> {
    let mut names: Vec<String> = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| HostsError::io(dir, "cannot read folder", &e))?;
    for ent in rd {
        let ent = ent.map_err(|e| HostsError::io(dir, "cannot read folder", &e))?;
        let ft = match std::fs::metadata(ent.path()) {
            Ok(m) => m.file_type(),
            Err(_) => continue, // dangling symlink: Docker skips what it cannot stat
        };
        if !ft.is_file() {
            continue;
        }
        if let Some(n) = ent.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut entry = HostEntry {
        url: None,
        capabilities: Capabilities::ALL,
        ca_files: Vec::new(),
        ca_positions: Vec::new(),
        client_pairs: Vec::new(),
        client_positions: Vec::new(),
        skip_verify: false,
        headers: Headers::default(),
        override_path: false,
        dial_timeout: None,
        proxy: None,
        send_credentials: None,
        line: 0,
        field: String::new(),
    };
    for name in &names {
        if name.ends_with(".crt") {
            entry.ca_files.push(dir.join(name));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !has(&key) {
                return Err(HostsError::CertsD {
                    dir: dir.to_path_buf(),
                    message: format!(
                        "missing key {key} for client certificate {name}. CA certificates must use the extension .crt"
                    ),
                });
            }
            entry.client_pairs.push(ClientPair {
                cert: dir.join(name),
                key: Some(dir.join(&key)),
            });
        } else if let Some(stem) = name.strip_suffix(".key") {
            let cert = format!("{stem}.cert");
            if !has(&cert) {
                return Err(HostsError::CertsD {
                    dir: dir.to_path_buf(),
                    message: format!("missing client certificate {cert} for key {name}"),
                });
            }
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd `TestLoadCertFiles` cases plus Docker's error cases.
    #[test]
    fn crt_files_are_cas_and_cert_key_files_are_pairs() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("testing.io");
        std::fs::create_dir(&dir).unwrap();
        // crt only
        std::fs::write(dir.join("ca.crt"), "x").unwrap();
        let e = load_certs_dir(&dir).unwrap();
        assert_eq!(e.ca_files, [dir.join("ca.crt")]);
        assert!(e.client_pairs.is_empty());
        // crt and cert pair
        std::fs::write(dir.join("client.cert"), "x").unwrap();
        std::fs::write(dir.join("client.key"), "x").unwrap();
        let e = load_certs_dir(&dir).unwrap();
        assert_eq!(e.ca_files, [dir.join("ca.crt")]);
        assert_eq!(
            e.client_pairs,
            [ClientPair {
                cert: dir.join("client.cert"),
                key: Some(dir.join("client.key"))
            }]
        );
        // cert pair only; other files and sub-folders are ignored
        std::fs::remove_file(dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join("README"), "x").unwrap();
        std::fs::create_dir(dir.join("sub.crt")).unwrap();
        let e = load_certs_dir(&dir).unwrap();
        assert!(e.ca_files.is_empty());
        assert_eq!(e.client_pairs.len(), 1);
    }

    #[test]
    fn cert_without_key_and_key_without_cert_use_docker_wording() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("client.cert"), "x").unwrap();
        let e = load_certs_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("missing key client.key for client certificate client.cert. CA certificates must use the extension .crt"),
            "{e}"
        );
        assert!(e.starts_with(&d.path().display().to_string()), "{e}");
        std::fs::remove_file(d.path().join("client.cert")).unwrap();
        std::fs::write(d.path().join("other.key"), "x").unwrap();
        let e = load_certs_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("missing client certificate other.cert for key other.key"),
            "{e}"
        );
    }
}
