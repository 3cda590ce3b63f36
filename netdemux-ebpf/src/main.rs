//! The netdemux XDP program.
//!
//! One verdict per frame: bound destination socket address -> the AF_XDP socket of the frame's
//! RX queue; anything else -> the kernel, untouched. Every frame increments exactly one verdict
//! counter (see `netdemux_common::Counter`), where its verdict is decided.
#![no_std]
#![no_main]

mod maps;
mod parse;

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    maps::{Array, HashMap},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use maps::{BINDS, BINDS1, Count, GEN_SEQ, GEN_SETTINGS, INFO, PORTS, PORTS1, STATS, XSKS};
use netdemux_common::{BindKey, Counter, FAMILY_V4, PortEntry, port_slot};
use parse::{Destination, Frame, OnKey, classify};

#[xdp]
pub fn netdemux(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    match classify(&frame, &Deliver(&ctx, &frame)) {
        Ok(action) => action,
        Err(reason) => {
            if reason == Counter::PassMalformed && logging() {
                debug!(
                    &ctx,
                    "malformed frame of {} bytes on queue {}: passed to the kernel",
                    frame.len(),
                    ctx.rx_queue_index()
                );
            }
            count(reason);
            xdp_action::XDP_PASS
        }
    }
}

/// Counts one frame's verdict where it is decided: the slot is a constant on every path but
/// the refusals', and no verdict has to live until the end of the program to say which.
#[inline(always)]
fn count(verdict: Counter) {
    if let Some(count) = Count::this_cpu() {
        count.add(verdict);
    }
}

/// True while a daemon routes this program's log records into its logs (`StateInfo::log`):
/// only the slow paths ask, so the hot paths never pay for logging.
#[inline(always)]
fn logging() -> bool {
    INFO.get(0).is_some_and(|i| i.log != 0)
}

/// The counter index of the binding `key` matches in a binding set (exact address first, then
/// the family's wildcard if the frame is for one host, `to.unicast()`). The port entry settles
/// most frames: nothing bound on the port (a miss), or a binding in one of its lanes, whose
/// address the entry holds and is compared without hashing; only a port with more bindings than
/// lanes costs a hash lookup, and only that path puts the key in memory.
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "look the key up in the slot on_stack wrote, not in a copy of it (a copy's stores may be joined into ones the verifier refuses)"
)]
fn find(
    binds: &HashMap<BindKey, u32>,
    ports: &Array<PortEntry>,
    key: &BindKey,
    to: Destination,
) -> Option<u32> {
    let entry = ports.get(port_slot(key.proto, key.port(), key.family)?)?;
    if entry.count == 0 {
        return None;
    }
    // The slot fixes protocol, family and port: the address decides. A lane holds its
    // binding's counter index plus one (zero: empty); `any` is the wildcard lane's.
    let (b, k) = (&entry.addr, &key.addr);
    let mut any = 0;
    if key.family == FAMILY_V4 {
        // An IPv4 address is the key's first word, and lane `i`'s address the entry's word
        // `i` (LANES of them: four IPv4 addresses fill the room of one IPv6 address).
        for (&index, &addr) in entry.index.iter().zip(b) {
            if index != 0 {
                if addr == k[0] {
                    return Some(index - 1);
                }
                if addr == 0 {
                    any = index;
                }
            }
        }
    } else {
        let index = entry.index[0];
        // Words compared by hand: array equality may become a memcmp call, which BPF lacks.
        if index != 0 {
            if (b[0] ^ k[0]) | (b[1] ^ k[1]) | (b[2] ^ k[2]) | (b[3] ^ k[3]) == 0 {
                return Some(index - 1);
            }
            if b[0] | b[1] | b[2] | b[3] == 0 {
                any = index;
            }
        }
    }
    if entry.hashed == 0 {
        return (any != 0 && to.unicast()).then(|| any - 1);
    }
    let mut slot = MaybeUninit::uninit();
    let key = on_stack(&mut slot, key);
    if let Some(index) = binds.get_ptr(&*key) {
        // SAFETY: a value of the hash map, valid for this run (RCU); a plain u32.
        return Some(unsafe { *index });
    }
    if !to.unicast() {
        return None;
    }
    if any != 0 {
        return Some(any - 1);
    }
    // Same key, wildcard address: cleared in place, no second key on the stack.
    for word in key.addr.iter_mut() {
        // SAFETY: `word` is a valid, aligned u32 of the key on our stack. Volatile only so LLVM
        // keeps four stores instead of calling an out-of-line memset.
        unsafe { core::ptr::write_volatile(word, 0) };
    }
    // SAFETY: as above.
    binds.get_ptr(key).map(|index| unsafe { *index })
}

/// `key` written into `slot` (on the caller's stack, for a map lookup) one field at a time. A
/// plain copy lets LLVM join neighbouring fields into one store, and it may join the second and
/// third address words of an IPv4 key (both zero) into an 8-byte store at an offset the
/// verifier refuses for the stack (4 mod 8): volatile stores are never joined.
#[inline(always)]
fn on_stack<'a>(slot: &'a mut MaybeUninit<BindKey>, key: &BindKey) -> &'a mut BindKey {
    let p = slot.as_mut_ptr();
    let [a0, a1, a2, a3] = key.addr;
    // SAFETY: `p` points to `slot`, an aligned, writable BindKey; every field is written
    // (BindKey is repr(C) with no padding: 16 + 2 + 1 + 1 bytes), so it is initialised when
    // `slot` is handed out.
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).addr[0]), a0);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).addr[1]), a1);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).addr[2]), a2);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).addr[3]), a3);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).port), key.port);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).proto), key.proto);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*p).family), key.family);
        slot.assume_init_mut()
    }
}

/// The demultiplexer's use of a key: [`deliver`].
struct Deliver<'a>(&'a XdpContext, &'a Frame);

impl OnKey for Deliver<'_> {
    type Out = u32;

    #[inline(always)]
    fn on_key(&self, key: BindKey, to: Destination) -> u32 {
        deliver(self.0, self.1, &key, to)
    }
}

/// Looks `key` up in the active binding set and redirects on a match; wildcard bindings take
/// only frames for one host ([`Destination::unicast`]). Counts the verdict and returns the
/// action.
#[inline(always)]
fn deliver(ctx: &XdpContext, frame: &Frame, key: &BindKey, to: Destination) -> u32 {
    // One word says which set is in use; userspace flips it to replace a whole set at once.
    let found = if maps::active_set() == 1 {
        find(&BINDS1, &PORTS1, key, to)
    } else {
        find(&BINDS, &PORTS, key, to)
    };
    let Some(index) = found else {
        count(Counter::PassNoBinding);
        return xdp_action::XDP_PASS;
    };
    if let Some(stats) = STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's entry of a per-CPU array, valid for this run; no other CPU writes
        // it and XDP runs without preemption.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += frame.len() as u64;
        }
    }
    // The low bits of the flags are the action when the queue has no socket: the kernel gets it.
    match XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64) {
        Ok(action) => {
            count(Counter::Redirected);
            action
        }
        Err(fallback) => {
            count(Counter::RedirectFailed);
            if logging() {
                debug!(
                    ctx,
                    "bound {}-byte frame on queue {} has no AF_XDP socket there: passed to the kernel",
                    frame.len(),
                    ctx.rx_queue_index()
                );
            }
            fallback
        }
    }
}

/// `return XDP_PASS`: the floor that benchmarks measure the demultiplexer against.
#[xdp]
pub fn netdemux_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The traffic generator: run with BPF_PROG_TEST_RUN in live-frames mode, XDP_TX transmits the
/// frame the generator passed in on the interface it names as ingress. Each frame gets the next
/// source port of the configured range, so a receiving NIC's RSS spreads the flows.
#[xdp]
pub fn netdemux_gen(ctx: XdpContext) -> u32 {
    let (Some(cfg), Some(seq)) = (GEN_SETTINGS.get(0), GEN_SEQ.get_ptr_mut(0)) else {
        return xdp_action::XDP_TX;
    };
    if cfg.flows <= 1 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: this CPU's slot of a per-CPU array; XDP runs without preemption.
    let n = unsafe {
        let n = *seq;
        *seq = n.wrapping_add(1);
        n
    };
    let port = (cfg.base_port.wrapping_add(n % cfg.flows)) as u16;
    // Offsets come from userspace: bound them for the verifier, then check against the packet.
    let (so, co) = (
        (cfg.sport_offset & 0x7ff) as usize,
        (cfg.csum_offset & 0x7ff) as usize,
    );
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + so + 2 > end || start + co + 2 > end {
        return xdp_action::XDP_TX;
    }
    let (sp, cp) = ((start + so) as *mut [u8; 2], (start + co) as *mut [u8; 2]);
    // SAFETY: both 2-byte fields lie inside the packet (checked above); [u8; 2] has alignment 1.
    unsafe {
        let old = u16::from_be_bytes(*sp);
        *sp = port.to_be_bytes();
        // RFC 1624: C' = ~(~C + ~m + m'); 0 is sent as 0xffff (the same value, and what UDP needs).
        let mut sum = (!u16::from_be_bytes(*cp)) as u32 + (!old) as u32 + port as u32;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let c = !(sum as u16);
        *cp = if c == 0 { 0xffff } else { c }.to_be_bytes();
    }
    xdp_action::XDP_TX
}

/// Every frame to the AF_XDP socket of its RX queue, no parsing, no lookup, no counter: the
/// ceiling a demultiplexing receiver is measured against (the benchmarks' bare consumer and
/// bare reflector run the same socket code behind it).
#[xdp]
pub fn netdemux_redirect_all(ctx: XdpContext) -> u32 {
    match XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64) {
        Ok(action) | Err(action) => action,
    }
}

/// A key found, nothing done with it: [`netdemux_parse_redirect`].
struct Parsed;

impl OnKey for Parsed {
    type Out = ();

    #[inline(always)]
    fn on_key(&self, _key: BindKey, _to: Destination) {}
}

/// Every TCP/UDP frame to the AF_XDP socket of its RX queue after the demultiplexer's own
/// parsing (no lookup, no counter; anything else to the kernel): the benchmarks' bare consumer
/// behind it splits the demultiplexer's cost into reading the headers and the rest.
#[xdp]
pub fn netdemux_parse_redirect(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    match classify(&frame, &Parsed) {
        Ok(()) => match XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64) {
            Ok(action) | Err(action) => action,
        },
        Err(_) => xdp_action::XDP_PASS,
    }
}

/// `return TC_ACT_SHOT` at tc ingress: the benchmarks' discard of the answers that come back to
/// the generator's veth (before IP, so the generator's kernel spends no UDP lookup or ICMP
/// error on them, in the answering side's softirq).
#[classifier]
pub fn netdemux_tc_drop(_ctx: TcContext) -> i32 {
    TC_ACT_SHOT
}

/// `return XDP_DROP`: the ceiling of what a receiver can absorb, for the benchmarks.
#[xdp]
pub fn netdemux_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
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
