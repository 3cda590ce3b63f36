//! Arbitrary confirmations, suggestions, sends, kernel answers and time from many sources
//! against the neighbour cache (see `netdemux::stack::neighbour_cache::fuzzing`): bounded
//! tables, and every send comes back exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netdemux::stack::neighbour_cache::fuzzing::run(data);
});
