//! The library half of the eBPF crate is empty: it exists so `netdemux` can name this crate as a
//! build dependency (and so be rebuilt when it changes). The program is the `netdemux-xdp` bin.
#![no_std]
