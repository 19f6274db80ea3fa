//! Bearer-token authentication and the three built-in identities. Tokens are generated on first start (admin,
//! read-only viewer, and the node identity `system:node` that agents use); the server keeps only their SHA-256
//! digests (`tokens.json`, 0600) and each token itself lives only in its kubeconfig or, for the node, in
//! `node.token` (0600). Authorization is role based: the viewer may only read. This module must never log, format
//! or echo a token: [`Token`] redacts itself in Debug and Display.

use std::fs;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::write_private;

/// A bearer token. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Token(hex::encode(bytes))
    }
    pub fn from_string(s: String) -> Self {
        Token(s)
    }
    /// The secret value, for writing a kubeconfig only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every verb on every resource.
    Admin,
    /// get, list and watch only.
    Viewer,
    /// A node agent (`system:node`): registers its Node, reads the pods bound to it and the Secrets they name,
    /// writes pod status and Events.
    Node,
}

impl Role {
    /// The user name reported in Forbidden messages.
    pub fn user(self) -> &'static str {
        match self {
            Role::Admin => "berth-admin",
            Role::Viewer => "berth-viewer",
            Role::Node => "system:node",
        }
    }
    pub fn may_write(self) -> bool {
        matches!(self, Role::Admin | Role::Node)
    }
}

/// Failures while loading or storing token digests.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid token file: {detail}; remove it (and the kubeconfigs) to issue new tokens"
    )]
    Parse { path: PathBuf, detail: String },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TokenFile {
    #[serde(default)]
    admin_sha256: Option<String>,
    #[serde(default)]
    viewer_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_sha256: Option<String>,
}

/// The digests the server checks bearer tokens against.
#[derive(Debug, Clone)]
pub struct Authenticator {
    admin: Option<[u8; 32]>,
    viewer: Option<[u8; 32]>,
    node: Option<[u8; 32]>,
}

fn parse_digest(s: &Option<String>) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.as_deref()?).ok()?;
    bytes.try_into().ok()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Authenticator {
    /// Maps an `Authorization` header value to a role; `None` when absent or not a known bearer token.
    pub fn authenticate(&self, header: &str) -> Option<Role> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))?
            .trim();
        if token.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every digest in constant time so timing never tells which role (if any) matched.
        let admin = self.admin.as_ref().is_some_and(|d| ct_eq(d, &digest));
        let viewer = self.viewer.as_ref().is_some_and(|d| ct_eq(d, &digest));
        let node = self.node.as_ref().is_some_and(|d| ct_eq(d, &digest));
        if admin {
            Some(Role::Admin)
        } else if viewer {
            Some(Role::Viewer)
        } else if node {
            Some(Role::Node)
        } else {
            None
        }
    }
}

/// The token store of a data directory (`tokens.json`).
pub struct TokenStore {
    path: PathBuf,
    file: TokenFile,
}

impl TokenStore {
    pub fn open(data_dir: &Path) -> Result<Self, TokenError> {
        let path = data_dir.join("tokens.json");
        let file = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenError::Parse {
                path: path.clone(),
                detail: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(source) => return Err(TokenError::Read { path, source }),
        };
        Ok(Self { path, file })
    }

    fn slot(&mut self, role: Role) -> &mut Option<String> {
        match role {
            Role::Admin => &mut self.file.admin_sha256,
            Role::Viewer => &mut self.file.viewer_sha256,
            Role::Node => &mut self.file.node_sha256,
        }
    }

    /// True when `token` is the current token of `role`.
    pub fn matches(&mut self, role: Role, token: &Token) -> bool {
        self.slot(role).as_deref() == Some(token.digest().as_str())
    }

    /// Issues a new token for `role`, replacing the previous one, and persists its digest.
    pub fn issue(&mut self, role: Role) -> Result<Token, TokenError> {
        let token = Token::generate();
        *self.slot(role) = Some(token.digest());
        let bytes = serde_json::to_vec_pretty(&self.file).expect("token file serializes");
        write_private(&self.path, &bytes).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(token)
    }

    pub fn authenticator(&self) -> Authenticator {
        Authenticator {
            admin: parse_digest(&self.file.admin_sha256),
            viewer: parse_digest(&self.file.viewer_sha256),
            node: parse_digest(&self.file.node_sha256),
        }
    }
}

/// The file holding the node token's raw value inside a data dir.
pub const NODE_TOKEN_FILE: &str = "node.token";

/// Ensures `<data-dir>/node.token` (0600) holds the current node token: an existing file whose digest matches
/// `tokens.json` is kept (the token is stable across restarts), anything else is replaced by a newly issued token.
/// Returns the file and the token.
pub fn ensure_node_token(
    data_dir: &Path,
    tokens: &mut TokenStore,
) -> Result<(PathBuf, Token), TokenError> {
    let path = data_dir.join(NODE_TOKEN_FILE);
    let existing = fs::read_to_string(&path)
        .ok()
        .map(|s| Token::from_string(s.trim().to_string()));
    if let Some(token) = existing
        && !token.expose().is_empty()
        && tokens.matches(Role::Node, &token)
    {
        return Ok((path, token));
    }
    let token = tokens.issue(Role::Node)?;
    write_private(&path, format!("{}\n", token.expose()).as_bytes()).map_err(|source| {
        TokenError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok((path, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_authenticate_as_their_role_and_others_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        let admin = store.issue(Role::Admin).unwrap();
        let viewer = store.issue(Role::Viewer).unwrap();
        let auth = TokenStore::open(dir.path()).unwrap().authenticator();
        assert_eq!(
            auth.authenticate(&format!("Bearer {}", admin.expose())),
            Some(Role::Admin)
        );
        assert_eq!(
            auth.authenticate(&format!("Bearer {}", viewer.expose())),
            Some(Role::Viewer)
        );
        assert_eq!(auth.authenticate("Bearer nope"), None);
        assert_eq!(auth.authenticate(admin.expose()), None);
        assert_eq!(auth.authenticate("Bearer "), None);
    }

    #[test]
    fn node_token_is_created_0600_on_first_start_stable_across_restarts_and_authenticates_as_system_node()
     {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        store.issue(Role::Admin).unwrap();
        let (path, _) = ensure_node_token(dir.path(), &mut store).unwrap();
        assert_eq!(path, dir.path().join("node.token"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = fs::read_to_string(&path).unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        ensure_node_token(dir.path(), &mut store).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
        let auth = store.authenticator();
        let role = auth.authenticate(&format!("Bearer {}", first.trim()));
        assert_eq!(role, Some(Role::Node));
        assert_eq!(Role::Node.user(), "system:node");
        assert!(Role::Node.may_write());
        // A tampered file is replaced by a new token; the old value stops working.
        fs::write(&path, "forged\n").unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        ensure_node_token(dir.path(), &mut store).unwrap();
        let renewed = fs::read_to_string(&path).unwrap();
        assert_ne!(renewed, first);
        let auth = store.authenticator();
        assert_eq!(auth.authenticate(&format!("Bearer {}", first.trim())), None);
        assert_eq!(auth.authenticate("Bearer forged"), None);
    }

    #[test]
    fn token_file_holds_only_digests() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        let admin = store.issue(Role::Admin).unwrap();
        let text = fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!text.contains(admin.expose()));
        assert!(store.matches(Role::Admin, &admin));
    }

    #[test]
    fn token_debug_and_display_are_redacted() {
        let t = Token::from_string("s3cr3t".into());
        assert!(!format!("{t:?} {t}").contains("s3cr3t"));
    }
}
