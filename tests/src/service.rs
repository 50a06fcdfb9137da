//! A small HTTP (or HTTPS) service for outbound tests: `GET /health` answers 200 or
//! 503 as the test flips it, `POST /alert` counts alerts, anything else
//! answers 200 with `hello`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The service's switches and counters; it stops when dropped.
pub struct TestService {
    pub addr: SocketAddr,
    scheme: &'static str,
    healthy: Arc<AtomicBool>,
    alerts: Arc<AtomicUsize>,
    health_checks: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestService {
    pub async fn start() -> anyhow::Result<Self> {
        Self::serve(None).await
    }

    /// The same service over HTTPS, presenting `tls`'s certificate.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> anyhow::Result<Self> {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls_used = tls.is_some();
        let healthy = Arc::new(AtomicBool::new(true));
        let alerts = Arc::new(AtomicUsize::new(0));
        let health_checks = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let (h, a, c) = (healthy.clone(), alerts.clone(), health_checks.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (h, a, c) = (h.clone(), a.clone(), c.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (h, a, c) = (h.clone(), a.clone(), c.clone());
                        async move {
                            let status = match (req.method().as_str(), req.uri().path()) {
                                ("GET", "/health") => {
                                    c.fetch_add(1, Ordering::SeqCst);
                                    if h.load(Ordering::SeqCst) { 200 } else { 503 }
                                }
                                ("POST", "/alert") => {
                                    a.fetch_add(1, Ordering::SeqCst);
                                    202
                                }
                                _ => 200,
                            };
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from("hello")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status)?;
                            Ok::<_, anyhow::Error>(response)
                        }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            // A client that refuses the certificate ends
                            // the handshake; nothing is served then.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            scheme: if tls_used { "https" } else { "http" },
            healthy,
            alerts,
            health_checks,
            connections,
            task,
        })
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn alerts(&self) -> usize {
        self.alerts.load(Ordering::SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.health_checks.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
