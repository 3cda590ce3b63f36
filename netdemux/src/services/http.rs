//! A minimal HTTP/1.1 responder for load generators (wrk) and curl: any GET (or HEAD) gets
//! `200 OK` with a short fixed body; connections are kept alive unless the client asks
//! otherwise; requests may be pipelined. Anything else gets a clear error and the connection
//! is closed. Request bodies are not read.

/// The body of every 200 answer.
pub const BODY: &[u8] = b"hello from netdemux\n";
/// The most bytes a request head may take.
pub const MAX_HEAD: usize = 8192;

/// What to answer to one request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response bytes (the 200 answers are built once and shared).
    pub bytes: std::borrow::Cow<'static, [u8]>,
    /// Close the connection after sending it.
    pub close: bool,
}

/// The four 200 answers (GET or HEAD, kept alive or closing), built once.
fn ok_answer(head_only: bool, close: bool) -> &'static [u8] {
    static OK: std::sync::LazyLock<[Vec<u8>; 4]> = std::sync::LazyLock::new(|| {
        [
            response("200 OK", BODY, false, false, ""),
            response("200 OK", BODY, false, true, ""),
            response("200 OK", BODY, true, false, ""),
            response("200 OK", BODY, true, true, ""),
        ]
    });
    &OK[usize::from(head_only) * 2 + usize::from(close)]
}

fn response(status: &str, body: &[u8], head_only: bool, close: bool, extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: netdemux\r\nContent-Type: text/plain\r\nContent-Length: \
         {}\r\n{extra}{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Headers a request may carry; more get `431`.
const MAX_HEADERS: usize = 64;

/// Parses the first request head in `buf` (httparse: one pass over the bytes, SIMD where the
/// CPU has it) and answers it: `None` while the head is incomplete; else the bytes it took and
/// the answer. An error answer closes the connection, so it takes all of `buf`.
pub fn next_request(buf: &[u8]) -> Option<(usize, Answer)> {
    let bad = |status: &str, body: &[u8]| {
        let bytes = response(status, body, false, true, "").into();
        Some((buf.len(), Answer { bytes, close: true }))
    };
    let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let end = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return bad("431 Request Header Fields Too Large", b"too many headers\n");
        }
        Err(httparse::Error::Version) => return bad("400 Bad Request", b"not HTTP/1.x\n"),
        Err(_) => return bad("400 Bad Request", b"malformed request head\n"),
    };
    let (Some(method), Some(version)) = (req.method, req.version) else {
        return bad("400 Bad Request", b"malformed request line\n"); // complete heads have both
    };
    let mut close = version == 0;
    let mut has_body = false;
    for h in req.headers.iter() {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            has_body = value != b"0";
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let answer = match method {
        "GET" | "HEAD" if !has_body => Answer {
            bytes: ok_answer(method == "HEAD", close).into(),
            close,
        },
        "GET" | "HEAD" => return bad("400 Bad Request", b"a GET with a body is not served\n"),
        _ => Answer {
            bytes: response(
                "405 Method Not Allowed",
                b"only GET and HEAD are served\n",
                false,
                true,
                "Allow: GET, HEAD\r\n",
            )
            .into(),
            close: true,
        },
    };
    Some((end, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Answer) -> String {
        String::from_utf8(a.bytes.to_vec()).unwrap()
    }

    /// The answer to a whole head.
    fn answer(head: &[u8]) -> Answer {
        let (end, a) = next_request(head).expect("a complete head");
        assert_eq!(end, head.len(), "{head:?}");
        a
    }

    #[test]
    fn get_is_answered_and_kept_alive() {
        let a = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!a.close);
        let t = text(&a);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(t.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        assert!(t.ends_with("\r\n\r\nhello from netdemux\n"));
    }

    #[test]
    fn connection_close_and_http_1_0_close() {
        assert!(answer(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").close);
        assert!(answer(b"GET /x HTTP/1.0\r\n\r\n").close);
        assert!(!answer(b"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close);
    }

    #[test]
    fn head_has_no_body() {
        let t = text(&answer(b"HEAD / HTTP/1.1\r\n\r\n"));
        assert!(t.ends_with("\r\n\r\n"));
        assert!(t.contains("Content-Length: 20"));
    }

    #[test]
    fn other_methods_and_garbage_are_refused_and_closed() {
        let post = answer(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(post.close && text(&post).starts_with("HTTP/1.1 405"));
        assert!(text(&post).contains("Allow: GET, HEAD"));
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n\xff\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        ] {
            let a = answer(bad);
            assert!(a.close, "{bad:?}");
            assert!(text(&a).starts_with("HTTP/1.1 400"), "{bad:?}");
        }
    }

    #[test]
    fn heads_are_found_at_their_blank_line() {
        let (end, a) = next_request(b"GET / HTTP/1.1\r\n\r\nGET").unwrap();
        assert_eq!((end, a.close), (18, false));
        assert_eq!(next_request(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(next_request(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn too_many_headers_get_431() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let a = answer(&head);
        assert!(a.close && text(&a).starts_with("HTTP/1.1 431"));
    }
}
