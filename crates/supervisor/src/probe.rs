//! Readiness probes: TCP connect, HTTP(S) GET, unix socket connect, exec.
//!
//! HTTPS is verified against the CA given in the probe: a probe without a CA is refused rather
//! than trusting the system roots (cluster components use cluster CAs) or nothing at all.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::Command;

use crate::spec::Probe;

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::None => f.write_str("none"),
            Probe::Tcp(address) => write!(f, "tcp {address}"),
            Probe::Http { url, .. } => write!(f, "GET {url}"),
            Probe::UnixSocket(path) => write!(f, "unix socket {}", path.display()),
            Probe::Exec { path, args } => write!(f, "exec {} {}", path.display(), args.join(" ")),
        }
    }
}

/// Runs one check, bounded by `timeout`; `Err` says why it did not pass.
pub async fn check(probe: &Probe, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, attempt(probe)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn attempt(probe: &Probe) -> Result<(), String> {
    match probe {
        Probe::None => Ok(()),
        Probe::Tcp(address) => TcpStream::connect(address)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Probe::UnixSocket(path) => UnixStream::connect(path)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Probe::Exec { path, args } => exec(path, args).await,
        Probe::Http {
            url,
            ca,
            client_cert,
            client_key,
        } => {
            let tls = TlsFiles {
                ca: ca.as_deref(),
                cert: client_cert.as_deref(),
                key: client_key.as_deref(),
            };
            http_get(url, &tls).await
        }
    }
}

async fn exec(path: &Path, args: &[String]) -> Result<(), String> {
    let status = Command::new(path)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}

struct TlsFiles<'a> {
    ca: Option<&'a Path>,
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
}

async fn http_get(url: &str, tls: &TlsFiles<'_>) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url}: only http and https URLs can be probed")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    if https {
        let config = client_config(tls)?;
        let name = ServerName::try_from(host).map_err(|e| format!("{url}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        get(stream, &uri).await
    } else {
        get(tcp, &uri).await
    }
}

async fn get<S>(stream: S, uri: &Uri) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or("", |a| a.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await;
    connection.abort();
    let status = response.map_err(|e| e.to_string())?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

fn client_config(tls: &TlsFiles<'_>) -> Result<ClientConfig, String> {
    let ca = tls
        .ca
        .ok_or("https probes need a CA to verify the server; set the probe's ca")?;
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (tls.cert, tls.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(read_certs(cert)?, key)
                .map_err(|e| format!("{}: {e}", cert.display()))
        }
        _ => Err("a probe's client_cert and client_key must be given together".into()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}
