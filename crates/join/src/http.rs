//! The HTTP layer both join-crate servers share: the join API over TLS on TCP and the token
//! admin on the unix socket. One accept loop, one way to serve a connection (with a deadline for
//! the request headers, so a silent client cannot hold a connection open), one bounded JSON body
//! reader, and one shape of answer: JSON, errors as [`ErrorResponse`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::api::ErrorResponse;

/// Every answer of the join crate's servers.
pub type HttpResponse = Response<Full<Bytes>>;

/// Largest request body accepted (a CSR is about 1 KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time a client gets to send its request headers (and, on the join API, for the TLS handshake).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A refused request: the answer for the client and what the log says.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) token_id: Option<String>,
    /// Counts against the source's rate limit.
    pub(crate) failed_auth: bool,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            token_id: None,
            failed_auth: false,
        }
    }

    /// The answer the client gets.
    pub(crate) fn into_response(self) -> HttpResponse {
        error_response(self.status, self.message)
    }
}

/// A listener whose connections the servers take: TCP for the join API, unix for the admin.
pub(crate) trait Listener {
    type Connection: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;
}

impl Listener for TcpListener {
    type Connection = (TcpStream, std::net::SocketAddr);
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send {
        TcpListener::accept(self)
    }
}

impl Listener for UnixListener {
    type Connection = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        Ok(UnixListener::accept(self).await?.0)
    }
}

/// Hands every connection of `listener` to `handle` until `shutdown` completes; `server` names
/// the server in the log.
pub(crate) async fn accept_until<L: Listener>(
    listener: L,
    server: &'static str,
    shutdown: impl Future<Output = ()>,
    mut handle: impl FnMut(L::Connection),
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(connection) => handle(connection),
                Err(err) => {
                    tracing::warn!(%err, server, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}

/// Serves HTTP/1.1 requests on `io` with `answer` until the client closes the connection.
pub(crate) async fn serve_connection<I, F, A>(io: I, answer: F) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> A + Send + 'static,
    A: Future<Output = HttpResponse> + Send + 'static,
{
    let service = service_fn(move |request| {
        let answered = answer(request);
        async move { Ok::<_, Infallible>(answered.await) }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// The request's JSON body, at most 64 KiB.
pub(crate) async fn read_json<T: DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, Refusal> {
    let bad_request = |why: String| Refusal::new(StatusCode::BAD_REQUEST, why);
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| bad_request(format!("request body unreadable: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("request body is not the expected JSON: {e}")))
}

/// `body` as a JSON answer with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    let json = serde_json::to_vec(body).expect("answers serialize");
    let mut response = Response::new(Full::new(Bytes::from(json)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    response
}

/// An error answer: `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json_response(
        status,
        &ErrorResponse {
            error: message.into(),
        },
    )
}
