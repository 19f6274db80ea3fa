//! Errors of the etcd backend: [`EtcdError`] for connecting and leader election, and the
//! translation of etcd client failures into `store::StoreError` for storage calls. It owns the
//! classification of gRPC failures (compacted, future revision, retryable before sending) and
//! must never put a stored value or TLS key material in a message.

use std::path::PathBuf;

use store::StoreError;

/// Failures outside the storage trait: configuration, connecting, leader election.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The datastore URL cannot be parsed.
    #[error("invalid etcd datastore url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The TLS settings are inconsistent.
    #[error("etcd tls settings for {url}: {reason}")]
    TlsConfig { url: String, reason: String },

    /// A TLS file cannot be read.
    #[error("cannot read etcd {what} {path}: {source}; check the path and its permissions")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No endpoint answered within the dial timeout.
    #[error("no etcd member answered at {url} within {timeout_secs}s: {reason}; {hint}")]
    Unreachable {
        url: String,
        timeout_secs: u64,
        reason: String,
        /// What to check (see [`unreachable_hint`]).
        hint: &'static str,
    },

    /// A leader election request failed.
    #[error("leader election {name:?} on {url}: {reason}")]
    Election {
        name: String,
        url: String,
        reason: String,
    },
}

/// The fix to suggest when no member answered. A rejected client certificate often shows
/// only as a closed connection (TLS 1.3 reports it after the handshake), so with TLS the hint
/// always covers the certificate files.
pub(crate) fn unreachable_hint(tls: bool) -> &'static str {
    if tls {
        "check that etcd is running and serving TLS on these client URLs, that --etcd-cafile \
         signs the members' serving certificates, and that --etcd-certfile and --etcd-keyfile \
         are set to a certificate of the members' --trusted-ca-file when they use \
         --client-cert-auth"
    } else {
        "check that etcd is running and listening on these client URLs (and that etcd:// vs \
         etcds:// matches its --listen-client-urls)"
    }
}

/// What kind of request failed; decides whether it may be retried on another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reads are idempotent: retried on any transport failure.
    Read,
    /// Writes are retried only when the request certainly never reached a member.
    Write,
}

/// The message of an etcd-client error without its `grpc request error:` wrapper noise.
pub(crate) fn describe(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let mut text = format!("{:?}: {}", status.code(), status.message());
            append_sources(&mut text, std::error::Error::source(status));
            text
        }
        etcd_client::Error::TransportError(e) => {
            let mut text = e.to_string();
            append_sources(&mut text, std::error::Error::source(e));
            text
        }
        other => other.to_string(),
    }
}

/// Appends the causes of a transport failure (connection refused, TLS handshake alerts), which
/// tonic keeps out of its own message.
fn append_sources(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}

/// True when etcd refused a read because the revision was compacted.
pub(crate) fn is_compacted(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

/// True when etcd refused a read or compaction because the revision is in the future.
pub(crate) fn is_future_revision(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision is a future revision"))
}

/// True when retrying `err` on (possibly) another member is safe for an operation of kind `op`.
pub(crate) fn is_retryable(err: &etcd_client::Error, op: Op) -> bool {
    let etcd_client::Error::GRpcStatus(status) = err else {
        // Transport setup errors (the channel could not be used at all).
        return matches!(err, etcd_client::Error::TransportError(_));
    };
    let message = status.message();
    // The request never left this process, or etcd refused it before proposing it.
    let not_sent = status.code() == tonic::Code::Unavailable
        && (message.contains("connect")
            || message.contains("Connection refused")
            || message.contains("no leader")
            || message.contains("not capable"));
    match op {
        Op::Write => not_sent,
        Op::Read => {
            not_sent
                || matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                )
                || message.contains("leader changed")
                || message.contains("request timed out")
        }
    }
}

/// True when a write failed without telling whether etcd applied it (the request reached a
/// member, then the connection broke, the leader changed or the proposal timed out). The
/// caller must read the key to learn the outcome before retrying.
pub(crate) fn is_ambiguous(err: &etcd_client::Error) -> bool {
    if is_retryable(err, Op::Write) {
        return false;
    }
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Internal
            ) || status.message().contains("request timed out")
                || status.message().contains("leader changed")
        }
        _ => false,
    }
}

/// A storage call failed in etcd (not a storage-level outcome such as a conflict): the
/// datastore is unavailable (HTTP 503), named by its endpoints:
/// `datastore etcd://127.0.0.1:2379 is unavailable: create /registry/...: ...`.
pub(crate) fn backend(url: &str, what: &str, err: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable {
        backend: url.to_owned(),
        reason: format!("{what}: {}", describe(err)),
    }
}

/// etcd answered with something the storage contract cannot represent.
pub(crate) fn protocol(url: &str, what: &str, detail: String) -> StoreError {
    StoreError::Io {
        path: PathBuf::from(url),
        context: "unexpected etcd answer from",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn writes_retry_only_when_the_request_was_never_sent() {
        let refused = status(
            tonic::Code::Unavailable,
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
        );
        let no_leader = status(tonic::Code::Unavailable, "etcdserver: no leader");
        let reset = status(tonic::Code::Unknown, "transport error");
        let timeout = status(tonic::Code::Unavailable, "etcdserver: request timed out");
        assert!(is_retryable(&refused, Op::Write));
        assert!(is_retryable(&no_leader, Op::Write));
        assert!(!is_retryable(&reset, Op::Write));
        assert!(!is_retryable(&timeout, Op::Write));
        assert!(is_retryable(&reset, Op::Read));
        assert!(is_retryable(&timeout, Op::Read));
        assert!(is_ambiguous(&reset) && is_ambiguous(&timeout));
        assert!(!is_ambiguous(&refused) && !is_ambiguous(&no_leader));
    }

    #[test]
    fn storage_level_errors_are_never_retried() {
        let compacted = status(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert!(is_compacted(&compacted));
        assert!(!is_retryable(&compacted, Op::Read));
        let future = status(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        assert!(is_future_revision(&future));
        assert!(!is_retryable(&future, Op::Write));
        assert!(!is_ambiguous(&compacted) && !is_ambiguous(&future));
    }

    #[test]
    fn backend_error_names_the_endpoints_and_the_operation() {
        let err = backend(
            "etcd://127.0.0.1:2379",
            "get /registry/core/pods/a",
            &status(tonic::Code::Unavailable, "etcdserver: request timed out"),
        );
        assert_eq!(
            err.http_status_hint(),
            503,
            "an unreachable datastore is a 503"
        );
        let text = err.to_string();
        assert!(
            text.contains("etcd://127.0.0.1:2379")
                && text.contains("get /registry/core/pods/a")
                && text.contains("request timed out"),
            "{text}"
        );
    }
}
