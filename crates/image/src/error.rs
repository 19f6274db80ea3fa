//! Pull errors. It owns how a failed pull is explained: which credential was tried for what and
//! why it failed, in the order tried; it must never include a credential's value (only the
//! label of where it came from).

use registry::{ErrorKind, RegistryError};

/// One credential that was tried and refused.
#[derive(Debug)]
pub struct AttemptFailure {
    /// Where the credential came from (e.g. `secret "regcred" key "registry.example.com"`), or
    /// `anonymous`.
    pub label: String,
    /// Why it failed.
    pub error: RegistryError,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Every credential (or the anonymous attempt) was refused with 401/403.
    #[error("{}", render_attempts(.0))]
    Denied(Vec<AttemptFailure>),
    /// The registry, a token server or a redirect target failed in a way another credential
    /// cannot fix (TLS, network, not found, integrity, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The local content store failed (its errors name the path).
    #[error(transparent)]
    Store(#[from] content::Error),
    /// A blob's bytes did not verify at commit.
    #[error("{0}")]
    Integrity(content::Error),
    /// The image was fetched but a layer could not be unpacked into a snapshot (the unpack
    /// error names the layer, the entry and the fix).
    #[error("cannot unpack image {image}: {error}")]
    Unpack {
        /// The image record's name.
        image: String,
        /// The failing layer's digest, when the failure belongs to one layer.
        layer: Option<oci::Digest>,
        /// What failed (boxed: it is large and rare).
        error: Box<unpack::Error>,
    },
    /// The image is in the store but its record, manifest or config is unusable.
    #[error("local image {image}: {reason}; remove it with `berth rmi {image}` and pull it again")]
    Local {
        /// The image record's name.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A worker task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PullError {
    /// The registry error class, when the failure came from the registry path.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            PullError::Denied(f) => f.last().map(|a| a.error.kind()),
            PullError::Registry(e) => Some(e.kind()),
            PullError::Integrity(_) => Some(ErrorKind::Integrity),
            PullError::Store(_)
            | PullError::Unpack { .. }
            | PullError::Local { .. }
            | PullError::Internal(_) => None,
        }
    }
}

/// kubelet shows one distinct failure bare and several as `[e1, e2]`; berth adds which
/// credential produced each.
fn render_attempts(failures: &[AttemptFailure]) -> String {
    match failures {
        [] => "no credential was tried".to_string(),
        [one] if one.label == "anonymous" => one.error.to_string(),
        [one] => format!("{} (tried {})", one.error, one.label),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|a| format!("{} (tried {})", a.error, a.label))
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::{HostPort, Role};

    /// Regression: `berth pull` printed a registry failure twice, because the wrapper both showed
    /// the inner message and exposed it as its source (anyhow's `{:#}` prints the chain).
    #[test]
    fn a_wrapped_registry_error_is_shown_once_in_a_cause_chain() {
        let inner = RegistryError::Network {
            host: HostPort::new("reg.example", 5000),
            role: Role::Registry,
            request: "HEAD https://reg.example:5000/v2/app/manifests/v1".into(),
            cause: "connection refused".into(),
        };
        let text = inner.to_string();
        let err = PullError::from(inner);
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert_eq!(chain.matches(&text).count(), 1, "{chain}");
    }
}
