//! Arbitrary segments, timer jumps and application calls against a TCP connection in each
//! state (see `netdemux::stack::tcp::fuzzing`): nothing may panic, every segment sent must
//! fit the MSS, the flow table keeps its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netdemux::stack::tcp::fuzzing::run(data);
});
