//! TCP segments in Ethernet frames: [`TcpHeader`] parses and emits a header with the options
//! netdemux understands (MSS, window scale, SACK-permitted, SACK blocks, timestamps),
//! [`TcpPacket::from_classified`] checks a segment in a classified frame, and [`emit`] writes one
//! straight into a frame with every checksum filled in.
//!
//! Options are emitted in the order and alignment Linux uses, so a SYN from netdemux looks like
//! one from the kernel: MSS, SACK-permitted with timestamps, NOP and window scale; other segments
//! carry NOP, NOP, timestamps, then NOP, NOP and as many SACK blocks as fit.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    ops,
};

use netdemux_common::PROTO_TCP;

use super::{
    Error, checksum,
    classify::{Classified, source},
    ip::emit_headers,
    seq::Seq,
};

/// The most option bytes a header can carry (data offset 15).
const MAX_OPTIONS: usize = 40;
/// The largest window-scale shift (RFC 7323 §2.3).
const MAX_WINDOW_SCALE: u8 = 14;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WINDOW_SCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMPS: u8 = 8;

/// TCP flags.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No more data from the sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push the data to the application.
    pub const PSH: Flags = Flags(0x08);
    /// The acknowledgment number is valid.
    pub const ACK: Flags = Flags(0x10);
    /// The urgent pointer is valid.
    pub const URG: Flags = Flags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: Flags = Flags(0x80);

    /// True when every flag of `other` is set in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Flag names, lowest bit first.
const FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

impl fmt::Debug for Flags {
    /// The set flags, lowest bit first, e.g. `SYN|ACK`; `(none)` when none is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("(none)");
        }
        let mut sep = "";
        for (bit, name) in FLAG_NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        Ok(())
    }
}

/// Up to four SACK blocks (RFC 2018), each [left, right).
///
/// Slots past `len` are always zero, so the derived equality compares only the blocks held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SackBlocks {
    len: u8,
    blocks: [(Seq, Seq); 4],
}

impl SackBlocks {
    /// Appends the block [`left`, `right`); false (and nothing appended) when four are held.
    pub fn push(&mut self, left: Seq, right: Seq) -> bool {
        match self.blocks.get_mut(self.len as usize) {
            Some(slot) => {
                *slot = (left, right);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks held, first pushed first.
    pub fn as_slice(&self) -> &[(Seq, Seq)] {
        &self.blocks[..self.len as usize]
    }

    /// The number of blocks held.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every block.
    pub fn clear(&mut self) {
        *self = SackBlocks::default();
    }
}

/// The options netdemux understands; others are skipped on parse and never emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2; emitted on SYN only).
    pub mss: Option<u16>,
    /// Window-scale shift (kind 3, RFC 7323; emitted on SYN only, at most 14).
    pub window_scale: Option<u8>,
    /// SACK is permitted (kind 4, RFC 2018; emitted on SYN only).
    pub sack_permitted: bool,
    /// Timestamps (kind 8, RFC 7323): (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (kind 5, RFC 2018; emitted without SYN only, as many as fit).
    pub sack: SackBlocks,
}

/// A TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of the first payload byte (or of the SYN).
    pub seq: Seq,
    /// Acknowledgment number (meaningful with [`Flags::ACK`]).
    pub ack: Seq,
    /// Control flags.
    pub flags: Flags,
    /// Receive window, not yet scaled.
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
}

fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    let w = b.get(at..at + 2).ok_or(Error::Truncated)?;
    Ok(u16::from_be_bytes([w[0], w[1]]))
}

fn be32(b: &[u8], at: usize) -> Result<u32, Error> {
    let w = b.get(at..at + 4).ok_or(Error::Truncated)?;
    Ok(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Stores the option `kind` whose data (after kind and length) is `data` into `o`; unknown kinds,
/// and known ones with the wrong length, are skipped (as Linux's tcp_parse_options does).
fn parse_option(o: &mut TcpOptions, kind: u8, data: &[u8]) -> Result<(), Error> {
    match (kind, data.len()) {
        (OPT_MSS, 2) => o.mss = Some(be16(data, 0)?),
        (OPT_WINDOW_SCALE, 1) => o.window_scale = Some(data[0].min(MAX_WINDOW_SCALE)),
        (OPT_SACK_PERMITTED, 0) => o.sack_permitted = true,
        (OPT_TIMESTAMPS, 8) => o.timestamps = Some((be32(data, 0)?, be32(data, 4)?)),
        (OPT_SACK, n) if n > 0 && n % 8 == 0 => {
            for b in data.chunks_exact(8) {
                // Blocks beyond four are ignored.
                let _ = o.sack.push(Seq(be32(b, 0)?), Seq(be32(b, 4)?));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses the option bytes of a header (after its first 20 bytes). Like Linux, it never
/// refuses a segment for its options: a length below 2, or an option running past the header,
/// ends the parsing and keeps what came before.
fn parse_options(bytes: &[u8]) -> Result<TcpOptions, Error> {
    let mut o = TcpOptions::default();
    let mut at = 0;
    while let Some(&kind) = bytes.get(at) {
        match kind {
            OPT_EOL => break,
            OPT_NOP => at += 1,
            _ => {
                let Some(len) = bytes.get(at + 1).map(|&l| l as usize) else {
                    break;
                };
                let Some(data) = bytes.get(at + 2..at + len.max(2)).filter(|_| len >= 2) else {
                    break;
                };
                parse_option(&mut o, kind, data)?;
                at += len;
            }
        }
    }
    Ok(o)
}

/// Appends option bytes to a buffer of [`MAX_OPTIONS`] bytes; what does not fit is dropped (the
/// layouts below never overflow it).
struct OptionWriter {
    buf: [u8; MAX_OPTIONS],
    len: usize,
}

impl OptionWriter {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(out) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            out.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn put32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Timestamps after the two bytes `lead` (NOP NOP, or SACK-permitted on a SYN).
    fn timestamps(&mut self, lead: [u8; 2], (val, ecr): (u32, u32)) {
        self.put(&lead);
        self.put(&[OPT_TIMESTAMPS, 10]);
        self.put32(val);
        self.put32(ecr);
    }

    /// The options of a SYN (or SYN-ACK), laid out as Linux does.
    fn syn(&mut self, o: &TcpOptions) {
        if let Some(mss) = o.mss {
            self.put(&[OPT_MSS, 4]);
            self.put(&mss.to_be_bytes());
        }
        match (o.sack_permitted, o.timestamps) {
            (true, Some(ts)) => self.timestamps([OPT_SACK_PERMITTED, 2], ts),
            (false, Some(ts)) => self.timestamps([OPT_NOP, OPT_NOP], ts),
            (true, None) => self.put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(shift) = o.window_scale {
            self.put(&[OPT_NOP, OPT_WINDOW_SCALE, 3, shift.min(MAX_WINDOW_SCALE)]);
        }
    }

    /// The options of any other segment: timestamps, then the SACK blocks that fit.
    fn established(&mut self, o: &TcpOptions) {
        if let Some(ts) = o.timestamps {
            self.timestamps([OPT_NOP, OPT_NOP], ts);
        }
        let n = o.sack.len().min(sack_capacity(o));
        if n > 0 {
            self.put(&[OPT_NOP, OPT_NOP, OPT_SACK, (2 + 8 * n) as u8]);
            for &(left, right) in &o.sack.as_slice()[..n] {
                self.put32(left.0);
                self.put32(right.0);
            }
        }
    }

    /// The options of `h`, padded with EOL to a multiple of four bytes.
    fn of(h: &TcpHeader) -> OptionWriter {
        let mut w = OptionWriter {
            buf: [0; MAX_OPTIONS],
            len: 0,
        };
        if h.flags.contains(Flags::SYN) {
            w.syn(&h.options);
        } else {
            w.established(&h.options);
        }
        w.len = w.len.next_multiple_of(4).min(MAX_OPTIONS); // the buffer is zeroed: EOL
        w
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The largest number of SACK blocks that fit next to the other options of `options` in a
/// segment without SYN (40 option bytes: with timestamps, 3; without, 4).
pub fn sack_capacity(options: &TcpOptions) -> usize {
    let ts = if options.timestamps.is_some() { 12 } else { 0 };
    // NOP, NOP, kind and length, then 8 bytes a block.
    ((MAX_OPTIONS - ts - 4) / 8).min(4)
}

impl TcpHeader {
    /// Parses the header at the start of `segment` (the whole TCP segment: header and payload)
    /// and checks the checksum over the pseudo-header of `src` -> `dst`; returns the header and
    /// its length (data offset * 4). Errors: [`Error::Truncated`] (shorter than 20 bytes or than
    /// the data offset), [`Error::Malformed`] (data offset below 5, an option whose length is
    /// below 2 or runs past the header, a known option with the wrong length, `src` and `dst` of
    /// different families), [`Error::Checksum`]. Unknown options are skipped; a window-scale
    /// shift above 14 is clamped to 14 (RFC 7323); SACK blocks beyond four are ignored.
    pub fn parse(segment: &[u8], src: IpAddr, dst: IpAddr) -> Result<(TcpHeader, usize), Error> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(Error::Malformed);
        }
        let parsed = Self::parse_unchecked(segment)?;
        let start = checksum::pseudo_header(src, dst, PROTO_TCP, segment.len());
        if !checksum::verifies(start, segment) {
            return Err(Error::Checksum);
        }
        Ok(parsed)
    }

    /// Like [`TcpHeader::parse`] without the checksum check (for tests and verified input).
    pub fn parse_unchecked(segment: &[u8]) -> Result<(TcpHeader, usize), Error> {
        let fixed = segment.get(..20).ok_or(Error::Truncated)?;
        let len = ((fixed[12] >> 4) as usize) * 4;
        if len < 20 {
            return Err(Error::Malformed);
        }
        let header = segment.get(..len).ok_or(Error::Truncated)?;
        let h = TcpHeader {
            src_port: be16(header, 0)?,
            dst_port: be16(header, 2)?,
            seq: Seq(be32(header, 4)?),
            ack: Seq(be32(header, 8)?),
            flags: Flags(header[13]),
            window: be16(header, 14)?,
            options: parse_options(&header[20..])?,
        };
        Ok((h, len))
    }

    /// The header's length on the wire: 20 and the options padded to a multiple of 4, at most 60.
    pub fn header_len(&self) -> usize {
        20 + OptionWriter::of(self).len
    }

    /// Writes the header at the start of `buf` with a zero checksum and urgent pointer; returns
    /// its length, or [`Error::Truncated`] if `buf` is too short. Which options are written
    /// depends on [`Flags::SYN`] (see [`TcpOptions`]).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let options = OptionWriter::of(self);
        let len = 20 + options.len;
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.ack.0.to_be_bytes());
        out[12] = ((len / 4) as u8) << 4;
        out[13] = self.flags.0;
        out[14..16].copy_from_slice(&self.window.to_be_bytes());
        out[16..20].copy_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out[20..].copy_from_slice(options.bytes());
        Ok(len)
    }
}

/// A parsed TCP segment in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The TCP header.
    pub header: TcpHeader,
    /// Offset of the payload in the frame.
    pub payload_offset: usize,
    /// Length of the payload.
    pub payload_len: usize,
}

impl TcpPacket {
    /// Parses and checks the TCP segment in `frame`, which [`super::classify`] accepted as `c`
    /// (like [`super::udp::UdpRepr::from_classified`]); [`Error::Malformed`] if it is not TCP.
    pub fn from_classified(frame: &[u8], c: &Classified) -> Result<TcpPacket, Error> {
        if c.key.proto != PROTO_TCP || c.icmp {
            return Err(Error::Malformed);
        }
        let src = source(frame, c).ok_or(Error::Malformed)?;
        let dst = c.key.socket_addr().ok_or(Error::Malformed)?;
        let end = c
            .payload_offset
            .checked_add(c.payload_len)
            .ok_or(Error::Malformed)?;
        let seg = frame.get(c.l4_offset..end).ok_or(Error::Malformed)?;
        let (header, len) = TcpHeader::parse(seg, src.ip(), dst.ip())?;
        Ok(TcpPacket {
            src,
            dst,
            header,
            payload_offset: c.l4_offset + len,
            payload_len: seg.len() - len,
        })
    }
}

/// Writes a segment `src` -> `dst` with `header` and the payload made of the two slices (a ring
/// buffer's two halves) into `frame` (Ethernet, IP with hop limit 64, TCP, all checksums filled
/// in); returns its length, or `None` if it does not fit or the families differ. The ports of
/// `header` are ignored: they are taken from `src` and `dst`.
pub fn emit(
    frame: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    header: &TcpHeader,
    payload: [&[u8]; 2],
) -> Option<usize> {
    let header = TcpHeader {
        src_port: src.port(),
        dst_port: dst.port(),
        ..*header
    };
    let hlen = header.header_len();
    let l4_len = hlen + payload[0].len() + payload[1].len();
    let l4 = emit_headers(
        frame,
        src_mac,
        dst_mac,
        src.ip(),
        dst.ip(),
        PROTO_TCP,
        l4_len,
    )?;
    let len = l4 + l4_len;
    let seg = frame.get_mut(l4..len)?;
    let (head, data) = seg.split_at_mut(hlen);
    header.emit(head).ok()?;
    let (first, second) = data.split_at_mut(payload[0].len());
    first.copy_from_slice(payload[0]);
    second.copy_from_slice(payload[1]);
    // Summed over the contiguous copy in the frame, so an odd-length first half needs no care.
    let c = checksum::l4(src.ip(), dst.ip(), PROTO_TCP, seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify;

    /// Frames captured from the kernel (Linux 6.18, default sysctls): `socat` connections
    /// 198.18.0.1:40000 -> 198.18.0.2:7000 sending "hello" and [2001:db8::1]:40001 ->
    /// [2001:db8::2]:7001 sending "hello6", between two network namespaces joined by a veth pair
    /// with TX checksum offload off on both ends, taken with `tcpdump -w` on the listener's end.
    /// Each connection gives its SYN, SYN-ACK and first data segment.
    const SYN4: [u8; 74] = [
        0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0x74, 0x81, 0x40, 0x00, 0x40, 0x06, 0x3a, 0x13, 0xc6, 0x12, 0x00, 0x01,
        0xc6, 0x12, 0x00, 0x02, 0x9c, 0x40, 0x1b, 0x58, 0x9c, 0xb2, 0x67, 0x06, 0x00, 0x00, 0x00,
        0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xa5, 0x9f, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0xef, 0x33, 0x70, 0xbf, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];
    const SYN_ACK4: [u8; 74] = [
        0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0x94, 0xc6, 0x12, 0x00, 0x02,
        0xc6, 0x12, 0x00, 0x01, 0x1b, 0x58, 0x9c, 0x40, 0x3e, 0xef, 0xc9, 0x62, 0x9c, 0xb2, 0x67,
        0x07, 0xa0, 0x12, 0xfe, 0x88, 0x49, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0xbb, 0x35, 0x95, 0x6e, 0xef, 0x33, 0x70, 0xbf, 0x01, 0x03, 0x03, 0x0a,
    ];
    const DATA4: [u8; 71] = [
        0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x39, 0x74, 0x83, 0x40, 0x00, 0x40, 0x06, 0x3a, 0x14, 0xc6, 0x12, 0x00, 0x01,
        0xc6, 0x12, 0x00, 0x02, 0x9c, 0x40, 0x1b, 0x58, 0x9c, 0xb2, 0x67, 0x07, 0x3e, 0xef, 0xc9,
        0x63, 0x80, 0x18, 0x00, 0x3f, 0x32, 0x3a, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0xef, 0x33,
        0x70, 0xbf, 0xbb, 0x35, 0x95, 0x6e, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];
    const SYN6: [u8; 94] = [
        0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0x86, 0xdd, 0x60,
        0x08, 0x99, 0x3d, 0x00, 0x28, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9c, 0x41, 0x1b, 0x59, 0xed, 0xe8,
        0xff, 0xe3, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfd, 0x20, 0xa0, 0x41, 0x00, 0x00, 0x02,
        0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0x1e, 0x26, 0x8b, 0xac, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x0a,
    ];
    const SYN_ACK6: [u8; 94] = [
        0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x86, 0xdd, 0x60,
        0x0c, 0x94, 0x72, 0x00, 0x28, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x1b, 0x59, 0x9c, 0x41, 0x10, 0x02,
        0x75, 0xd8, 0xed, 0xe8, 0xff, 0xe4, 0xa0, 0x12, 0xfb, 0x04, 0x1a, 0x16, 0x00, 0x00, 0x02,
        0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0x2c, 0x1e, 0xd6, 0x3d, 0x1e, 0x26, 0x8b, 0xac,
        0x01, 0x03, 0x03, 0x0a,
    ];
    const DATA6: [u8; 92] = [
        0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e, 0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63, 0x86, 0xdd, 0x60,
        0x08, 0x99, 0x3d, 0x00, 0x26, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9c, 0x41, 0x1b, 0x59, 0xed, 0xe8,
        0xff, 0xe4, 0x10, 0x02, 0x75, 0xd9, 0x80, 0x18, 0x00, 0x40, 0xff, 0x7e, 0x00, 0x00, 0x01,
        0x01, 0x08, 0x0a, 0x1e, 0x26, 0x8b, 0xad, 0x2c, 0x1e, 0xd6, 0x3d, 0x68, 0x65, 0x6c, 0x6c,
        0x6f, 0x36,
    ];

    const MAC_A: [u8; 6] = [0x5e, 0x57, 0xeb, 0x9e, 0x50, 0x63];
    const MAC_B: [u8; 6] = [0xde, 0x3e, 0x1a, 0x15, 0xc6, 0x0e];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Classifies `frame` and parses its segment.
    fn parse_frame(frame: &[u8]) -> Result<TcpPacket, Error> {
        let c = classify(frame).ok_or(Error::Malformed)?;
        TcpPacket::from_classified(frame, &c)
    }

    fn payload<'a>(frame: &'a [u8], p: &TcpPacket) -> &'a [u8] {
        &frame[p.payload_offset..p.payload_offset + p.payload_len]
    }

    fn syn_options(mss: u16, ts: (u32, u32)) -> TcpOptions {
        TcpOptions {
            mss: Some(mss),
            window_scale: Some(10),
            sack_permitted: true,
            timestamps: Some(ts),
            sack: SackBlocks::default(),
        }
    }

    fn data_options(ts: (u32, u32)) -> TcpOptions {
        TcpOptions {
            timestamps: Some(ts),
            ..TcpOptions::default()
        }
    }

    /// A captured frame and what it holds: (frame, src, dst, header, payload).
    type Capture = (
        &'static [u8],
        SocketAddr,
        SocketAddr,
        TcpHeader,
        &'static [u8],
    );

    /// The kernel's frames and what they hold.
    fn kernel_segments() -> [Capture; 6] {
        let (a4, b4) = (addr("198.18.0.1:40000"), addr("198.18.0.2:7000"));
        let (a6, b6) = (addr("[2001:db8::1]:40001"), addr("[2001:db8::2]:7001"));
        let h = |src: SocketAddr, dst: SocketAddr, seq, ack, flags, window, options| TcpHeader {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: Seq(seq),
            ack: Seq(ack),
            flags,
            window,
            options,
        };
        let (syn, syn_ack, psh_ack) =
            (Flags::SYN, Flags::SYN | Flags::ACK, Flags::PSH | Flags::ACK);
        [
            (
                &SYN4[..],
                a4,
                b4,
                h(
                    a4,
                    b4,
                    2628937478,
                    0,
                    syn,
                    64240,
                    syn_options(1460, (4013125823, 0)),
                ),
                &b""[..],
            ),
            (
                &SYN_ACK4[..],
                b4,
                a4,
                h(
                    b4,
                    a4,
                    1055902050,
                    2628937479,
                    syn_ack,
                    65160,
                    syn_options(1460, (3140851054, 4013125823)),
                ),
                &b""[..],
            ),
            (
                &DATA4[..],
                a4,
                b4,
                h(
                    a4,
                    b4,
                    2628937479,
                    1055902051,
                    psh_ack,
                    63,
                    data_options((4013125823, 3140851054)),
                ),
                &b"hello"[..],
            ),
            (
                &SYN6[..],
                a6,
                b6,
                h(
                    a6,
                    b6,
                    3991470051,
                    0,
                    syn,
                    64800,
                    syn_options(1440, (505842604, 0)),
                ),
                &b""[..],
            ),
            (
                &SYN_ACK6[..],
                b6,
                a6,
                h(
                    b6,
                    a6,
                    268596696,
                    3991470052,
                    syn_ack,
                    64260,
                    syn_options(1440, (740218429, 505842604)),
                ),
                &b""[..],
            ),
            (
                &DATA6[..],
                a6,
                b6,
                h(
                    a6,
                    b6,
                    3991470052,
                    268596697,
                    psh_ack,
                    64,
                    data_options((505842605, 740218429)),
                ),
                &b"hello6"[..],
            ),
        ]
    }

    #[test]
    fn parses_the_kernels_segments() {
        for (frame, src, dst, header, data) in kernel_segments() {
            let p = parse_frame(frame).unwrap();
            assert_eq!(p.src, src);
            assert_eq!(p.dst, dst);
            assert_eq!(p.header, header, "{src} -> {dst} {:?}", header.flags);
            assert_eq!(payload(frame, &p), data);
            let l4 = if src.is_ipv4() { 34 } else { 54 };
            let seg = &frame[l4..];
            let len = p.payload_offset - l4;
            assert_eq!(TcpHeader::parse_unchecked(seg), Ok((header, len)));
            assert_eq!(TcpHeader::parse(seg, src.ip(), dst.ip()), Ok((header, len)));
            assert_eq!(header.header_len(), len);
        }
    }

    #[test]
    fn emit_reproduces_the_kernels_segments_byte_for_byte() {
        for (frame, src, dst, header, data) in kernel_segments() {
            let (src_mac, dst_mac) = if frame[6..12] == MAC_A {
                (MAC_A, MAC_B)
            } else {
                (MAC_B, MAC_A)
            };
            let mut out = [0u8; 128];
            let n = emit(&mut out, src_mac, dst_mac, src, dst, &header, [data, &[]]).unwrap();
            assert_eq!(n, frame.len());
            let l4 = if src.is_ipv4() { 34 } else { 54 };
            assert_eq!(&out[..14], &frame[..14], "Ethernet header");
            // The IP headers differ only in the kernel's IPv4 ID and IPv6 flow label.
            assert_eq!(
                &out[l4..n],
                &frame[l4..],
                "TCP header, options, checksum and payload of {:?}",
                header.flags
            );
            let mut alone = [0u8; 60];
            let hlen = header.emit(&mut alone).unwrap();
            assert_eq!(&alone[..16], &frame[l4..l4 + 16]);
            assert_eq!(&alone[20..hlen], &frame[l4 + 20..l4 + hlen], "options");
        }
    }

    /// Emits a segment into a frame, checks every checksum independently and parses it back.
    fn emit_and_parse(src: &str, dst: &str, header: &TcpHeader, data: [&[u8]; 2]) -> TcpPacket {
        let (src, dst) = (addr(src), addr(dst));
        let mut frame = [0u8; 256];
        let n = emit(
            &mut frame,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            src,
            dst,
            header,
            data,
        )
        .unwrap();
        let f = &frame[..n];
        let l4 = if src.is_ipv4() { 34 } else { 54 };
        let seg = &f[l4..];
        assert!(checksum::verifies(
            checksum::pseudo_header(src.ip(), dst.ip(), PROTO_TCP, seg.len()),
            seg
        ));
        if src.is_ipv4() {
            assert!(checksum::verifies(0, &f[14..34]), "IPv4 header checksum");
            assert_eq!(f[22], 64, "TTL");
        } else {
            assert_eq!(f[21], 64, "hop limit");
        }
        let p = parse_frame(f).unwrap();
        assert_eq!((p.src, p.dst), (src, dst));
        let joined: Vec<u8> = [data[0], data[1]].concat();
        assert_eq!(payload(f, &p), &joined[..]);
        // The same bytes as with the payload in one piece.
        let mut whole = [0u8; 256];
        let m = emit(
            &mut whole,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            src,
            dst,
            header,
            [&joined, &[]],
        );
        assert_eq!(m, Some(n));
        assert_eq!(&whole[..n], f);
        p
    }

    #[test]
    fn syn_and_data_with_sack_round_trip_over_both_families() {
        let syn = TcpHeader {
            seq: Seq(0xfedc_ba98),
            flags: Flags::SYN,
            window: 64240,
            options: syn_options(1460, (1, 0)),
            ..TcpHeader::default()
        };
        let mut sack = SackBlocks::default();
        for (l, r) in [(1000, 2000), (3000, 4000), (u32::MAX - 10, 5)] {
            assert!(sack.push(Seq(l), Seq(r)));
        }
        let data = TcpHeader {
            seq: Seq(u32::MAX - 2),
            ack: Seq(77),
            flags: Flags::PSH | Flags::ACK,
            window: 501,
            options: TcpOptions {
                timestamps: Some((0x0102_0304, 0xa0b0_c0d0)),
                sack,
                ..TcpOptions::default()
            },
            ..TcpHeader::default()
        };
        for (src, dst) in [
            ("198.18.0.2:7000", "198.18.0.1:40000"),
            ("[2001:db8::2]:7000", "[2001:db8::1]:40000"),
        ] {
            let ports = |h: &TcpHeader| TcpHeader {
                src_port: 7000,
                dst_port: 40000,
                ..*h
            };
            for parts in [
                [&b""[..], &b""[..]],
                [&b"hel"[..], &b"lo, world"[..]],
                [&b"x"[..], &b"y"[..]],
            ] {
                let h = if parts[0].is_empty() { syn } else { data };
                let p = emit_and_parse(src, dst, &h, parts);
                assert_eq!(p.header, ports(&h));
                assert_eq!(p.header.header_len(), if h == syn { 40 } else { 60 });
            }
            // An odd first half of an odd total, and an empty first half.
            let p = emit_and_parse(src, dst, &data, [b"abcde", b"fghijkl"]);
            assert_eq!(p.payload_len, 12);
            let p = emit_and_parse(src, dst, &data, [b"", b"odd"]);
            assert_eq!(p.payload_len, 3);
        }
    }

    #[test]
    fn options_follow_the_linux_layout() {
        let mut h = TcpHeader {
            flags: Flags::SYN,
            options: TcpOptions {
                mss: Some(1460),
                sack_permitted: true,
                ..TcpOptions::default()
            },
            ..TcpHeader::default()
        };
        let mut buf = [0u8; 60];
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(&buf[20..n], &[2, 4, 5, 180, 1, 1, 4, 2]);
        h.options.sack_permitted = false;
        h.options.timestamps = Some((5, 6));
        h.options.window_scale = Some(20); // clamped
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(
            &buf[20..n],
            &[
                2, 4, 5, 180, 1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 1, 3, 3, 14
            ]
        );
        // Without SYN, MSS, window scale and SACK-permitted are not sent.
        h.flags = Flags::ACK;
        h.options.sack_permitted = true;
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(&buf[20..n], &[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6]);
        h.options.timestamps = None;
        assert_eq!(h.emit(&mut buf), Ok(20));
        assert_eq!(h.header_len(), 20);
        assert!(h.options.sack.push(Seq(1), Seq(2)));
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(&buf[20..n], &[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn sack_blocks_fit_the_option_space() {
        let mut o = TcpOptions::default();
        assert_eq!(sack_capacity(&o), 4);
        for i in 0..4 {
            assert!(o.sack.push(Seq(i * 100), Seq(i * 100 + 50)));
        }
        assert!(!o.sack.push(Seq(1), Seq(2)), "a fifth block");
        assert_eq!(o.sack.len(), 4);
        let mut h = TcpHeader {
            flags: Flags::ACK,
            options: o,
            ..TcpHeader::default()
        };
        assert_eq!(h.header_len(), 56);
        let mut buf = [0u8; 60];
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(TcpHeader::parse_unchecked(&buf[..n]), Ok((h, 56)));
        // With timestamps only the first three fit.
        h.options.timestamps = Some((9, 8));
        assert_eq!(sack_capacity(&h.options), 3);
        assert_eq!(h.header_len(), 60);
        let n = h.emit(&mut buf).unwrap();
        let (back, _) = TcpHeader::parse_unchecked(&buf[..n]).unwrap();
        assert_eq!(
            back.options.sack.as_slice(),
            &h.options.sack.as_slice()[..3]
        );
        assert_eq!(back.options.timestamps, Some((9, 8)));
        h.options.sack.clear();
        assert!(h.options.sack.is_empty());
        assert_eq!(h.options.sack, SackBlocks::default());
    }

    #[test]
    fn flags_combine_and_print() {
        let mut f = Flags::SYN;
        f |= Flags::ACK;
        assert_eq!(f, Flags::SYN | Flags::ACK);
        assert!(f.contains(Flags::SYN) && f.contains(Flags::SYN | Flags::ACK));
        assert!(!f.contains(Flags::FIN) && !f.contains(Flags::SYN | Flags::FIN));
        assert_eq!(format!("{f:?}"), "SYN|ACK");
        assert_eq!(
            format!("{:?}", Flags(0xff)),
            "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
        );
        assert_eq!(format!("{:?}", Flags::default()), "(none)");
    }

    /// A 24-byte header (data offset 6) of an ACK whose four option bytes are `options`.
    fn with_options(options: [u8; 4]) -> [u8; 24] {
        let mut h = [0u8; 24];
        h[12] = 6 << 4;
        h[13] = Flags::ACK.0;
        h[20..].copy_from_slice(&options);
        h
    }

    #[test]
    fn rejects_truncated_and_malformed_headers() {
        let seg = &DATA4[34..];
        for cut in 0..32 {
            assert_eq!(
                TcpHeader::parse_unchecked(&seg[..cut]),
                Err(Error::Truncated),
                "{cut}"
            );
        }
        assert!(TcpHeader::parse_unchecked(&seg[..32]).is_ok());
        for doff in 0..5 {
            let mut s = seg.to_vec();
            s[12] = doff << 4;
            assert_eq!(
                TcpHeader::parse_unchecked(&s),
                Err(Error::Malformed),
                "{doff}"
            );
        }
        // As Linux: bad option bytes never refuse the segment. A silly length or an option
        // running past the header ends the parsing; a known option of the wrong length is
        // skipped and the ones after it still count.
        for (options, why) in [
            ([3, 0, 1, 1], "length 0"),
            ([3, 1, 1, 1], "length 1"),
            ([1, 1, 1, 99], "kind without length"),
            ([1, 1, 99, 3], "past the header"),
            ([2, 3, 5, 1], "MSS of length 3"),
            ([3, 4, 7, 0], "window scale of length 4"),
            ([4, 3, 0, 1], "SACK-permitted of length 3"),
            ([5, 2, 1, 1], "SACK without blocks"),
            ([8, 4, 0, 0], "timestamps of length 4"),
        ] {
            let (h, _) = TcpHeader::parse_unchecked(&with_options(options)).expect(why);
            assert_eq!(h.options, TcpOptions::default(), "{why}");
        }
        let mut mss3_then_ws = [0u8; 28];
        mss3_then_ws[12] = 7 << 4;
        mss3_then_ws[20..28].copy_from_slice(&[2, 3, 5, 3, 3, 7, 1, 1]);
        let (h, _) = TcpHeader::parse_unchecked(&mss3_then_ws).unwrap();
        assert_eq!(h.options.mss, None, "the MSS of length 3 is skipped");
        assert_eq!(
            h.options.window_scale,
            Some(7),
            "the option after it counts"
        );
        // Unknown options are skipped, bytes after EOL ignored, large shifts clamped.
        let (h, n) = TcpHeader::parse_unchecked(&with_options([30, 4, 3, 2])).unwrap();
        assert_eq!((h.options, n), (TcpOptions::default(), 24));
        let (h, _) = TcpHeader::parse_unchecked(&with_options([0, 2, 3, 2])).unwrap();
        assert_eq!(h.options, TcpOptions::default());
        let (h, _) = TcpHeader::parse_unchecked(&with_options([3, 3, 15, 0])).unwrap();
        assert_eq!(h.options.window_scale, Some(14));
    }

    #[test]
    fn rejects_bad_checksums_and_mixed_families() {
        let (src, dst) = (addr("198.18.0.1:40000").ip(), addr("198.18.0.2:7000").ip());
        let seg = &DATA4[34..];
        assert!(TcpHeader::parse(seg, src, dst).is_ok());
        for i in [0, 17, 25, seg.len() - 1] {
            let mut s = seg.to_vec();
            s[i] ^= 0x04;
            assert_eq!(
                TcpHeader::parse(&s, src, dst),
                Err(Error::Checksum),
                "byte {i}"
            );
        }
        assert_eq!(
            TcpHeader::parse(seg, dst, src),
            Ok(TcpHeader::parse_unchecked(seg).unwrap())
        );
        assert_eq!(
            TcpHeader::parse(seg, src, src),
            Err(Error::Checksum),
            "other address"
        );
        assert_eq!(
            TcpHeader::parse(&seg[..seg.len() - 1], src, dst),
            Err(Error::Checksum)
        );
        let v6 = addr("[2001:db8::1]:1").ip();
        assert_eq!(TcpHeader::parse(seg, src, v6), Err(Error::Malformed));
        let mut f = DATA6;
        f[90] ^= 0x80; // a payload bit
        assert_eq!(parse_frame(&f), Err(Error::Checksum));
        // A UDP classification is not TCP.
        let c = classify(&DATA4).unwrap();
        let udp = Classified {
            key: netdemux_common::BindKey::new(
                c.key.addr_octets(),
                7000,
                netdemux_common::PROTO_UDP,
                c.key.family,
            ),
            ..c
        };
        assert_eq!(
            TcpPacket::from_classified(&DATA4, &udp),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn refuses_what_does_not_fit_or_mixes_families() {
        let (v4, v6) = (addr("198.18.0.2:1"), addr("[2001:db8::1]:1"));
        let h = TcpHeader {
            flags: Flags::ACK,
            options: data_options((1, 2)),
            ..TcpHeader::default()
        };
        let e = |buf: &mut [u8], src, dst| emit(buf, [0; 6], [0; 6], src, dst, &h, [b"ab", b"c"]);
        assert_eq!(e(&mut [0u8; 400], v4, v6), None);
        assert_eq!(e(&mut [0u8; 400], v6, v4), None);
        assert_eq!(e(&mut [0u8; 14 + 20 + 32 + 3], v4, v4), Some(69));
        assert_eq!(e(&mut [0u8; 14 + 20 + 32 + 2], v4, v4), None);
        assert_eq!(e(&mut [0u8; 14 + 20 + 20], v4, v4), None);
        assert_eq!(e(&mut [0u8; 10], v4, v4), None);
        assert_eq!(h.emit(&mut [0u8; 31]), Err(Error::Truncated));
        assert_eq!(h.emit(&mut [0u8; 32]), Ok(32));
        let big = [0u8; 70_000];
        assert_eq!(
            emit(
                &mut vec![0u8; 80_000],
                [0; 6],
                [0; 6],
                v4,
                v4,
                &h,
                [&big, &[]]
            ),
            None
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::test_rng::Xorshift32::new(0x2545_f491);
        let mut next = || rng.next();
        let (src, dst) = (addr("198.18.0.1:1").ip(), addr("198.18.0.2:2").ip());
        let mut parsed = 0;
        for _ in 0..10_000 {
            let mut buf = [0u8; 80];
            let len = next() as usize % buf.len();
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            if next() % 2 == 0 {
                // A plausible data offset, so that the options are walked.
                buf[12] = (5 + (next() % 11) as u8) << 4;
            }
            let bytes = &buf[..len];
            let _ = TcpHeader::parse(bytes, src, dst);
            if let Ok((h, n)) = TcpHeader::parse_unchecked(bytes) {
                parsed += 1;
                assert!((20..=60).contains(&n));
                // What was parsed re-emits as a header that parses.
                let mut out = [0u8; 60];
                let m = h.emit(&mut out).unwrap();
                assert_eq!(m, h.header_len());
                assert!(TcpHeader::parse_unchecked(&out[..m]).is_ok());
            }
        }
        assert!(parsed > 100, "only {parsed} parsed");
        // Kernel frames with a few random bytes changed.
        for _ in 0..10_000 {
            let mut f = SYN6;
            for _ in 0..3 {
                let v = next();
                f[v as usize % f.len()] = (v >> 9) as u8;
            }
            let _ = parse_frame(&f);
        }
    }
}
