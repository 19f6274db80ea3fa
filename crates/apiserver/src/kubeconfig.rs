//! kubeconfig files for the admin, viewer and node identities: the server URL, the CA embedded as
//! `certificate-authority-data`, and the bearer token. Written 0600 to the data dir on every start (the URL follows
//! `--listen`); the token inside is reused while its digest still matches `tokens.json`, else a new one is issued.
//! This module must never print a kubeconfig anywhere but where the caller asks (it holds a token).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;

use crate::auth::{Role, Token, TokenError, TokenStore};
use crate::files::write_private;

/// Failures while writing or reading kubeconfigs.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to read {path}: {source}; start `berth server --data-dir {dir}` once to create it"
    )]
    Read {
        path: PathBuf,
        dir: String,
        source: std::io::Error,
    },
}

/// The file name of a role's kubeconfig inside the data dir.
pub fn file_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin.kubeconfig",
        Role::Viewer => "viewer.kubeconfig",
        Role::Node => "node.kubeconfig",
    }
}

/// The URL clients use for a listen address: an unspecified host (0.0.0.0, ::) becomes loopback.
pub fn server_url(listen: SocketAddr) -> String {
    let ip = listen.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("https://{host}:{}", listen.port())
}

/// Renders a kubeconfig document.
pub fn render(server: &str, ca_pem: &str, role: Role, token: &Token) -> String {
    let user = role.user();
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "berth", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
        }}],
        "users": [{"name": user, "user": {"token": token.expose()}}],
        "contexts": [{"name": format!("{user}@berth"), "context": {"cluster": "berth", "user": user, "namespace": "default"}}],
        "current-context": format!("{user}@berth"),
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("kubeconfig serializes")
}

fn existing_token(path: &Path) -> Option<Token> {
    let text = fs::read_to_string(path).ok()?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let token = doc
        .get("users")?
        .get(0)?
        .get("user")?
        .get("token")?
        .as_str()?;
    Some(Token::from_string(token.to_string()))
}

/// Writes `admin.kubeconfig` and `viewer.kubeconfig`, reusing valid tokens and issuing missing ones.
pub fn write_all(
    data_dir: &Path,
    listen: SocketAddr,
    ca_pem: &str,
    tokens: &mut TokenStore,
) -> Result<(), KubeconfigError> {
    let url = server_url(listen);
    for role in [Role::Admin, Role::Viewer] {
        let path = data_dir.join(file_name(role));
        let token = match existing_token(&path) {
            Some(t) if tokens.matches(role, &t) => t,
            _ => tokens.issue(role)?,
        };
        let text = render(&url, ca_pem, role, &token);
        write_private(&path, text.as_bytes()).map_err(|source| KubeconfigError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Writes `node.kubeconfig` (0600) for the node token, so `kubectl --kubeconfig` can act as `system:node`.
pub fn write_node(
    data_dir: &Path,
    listen: SocketAddr,
    ca_pem: &str,
    token: &Token,
) -> Result<PathBuf, KubeconfigError> {
    let path = data_dir.join(file_name(Role::Node));
    let text = render(&server_url(listen), ca_pem, Role::Node, token);
    write_private(&path, text.as_bytes()).map_err(|source| KubeconfigError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads a role's kubeconfig from a data dir (for `berth kubeconfig`).
pub fn read(data_dir: &Path, role: Role) -> Result<String, KubeconfigError> {
    let path = data_dir.join(file_name(role));
    fs::read_to_string(&path).map_err(|source| KubeconfigError::Read {
        path: path.clone(),
        dir: data_dir.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_tokens_survive_restart_and_url_follows_listen() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = TokenStore::open(dir.path()).unwrap();
        write_all(
            dir.path(),
            "127.0.0.1:7000".parse().unwrap(),
            "CA",
            &mut tokens,
        )
        .unwrap();
        let first = existing_token(&dir.path().join("admin.kubeconfig")).unwrap();
        let mut tokens = TokenStore::open(dir.path()).unwrap();
        write_all(
            dir.path(),
            "0.0.0.0:7001".parse().unwrap(),
            "CA",
            &mut tokens,
        )
        .unwrap();
        let text = read(dir.path(), Role::Admin).unwrap();
        assert!(text.contains("https://127.0.0.1:7001"));
        assert_eq!(
            existing_token(&dir.path().join("admin.kubeconfig")).unwrap(),
            first
        );
        let auth = tokens.authenticator();
        assert_eq!(
            auth.authenticate(&format!("Bearer {}", first.expose())),
            Some(Role::Admin)
        );
        let viewer = existing_token(&dir.path().join("viewer.kubeconfig")).unwrap();
        assert_eq!(
            auth.authenticate(&format!("Bearer {}", viewer.expose())),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn ipv6_listen_addresses_are_bracketed() {
        assert_eq!(
            server_url("[::1]:6443".parse().unwrap()),
            "https://[::1]:6443"
        );
    }
}
