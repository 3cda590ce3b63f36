//! SYN cookies (RFC 4987 §3.6), made as Linux makes them: when a listener's half-open queue is
//! full, the SYN-ACK's sequence number carries what the handshake needs, so the listener keeps
//! nothing until the peer's ACK brings the cookie back.
//!
//! The cookie (Linux's `__cookie_v4_init_sequence`) is `H1(4-tuple) + peer ISN + (minute <<
//! 24) + ((H2(4-tuple, minute) + MSS index) & 0xffffff)`. The minute makes a cookie expire; the
//! MSS index picks the largest entry of a small table not above the peer's MSS. With
//! timestamps, the low six bits of the SYN-ACK's TSval keep the window scale (four bits, 15
//! for none) and SACK-permitted (Linux's `cookie_init_timestamp`), and the ACK echoes them in
//! its TSecr; without timestamps a cookie connection has neither option, as in Linux.

use std::{
    hash::{BuildHasher, RandomState},
    net::SocketAddr,
};

use crate::wire::seq::Seq;

/// Minutes a cookie stays good after the one it was made in (Linux's MAX_SYNCOOKIE_AGE).
pub const MAX_AGE_MINUTES: u32 = 2;

/// IPv4 MSS values a cookie can say (Linux's msstab).
const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// IPv6 MSS values (Linux's msstab for IPv6: 1280, 1480, 1500 and 9000-byte MTUs).
const MSS_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// The timestamp bits that keep options: 4 for the window scale, 1 for SACK, 1 unused (ECN in
/// Linux).
const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
const NO_WSCALE: u32 = 0xf;
const SACK_BIT: u32 = 1 << 4;

/// What a valid cookie ACK restores of the SYN it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The peer's MSS, rounded down to a table entry.
    pub mss: u16,
    /// The peer's window-scale shift, if it offered one.
    pub window_scale: Option<u8>,
    /// The peer offered SACK.
    pub sack_permitted: bool,
}

/// Makes and checks cookies with a secret of its own.
#[derive(Debug, Default)]
pub struct SynCookies {
    secret: RandomState,
}

impl SynCookies {
    /// The cookie for a SYN `remote` -> `local` with sequence number `peer_isn` and MSS option
    /// `peer_mss` (absent: the RFC 9293 default), in `minute`.
    pub fn make(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: Seq,
        peer_mss: Option<u16>,
        minute: u32,
    ) -> Seq {
        let table = table(remote);
        let mss = peer_mss.unwrap_or(table[0]);
        let index = table.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        let h1 = self.hash(local, remote, None);
        let h2 = self.hash(local, remote, Some(minute));
        Seq(h1
            .wrapping_add(peer_isn.0)
            .wrapping_add(minute << 24)
            .wrapping_add(h2.wrapping_add(index) & 0x00ff_ffff))
    }

    /// The MSS a cookie ACK's `cookie` (its ACK number less one) says, if the cookie was made
    /// for this 4-tuple and `peer_isn` (its sequence number less one) in the last
    /// [`MAX_AGE_MINUTES`] before `minute`.
    pub fn check(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_isn: Seq,
        cookie: Seq,
        minute: u32,
    ) -> Option<u16> {
        let h1 = self.hash(local, remote, None);
        let rest = cookie.0.wrapping_sub(h1).wrapping_sub(peer_isn.0);
        // Only the minute's low 8 bits travel: the age is taken modulo 256.
        let age = (minute.wrapping_sub(rest >> 24)) & 0xff;
        if age > MAX_AGE_MINUTES {
            return None;
        }
        let made = minute.wrapping_sub(age);
        let h2 = self.hash(local, remote, Some(made));
        let index = (rest.wrapping_sub(made << 24).wrapping_sub(h2)) & 0x00ff_ffff;
        table(remote).get(index as usize).copied()
    }

    fn hash(&self, local: SocketAddr, remote: SocketAddr, minute: Option<u32>) -> u32 {
        self.secret.hash_one((local, remote, minute)) as u32
    }
}

fn table(remote: SocketAddr) -> &'static [u16; 4] {
    if remote.is_ipv4() { &MSS_V4 } else { &MSS_V6 }
}

/// The TSval of a cookie SYN-ACK: `tsval` with its low bits replaced by the options, never
/// ahead of `tsval` (Linux's `cookie_init_timestamp`).
pub fn encode_timestamp(tsval: u32, window_scale: Option<u8>, sack_permitted: bool) -> u32 {
    let mut bits = window_scale.map_or(NO_WSCALE, |s| u32::from(s.min(14)));
    if sack_permitted {
        bits |= SACK_BIT;
    }
    let ts = (tsval & !TS_OPTION_MASK) | bits;
    if ts > tsval {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The window scale and SACK-permitted a cookie ACK's TSecr echoes.
pub fn decode_timestamp(tsecr: u32) -> (Option<u8>, bool) {
    let window_scale = match tsecr & 0xf {
        NO_WSCALE => None,
        s => Some(s as u8),
    };
    (window_scale, tsecr & SACK_BIT != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "198.18.0.1:80".parse().unwrap(),
            "198.18.0.2:40000".parse().unwrap(),
        )
    }

    #[test]
    fn a_cookie_checks_within_its_age_and_not_after() {
        let jar = SynCookies::default();
        let (l, r) = addrs();
        let c = jar.make(l, r, Seq(1000), Some(1460), 300);
        for m in 300..=300 + MAX_AGE_MINUTES {
            assert_eq!(jar.check(l, r, Seq(1000), c, m), Some(1460));
        }
        assert_eq!(jar.check(l, r, Seq(1000), c, 303), None);
        assert_eq!(jar.check(l, r, Seq(1000), c, 299), None, "from the future");
    }

    #[test]
    fn a_cookie_is_bound_to_its_four_tuple_isn_and_secret() {
        let jar = SynCookies::default();
        let (l, r) = addrs();
        // The largest MSS has the last index: one more is none.
        let c = jar.make(l, r, Seq(1000), Some(1460), 7);
        assert_eq!(jar.check(l, r, Seq(1000 + (1 << 20)), c, 7), None);
        let other: SocketAddr = "198.18.0.2:40001".parse().unwrap();
        assert_eq!(jar.check(l, other, Seq(1000), c, 7), None);
        assert_eq!(SynCookies::default().check(l, r, Seq(1000), c, 7), None);
        assert_eq!(jar.check(l, r, Seq(1000), c + 1, 7), None);
    }

    #[test]
    fn the_mss_rounds_down_to_the_table() {
        let jar = SynCookies::default();
        let (l, r) = addrs();
        for (offered, kept) in [
            (None, 536),
            (Some(100), 536),
            (Some(1299), 536),
            (Some(1300), 1300),
            (Some(1450), 1440),
            (Some(9000), 1460),
        ] {
            let c = jar.make(l, r, Seq(5), offered, 1);
            assert_eq!(jar.check(l, r, Seq(5), c, 1), Some(kept), "{offered:?}");
        }
        let (l6, r6): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:80".parse().unwrap(),
            "[2001:db8::2]:9".parse().unwrap(),
        );
        let c = jar.make(l6, r6, Seq(5), Some(8960), 1);
        assert_eq!(jar.check(l6, r6, Seq(5), c, 1), Some(8940));
    }

    #[test]
    fn guessed_cookies_rarely_pass() {
        // 2^16 guesses at one 4-tuple: the 24 bits of hash leave about 4 in 2^24 through.
        let jar = SynCookies::default();
        let (l, r) = addrs();
        let passed = (0..65536u32)
            .filter(|g| {
                jar.check(l, r, Seq(1), Seq(g.wrapping_mul(65537)), 9)
                    .is_some()
            })
            .count();
        assert!(passed <= 2, "{passed} guesses passed");
    }

    #[test]
    fn options_travel_in_the_timestamp_and_it_never_runs_ahead() {
        for tsval in [0u32, 5, 63, 64, 1_000_003, u32::MAX] {
            for (ws, sack) in [
                (None, false),
                (Some(7), true),
                (Some(14), false),
                (Some(0), true),
            ] {
                let ts = encode_timestamp(tsval, ws, sack);
                assert_eq!(decode_timestamp(ts), (ws, sack));
                assert!(tsval.wrapping_sub(ts) < 64, "{tsval} -> {ts}");
            }
        }
    }
}
