//! `run --metrics ADDR`: a minimal HTTP/1.1 responder for Prometheus — `GET /metrics` answers
//! with the counters in text format, anything else with 404. One connection at a time,
//! `Connection: close`, bounded reads: a scraper, not a web server.

use std::{
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

/// Serves `render()` on `http://ADDR/metrics` until `stop` is set.
pub fn serve(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    render: impl Fn() -> String + Send + 'static,
) -> Result<thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for --metrics (address in use, or not on this host?)")
    })?;
    listener.set_nonblocking(true)?;
    thread::Builder::new()
        .name("netdemux-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let conn = match listener.accept() {
                    Ok((conn, _)) => conn,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let mut reader = BufReader::new(&conn).take(8192);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Drain the headers (bounded by `take`).
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut words = request.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let (status, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    ("200 OK", render())
                } else {
                    ("404 Not Found", "not found: scrape /metrics\n".to_string())
                };
                let mut w = &conn;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .context("cannot start the metrics thread")
}
