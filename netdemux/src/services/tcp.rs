//! The built-in TCP services (`--tcp-echo`, `--http`) as applications of one connection each:
//! [`App::on_ready`] runs when the connection has news (bytes to read, room to write) and
//! reads, answers and closes through the [`Connection`]. The worker's TCP socket set owns the
//! connections and calls it; no rings, threads or endpoints here.

use super::{Kind, http};
use crate::stack::tcp::Connection;

/// What a connection of a service remembers between events.
#[derive(Debug)]
pub enum App {
    /// Sends back what it reads.
    Echo,
    /// Answers HTTP requests; holds the bytes of an incomplete request head.
    Http {
        /// The request head received so far.
        head: Vec<u8>,
    },
}

/// Bytes of scratch space [`App::on_ready`] needs.
pub const SCRATCH: usize = 64 * 1024;

impl App {
    /// The application of a new connection to a service of `kind`; `None` for UDP services.
    pub fn for_kind(kind: Kind) -> Option<App> {
        match kind {
            Kind::TcpEcho => Some(App::Echo),
            Kind::Http => Some(App::Http { head: Vec::new() }),
            Kind::UdpSink | Kind::UdpEcho => None,
        }
    }

    /// The connection has news: read, answer, close as the service does.
    pub fn on_ready(&mut self, conn: &mut Connection, scratch: &mut [u8]) {
        match self {
            App::Echo => echo(conn, scratch),
            App::Http { head } => serve_http(conn, head, scratch),
        }
    }
}

/// Echoes what fits into the send buffer; closes once the peer closed and all was echoed.
/// Bytes are copied, sent, and only then freed: what the send buffer does not take (the memory
/// budget may refuse it) stays to be echoed later, never lost.
fn echo(conn: &mut Connection, scratch: &mut [u8]) {
    loop {
        let n = conn.readable().min(conn.send_space()).min(scratch.len());
        if n == 0 {
            break;
        }
        let (a, b) = conn.peek();
        let first = n.min(a.len());
        scratch[..first].copy_from_slice(&a[..first]);
        scratch[first..n].copy_from_slice(&b[..n - first]);
        let sent = conn.send(&scratch[..n]);
        conn.consume(sent);
        if sent < n {
            break;
        }
    }
    if conn.read_closed() {
        conn.close();
    }
}

/// Answers every complete request head that arrived, as long as the answers fit. A head that
/// arrived whole is parsed where it lies in the receive buffer; only a head that arrives in
/// pieces (or across the buffer's wrap) is gathered in `head`.
fn serve_http(conn: &mut Connection, head: &mut Vec<u8>, scratch: &mut [u8]) {
    loop {
        let in_place = head.is_empty();
        let parsed = if in_place {
            http::next_request(conn.peek().0)
        } else {
            http::next_request(head)
        };
        if let Some((end, answer)) = parsed {
            if !conn.send_all(&answer.bytes) {
                return; // Whole answers only: wait for WRITABLE.
            }
            if in_place {
                conn.consume(end);
            } else {
                head.drain(..end);
            }
            if answer.close {
                conn.close();
                return;
            }
            continue;
        }
        if head.len() >= http::MAX_HEAD {
            let _ = conn.send_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
                  Connection: close\r\n\r\n",
            );
            conn.close();
            return;
        }
        let room = (http::MAX_HEAD - head.len()).min(scratch.len());
        if conn.readable() == 0 {
            break;
        }
        let n = conn.recv(&mut scratch[..room]);
        head.extend_from_slice(&scratch[..n]);
    }
    if conn.read_closed() {
        conn.close();
    }
}
