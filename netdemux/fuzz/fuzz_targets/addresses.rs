//! Any text through the CLI's parsers (socket addresses, bindings, queue/CPU lists, MACs): none
//! may panic, refusals are one line, and an accepted binding survives the trip through its key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdemux::{
    control::binding::{Binding, parse_socket_addr},
    daemon::parse_list,
    generator::parse_mac,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Binding::parse("udp", text) {
        Ok(b) => assert_eq!(Binding::from_key(&b.key()), Some(b)),
        Err(e) => assert!(!e.to_string().contains('\n'), "one-line refusal: {e}"),
    }
    let _ = parse_socket_addr(text);
    let _ = Binding::parse(text, "198.18.0.2:7000");
    let _ = parse_list(text);
    let _ = parse_mac(text);
});
