//! The netdemux XDP program.
//!
//! One verdict per frame: bound destination socket address -> the AF_XDP socket of the frame's
//! RX queue; anything else -> the kernel, untouched. Every frame increments `seen` and exactly one
//! verdict counter (see `netdemux_common::Counter`).
#![no_std]
#![no_main]

mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use maps::{BINDS, XSKS, count};
use netdemux_common::{BindKey, Counter};
use parse::{Frame, classify};

#[xdp]
pub fn netdemux(ctx: XdpContext) -> u32 {
    count(Counter::Seen);
    let frame = Frame::new(ctx.data(), ctx.data_end());
    match classify(&frame) {
        Ok(key) => deliver(&ctx, &frame, &key),
        Err(reason) => {
            count(reason);
            xdp_action::XDP_PASS
        }
    }
}

/// Looks `key` up (exact address first, then the family's wildcard) and redirects on a match.
#[inline(always)]
fn deliver(ctx: &XdpContext, frame: &Frame, key: &BindKey) -> u32 {
    let stats = match BINDS.get_ptr_mut(key) {
        Some(stats) => stats,
        None => match BINDS.get_ptr_mut(key.wildcard()) {
            Some(stats) => stats,
            None => {
                count(Counter::PassNoBinding);
                return xdp_action::XDP_PASS;
            }
        },
    };
    // SAFETY: `stats` is this CPU's value of a per-CPU hash entry, valid for this run (RCU); no
    // other CPU writes it and XDP runs without preemption.
    unsafe {
        (*stats).packets += 1;
        (*stats).bytes += frame.len() as u64;
    }
    // The low bits of the flags are the action when the queue has no socket: the kernel gets it.
    match XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64) {
        Ok(action) => {
            count(Counter::Redirected);
            action
        }
        Err(fallback) => {
            count(Counter::RedirectFailed);
            fallback
        }
    }
}

/// `return XDP_PASS`: the floor that benchmarks measure the demultiplexer against.
#[xdp]
pub fn netdemux_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible, as the kernel requires for some helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
