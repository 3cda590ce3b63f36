//! Frames from arbitrary bytes through a queue worker over an in-memory ring (see
//! `netdemux::runtime::worker::fuzzing`): the per-frame dispatch a NIC's frames go through —
//! classification, header checks, the services, ICMP errors, TCP — must never panic, and
//! every frame it sends must check out.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netdemux::runtime::worker::fuzzing::run(data);
});
