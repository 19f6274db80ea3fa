//! The HTTP(S) listener shared by the in-process fixtures (token server, front proxy, CDN): binds a free port
//! on a loopback IP, terminates TLS with rustls, serves HTTP/1.1 with hyper, and runs on a runtime owned by
//! the fixture so servers keep answering even when a test blocks its own runtime; dropping it stops the
//! listener and every connection. It owns no request semantics and must never listen off loopback.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

/// Boxed error of response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body of every fixture server.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// A request handler.
pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A body with these bytes.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body streamed from chunks.
pub(crate) fn stream_body<S>(s: S) -> Body
where
    S: futures_util::Stream<Item = std::result::Result<Bytes, BoxError>> + Send + 'static,
{
    use futures_util::TryStreamExt;
    http_body_util::StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// A running listener; dropping it shuts its runtime down (closing the listener and all connections).
pub(crate) struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Binds `ip:0` and serves `handler`, over TLS when `tls` is given.
    pub(crate) fn start(
        ip: IpAddr,
        tls: Option<rustls::ServerConfig>,
        handler: Handler,
    ) -> Result<Server> {
        if !ip.is_loopback() {
            return Err(Error::Option {
                field: "ip",
                message: format!("{ip} is not a loopback address; tests only use loopback"),
            });
        }
        let listener = std::net::TcpListener::bind((ip, 0))
            .map_err(Error::io("binding a listener on", ip.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("configuring listener on", ip.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("reading listener address on", ip.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit-server")
            .enable_all()
            .build()
            .map_err(Error::io(
                "starting runtime for listener on",
                addr.to_string(),
            ))?;
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(_) => return,
            };
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(stream) = a.accept(tcp).await {
                                serve(stream, handler).await;
                            }
                        }
                        None => serve(tcp, handler).await,
                    }
                });
            }
        });
        Ok(Server {
            addr,
            runtime: Some(runtime),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve<IO>(io: IO, handler: Handler)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Header pairs of a request, lowercase names, values lossily decoded.
pub(crate) fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// An OCI error body `{"errors":[{"code","message"}]}`.
pub(crate) fn oci_error(code: &str, message: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({"errors": [{"code": code, "message": message}]}))
            .expect("error body serializes"),
    )
}

/// A response with a status, headers and a body.
pub(crate) fn respond(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v.as_str());
    }
    r.body(full(body)).unwrap_or_else(|_| {
        let mut resp = Response::new(full(Bytes::from_static(b"bad injected response")));
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}
