//! Blob download as a bounded, resuming stream of `Bytes`, and a verifying wrapper.
//!
//! Owns [`BlobStream`]: it yields only bytes within the descriptor's size (the byte at size+1 is an
//! error, and a `Content-Length` above the size fails before any byte is read), resumes after a
//! dropped connection with `Range: bytes=N-` (validating `Content-Range`; when a server ignores the
//! range and answers 200, it discards the first N bytes), gives up after a bounded number of
//! resumes without progress (a body that yields no byte for the no-progress timeout is such a
//! failure, and is resumed too), and fails with a clear "too slow" error when fewer than the
//! configured minimum bytes arrive in a throughput window, resumes included, so neither a trickle
//! nor a connection that drops after every chunk holds a pull forever. It asks for
//! `Accept-Encoding: identity` so the size bound is the wire size. [`VerifyingStream`] hashes what
//! passes through and turns a digest or size mismatch into the final item. Neither touches a disk: the caller's content store does the verified commit, and callers
//! must not treat bytes as trusted before the stream (or the store) has verified them.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use oci::{Digest, Digester};

use crate::client::{Followed, MinThroughput};
use crate::error::{RegistryError, Role, render_chain};
use crate::origin::{HostPort, Origin};
use crate::repository::{Need, Repository, Target, What};

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// A blob body as a stream of chunks within the declared size.
pub struct BlobStream {
    inner: Inner,
    digest: Digest,
    size: u64,
    offset: u64,
    served_by: Option<(HostPort, Role)>,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The blob digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// The declared size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The offset the stream started at.
    pub fn start_offset(&self) -> u64 {
        self.offset
    }
    /// The host:port (and its role: the registry or a redirect target such as a CDN) that
    /// answered the first request, after redirects; `None` when nothing had to be requested.
    pub fn served_by(&self) -> Option<(&HostPort, Role)> {
        self.served_by.as_ref().map(|(h, r)| (h, *r))
    }
    /// Wraps this stream so that it verifies the digest (only valid from offset 0; use
    /// [`VerifyingStream::resume`] with the prefix's digester otherwise).
    pub fn verified(self) -> VerifyingStream<BlobStream> {
        let digest = self.digest.clone();
        let size = self.size;
        VerifyingStream::new(self, digest, size)
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Body {
    resp: reqwest::Response,
    host: HostPort,
    role: Role,
}

struct State {
    repo: Repository,
    digest: Digest,
    media_type: Option<String>,
    size: u64,
    offset: u64,
    body: Option<Body>,
    pending: Option<Bytes>,
    failures: u32,
    done: bool,
    /// [`crate::ClientConfig::min_blob_throughput`].
    min: Option<MinThroughput>,
    /// Start of the current throughput window.
    window_start: Instant,
    /// Bytes accepted in the current throughput window.
    window_bytes: u64,
}

impl State {
    fn what(&self) -> String {
        format!("blob {}", self.digest)
    }

    fn short_read(&self, host: &HostPort, cause: String) -> RegistryError {
        RegistryError::ShortRead {
            host: host.clone(),
            digest: self.digest.to_string(),
            expected: self.size,
            got: self.offset,
            cause,
        }
    }

    /// Fails with [`RegistryError::TooSlow`] when the current throughput window is over and fewer
    /// than the minimum bytes arrived in it; starts the next window otherwise.
    fn check_throughput(&mut self, host: &HostPort, role: Role) -> Result<(), RegistryError> {
        let Some(min) = self.min else {
            return Ok(());
        };
        let now = Instant::now();
        if now.duration_since(self.window_start) < min.window {
            return Ok(());
        }
        if self.window_bytes < min.bytes {
            return Err(RegistryError::TooSlow {
                host: host.clone(),
                role,
                what: self.what(),
                got: self.window_bytes,
                min_bytes: min.bytes,
                window: min.window,
            });
        }
        self.window_start = now;
        self.window_bytes = 0;
        Ok(())
    }

    /// Time until the current throughput window ends (`None` without a minimum).
    fn window_left(&self) -> Option<Duration> {
        self.min
            .map(|m| m.window.saturating_sub(self.window_start.elapsed()))
    }

    /// Opens the body at the current offset on the first endpoint that may pull and serves it.
    async fn open(&mut self) -> Result<(), RegistryError> {
        for t in self.repo.targets(Need::Pull)? {
            match self.open_at(&t).await {
                Ok(()) => return Ok(()),
                Err(e) => self.repo.fail_over(&t, e)?,
            }
        }
        unreachable!("fail_over returns the last endpoint's error")
    }

    async fn open_at(&mut self, t: &Target) -> Result<(), RegistryError> {
        let repo = self.repo.clone();
        let rest = format!("/{}/blobs/{}", repo.name(), self.digest);
        let mut headers = HeaderMap::new();
        let accept = match &self.media_type {
            Some(m) => format!("{m}, */*"),
            None => "*/*".to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::ACCEPT, v);
        }
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if self.offset > 0 {
            headers.insert(
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={}-", self.offset)).expect("ascii"),
            );
        }
        let what = What(self.what());
        let f = repo.request(t, Method::GET, &rest, headers, &what).await?;
        let host = Origin::of(&f.url)
            .map(|o| o.host)
            .unwrap_or_else(|| repo.host().clone());
        let role = f.role;
        let remaining = self.size - self.offset;
        match f.resp.status() {
            StatusCode::OK => {
                if let Some(cl) = f.resp.content_length()
                    && cl > self.size
                {
                    return Err(RegistryError::SizeExceeded {
                        host,
                        digest: self.digest.to_string(),
                        size: self.size,
                    });
                }
                let mut body = Body {
                    resp: f.resp,
                    host,
                    role,
                };
                if self.offset > 0 {
                    // the server ignored Range: skip what we already have
                    tracing::debug!(digest = %self.digest, offset = self.offset, "server ignored Range, discarding prefix");
                    let mut skip = self.offset;
                    while skip > 0 {
                        let c = self.read_chunk(&mut body).await?;
                        let Some(c) = c else {
                            return Err(self.short_read(
                                &body.host,
                                "body ended while skipping to the resume offset".into(),
                            ));
                        };
                        if (c.len() as u64) <= skip {
                            skip -= c.len() as u64;
                        } else {
                            self.pending = Some(c.slice(skip as usize..));
                            skip = 0;
                        }
                    }
                }
                self.body = Some(body);
                Ok(())
            }
            StatusCode::PARTIAL_CONTENT => {
                let cr = f
                    .resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                match parse_content_range(&cr) {
                    Some((start, _end, total)) if start == self.offset => {
                        if let Some(t) = total
                            && t != self.size
                        {
                            return Err(RegistryError::Protocol {
                                host,
                                role,
                                reason: format!(
                                    "blob {} is {t} bytes according to Content-Range, but its descriptor says {}",
                                    self.digest, self.size
                                ),
                            });
                        }
                    }
                    _ => {
                        return Err(RegistryError::Protocol {
                            host,
                            role,
                            reason: format!(
                                "unhandled content range in response: asked for bytes={}-, got Content-Range {:?}",
                                self.offset, cr
                            ),
                        });
                    }
                }
                if let Some(cl) = f.resp.content_length()
                    && cl > remaining
                {
                    return Err(RegistryError::SizeExceeded {
                        host,
                        digest: self.digest.to_string(),
                        size: self.size,
                    });
                }
                self.body = Some(Body {
                    resp: f.resp,
                    host,
                    role,
                });
                Ok(())
            }
            StatusCode::RANGE_NOT_SATISFIABLE => Err(RegistryError::Protocol {
                host,
                role,
                reason: format!(
                    "range bytes={}- of blob {} not satisfiable (descriptor size {})",
                    self.offset, self.digest, self.size
                ),
            }),
            _ => Err(self.error_for(f, &what).await),
        }
    }

    async fn error_for(&self, f: Followed, what: &What) -> RegistryError {
        self.repo.status_error(f, "GET", what).await
    }

    /// The next chunk of `body`. Fails as stalled when nothing arrives for the no-progress
    /// timeout, and as too slow when a throughput window ends below the minimum (checked at each
    /// window's end even while no chunk arrives).
    async fn read_chunk(&mut self, body: &mut Body) -> Result<Option<Bytes>, RegistryError> {
        let timeout = self.repo.inner.client.config().no_progress_timeout;
        let started = Instant::now();
        loop {
            self.check_throughput(&body.host, body.role)?;
            let stall_left = timeout.saturating_sub(started.elapsed());
            if stall_left.is_zero() {
                return Err(RegistryError::Stalled {
                    host: body.host.clone(),
                    role: body.role,
                    what: self.what(),
                    after: timeout,
                });
            }
            let wait = match self.window_left() {
                // just past the window's end, so the check above sees it over
                Some(w) => stall_left.min(w + Duration::from_millis(1)),
                None => stall_left,
            };
            // `chunk` is cancel-safe: a timed-out wait loses no data
            match tokio::time::timeout(wait, body.resp.chunk()).await {
                Err(_) => continue,
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => {
                    return Err(self.short_read(&body.host, render_chain(&e.without_url())));
                }
            }
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, RegistryError>> {
        let policy = self.repo.inner.client.config().retry.clone();
        loop {
            if self.done {
                return None;
            }
            if let Some(p) = self.pending.take() {
                return Some(self.accept(p));
            }
            if self.body.is_none() {
                if self.offset == self.size {
                    self.done = true;
                    return None;
                }
                let registry = self.repo.host().clone();
                if let Err(e) = self.check_throughput(&registry, Role::Registry) {
                    self.done = true;
                    return Some(Err(e));
                }
                if let Err(e) = self.open().await {
                    let retryable = matches!(
                        e,
                        RegistryError::Network { .. }
                            | RegistryError::ShortRead { .. }
                            | RegistryError::Stalled { .. }
                    );
                    if retryable && self.failures < policy.max_resume_without_progress {
                        self.failures += 1;
                        tokio::time::sleep(policy.backoff(self.failures)).await;
                        continue;
                    }
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let mut body = self.body.take().expect("checked");
            let r = self.read_chunk(&mut body).await;
            match r {
                Ok(Some(c)) if c.is_empty() => self.body = Some(body),
                Ok(Some(c)) => {
                    self.body = Some(body);
                    return Some(self.accept(c));
                }
                Ok(None) if self.offset == self.size => {
                    self.done = true;
                    return None;
                }
                Err(_) if self.offset == self.size => {
                    // everything arrived; a broken connection after the last byte does not matter
                    self.done = true;
                    return None;
                }
                Err(e @ RegistryError::TooSlow { .. }) => {
                    self.done = true;
                    return Some(Err(e));
                }
                other => {
                    // a broken or stalled body: resume with Range within the budget
                    let (cause, stalled) = match other {
                        Err(e @ RegistryError::Stalled { .. }) => (e.to_string(), Some(e)),
                        Err(e) => (e.to_string(), None),
                        _ => (
                            "connection closed before the end of the blob".to_string(),
                            None,
                        ),
                    };
                    if self.failures >= policy.max_resume_without_progress {
                        self.done = true;
                        return Some(Err(match stalled {
                            Some(e) => e,
                            None => self.short_read(&body.host, cause),
                        }));
                    }
                    self.failures += 1;
                    tracing::info!(digest = %self.digest, offset = self.offset, attempt = self.failures, %cause, "blob body broke, resuming with Range");
                    tokio::time::sleep(policy.backoff(self.failures)).await;
                }
            }
        }
    }

    fn accept(&mut self, c: Bytes) -> Result<Bytes, RegistryError> {
        if self.offset + c.len() as u64 > self.size {
            self.done = true;
            let host = self
                .body
                .as_ref()
                .map(|b| b.host.clone())
                .unwrap_or_else(|| self.repo.host().clone());
            return Err(RegistryError::SizeExceeded {
                host,
                digest: self.digest.to_string(),
                size: self.size,
            });
        }
        self.offset += c.len() as u64;
        self.window_bytes += c.len() as u64;
        self.failures = 0;
        Ok(c)
    }
}

/// Parses `bytes start-end/total` (total may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let start: u64 = s.trim().parse().ok()?;
    let end: u64 = e.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, end, total))
}

impl Repository {
    /// Streams a blob from `offset` (0 for the whole blob). The stream yields at most
    /// `size - offset` bytes, resuming on dropped connections.
    pub async fn fetch_blob_digest(
        &self,
        digest: &Digest,
        size: u64,
        media_type: Option<&str>,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        if size == 0 {
            return Err(RegistryError::Unsupported(format!(
                "unable to fetch blob {digest} from {}/{}: its descriptor reports a size of zero",
                self.host(),
                self.name()
            )));
        }
        if offset > size {
            return Err(RegistryError::Unsupported(format!(
                "cannot resume blob {digest} at offset {offset}: beyond its size {size}"
            )));
        }
        let mut st = State {
            repo: self.clone(),
            digest: digest.clone(),
            media_type: media_type.map(str::to_string),
            size,
            offset,
            body: None,
            pending: None,
            failures: 0,
            done: false,
            min: self
                .inner
                .client
                .config()
                .min_blob_throughput
                .filter(|m| !m.window.is_zero()),
            window_start: Instant::now(),
            window_bytes: 0,
        };
        if offset < size {
            // open eagerly so auth, not-found and TLS errors surface from this call
            st.open().await?;
        }
        let served_by = st.body.as_ref().map(|b| (b.host.clone(), b.role));
        let inner = futures_util::stream::unfold(st, |mut st| async move {
            st.next().await.map(|item| (item, st))
        });
        Ok(BlobStream {
            inner: Box::pin(inner),
            digest: digest.clone(),
            size,
            offset,
            served_by,
        })
    }
}

/// Verifies the digest and size of what passes through. Bytes are yielded as they arrive; the
/// verdict comes as the last item (an error on mismatch), so consumers must not use the content
/// before the stream ended without error.
pub struct VerifyingStream<S> {
    inner: S,
    expected: Digest,
    size: u64,
    digester: Option<Digester>,
}

impl<S> VerifyingStream<S> {
    /// Verifies a stream that starts at byte 0.
    pub fn new(inner: S, expected: Digest, size: u64) -> Self {
        let d = Digester::new(expected.algorithm());
        Self::resume(inner, expected, size, d)
    }

    /// Verifies a stream that continues after the bytes already fed to `digester`.
    pub fn resume(inner: S, expected: Digest, size: u64, digester: Digester) -> Self {
        Self {
            inner,
            expected,
            size,
            digester: Some(digester),
        }
    }
}

impl<S> Stream for VerifyingStream<S>
where
    S: Stream<Item = Result<Bytes, RegistryError>> + Unpin,
{
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(d) = this.digester.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(c))) => {
                if d.written() + c.len() as u64 > this.size {
                    this.digester = None;
                    return Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                        what: format!("blob {}", this.expected),
                        expected: format!("{} ({} bytes)", this.expected, this.size),
                        actual: format!("more than {} bytes", this.size),
                    })));
                }
                d.update(&c);
                Poll::Ready(Some(Ok(c)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.digester = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let d = this.digester.take().expect("checked");
                let written = d.written();
                let actual = d.finish();
                if written != this.size || actual != this.expected {
                    return Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                        what: format!("blob {}", this.expected),
                        expected: format!("{} ({} bytes)", this.expected, this.size),
                        actual: format!("{actual} ({written} bytes)"),
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use futures_util::StreamExt;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, 99, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(
            parse_content_range("bytes  5-9/10 "),
            Some((5, 9, Some(10)))
        );
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range(""), None);
        assert_eq!(parse_content_range("bytes */100"), None);
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, RegistryError>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn verifying_stream_accepts_matching_content() {
        let d = Digest::sha256(b"hello world");
        let mut s = VerifyingStream::new(chunks(&[b"hello ", b"world"]), d, 11);
        let mut got = Vec::new();
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, b"hello world");
    }

    #[tokio::test]
    async fn verifying_stream_detects_flipped_byte() {
        let d = Digest::sha256(b"hello world");
        let mut s = VerifyingStream::new(chunks(&[b"hello ", b"wprld"]), d.clone(), 11);
        let mut last = None;
        while let Some(c) = s.next().await {
            last = Some(c);
        }
        let err = last.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        let msg = err.to_string();
        assert!(
            msg.contains(&d.to_string())
                && msg.contains(&Digest::sha256(b"hello wprld").to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn verifying_stream_detects_short_and_long_content() {
        let d = Digest::sha256(b"hello world");
        let mut s = VerifyingStream::new(chunks(&[b"hello"]), d.clone(), 11);
        let mut items = Vec::new();
        while let Some(c) = s.next().await {
            items.push(c);
        }
        assert!(items.last().unwrap().is_err());
        let mut s = VerifyingStream::new(chunks(&[b"hello world", b"!"]), d, 11);
        let mut items = Vec::new();
        while let Some(c) = s.next().await {
            items.push(c);
        }
        assert!(items[0].is_ok());
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("more than 11 bytes")
        );
        assert_eq!(items.len(), 2, "nothing after the verdict");
    }

    #[tokio::test]
    async fn verifying_stream_resumes_from_prefix_digester() {
        let d = Digest::sha256(b"hello world");
        let mut prefix = Digester::new(d.algorithm());
        prefix.update(b"hello ");
        let mut s = VerifyingStream::resume(chunks(&[b"world"]), d, 11, prefix);
        while let Some(c) = s.next().await {
            c.unwrap();
        }
    }
}
