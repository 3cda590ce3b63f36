//! Arbitrary bytes as what a client sends the built-in HTTP service: parsing the first request
//! head and answering it must never panic, a head must end at its blank line within the bytes,
//! and every answer must be a complete HTTP/1.1 response whose Content-Length is its body's
//! length; errors close the connection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdemux::services::http::{MAX_HEAD, next_request};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HEAD)];
    let Some((end, a)) = next_request(data) else {
        return; // incomplete: the service waits for more
    };
    assert!(end <= data.len(), "a head past the bytes");
    let text = &a.bytes[..];
    assert!(text.starts_with(b"HTTP/1.1 "), "not a response");
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response has a blank line");
    let headers = std::str::from_utf8(&text[..split]).expect("response headers are text");
    if headers.starts_with("HTTP/1.1 200") {
        assert!(data[..end].ends_with(b"\r\n\r\n"), "a head ends at its blank line");
    } else {
        assert!(a.close, "an error keeps the connection");
    }
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    let body = text.len() - split - 4;
    let head_request = data.starts_with(b"HEAD ");
    assert!(
        body == length || (head_request && body == 0),
        "Content-Length {length}, body {body}"
    );
});
