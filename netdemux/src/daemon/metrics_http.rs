//! `run --metrics ADDR`: `GET /metrics` answers with the counters in Prometheus' text format,
//! served by hyper (HTTP/1.1) on a one-thread tokio runtime of its own.
//!
//! What a client on the network can do to it is bounded: every connection has one deadline
//! for all of it ([`CONNECTION_DEADLINE`]: a client that sends a byte a second is cut off, not
//! kept for hours), one request per connection, at most [`MAX_CLIENTS`] at once (more are
//! closed at once and counted), and stopping drops every connection without waiting for any.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

/// Everything a connection does — its request arriving, the answer leaving — within this.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed as they arrive.
pub const MAX_CLIENTS: usize = 32;
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What the endpoint turned away, for the tests and the logs.
#[derive(Debug, Default)]
pub struct MetricsCounters {
    /// Connections closed on arrival because [`MAX_CLIENTS`] were being served.
    pub refused: AtomicU64,
    /// Connections cut at [`CONNECTION_DEADLINE`].
    pub timed_out: AtomicU64,
}

/// Serves `render()` on `http://ADDR/metrics` until `stop` is set; joining the returned
/// thread after that never waits on a client.
pub fn serve(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> Result<thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for --metrics (address in use, or not on this host?)")
    })?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics endpoint's runtime")?;
    let (render, counters) = (Arc::new(render), Arc::new(MetricsCounters::default()));
    thread::Builder::new()
        .name("netdemux-metrics".into())
        .spawn(move || {
            runtime.block_on(accept_loop(listener, stop, render, counters.clone()));
            // Drops every connection still open, without waiting for it.
            runtime.shutdown_background();
            let (refused, timed_out) = (
                counters.refused.load(Ordering::Relaxed),
                counters.timed_out.load(Ordering::Relaxed),
            );
            if refused + timed_out > 0 {
                tracing::info!(
                    refused,
                    timed_out,
                    "metrics endpoint: connections turned away"
                );
            }
        })
        .context("cannot start the metrics thread")
}

async fn accept_loop(
    listener: std::net::TcpListener,
    stop: Arc<AtomicBool>,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    counters: Arc<MetricsCounters>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::warn!("the metrics endpoint cannot use its socket");
        return;
    };
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut tick = tokio::time::interval(STOP_POLL);
    while !stop.load(Ordering::Relaxed) {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = tick.tick() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue; // `stream` drops: closed
        };
        let (render, counters) = (render.clone(), counters.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(answer(&req, &*render)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(CONNECTION_DEADLINE, connection)
                .await
                .is_err()
            {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// The answer to one request.
fn answer(req: &Request<Incoming>, render: &dyn Fn() -> String) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, render()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET: scrape /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: scrape /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
