//! A raw packet socket (AF_PACKET) that hands whole Ethernet frames to the kernel's transmit
//! path: an skb per frame, and the device's TX queue picked by the kernel as for any socket's
//! traffic (on a veth with no XPS map, by each flow's hash). The generator's `--sender packet`,
//! which is how one CPU feeds every RX queue of a multi-queue veth: XDP frames land on the
//! queue numbered after the sending CPU.
//!
//! The socket is bound with protocol 0, so it receives nothing; it is blocking, so a full send
//! buffer waits for the device instead of failing.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// Most frames one [`PacketSender::send`] call hands over.
pub const MAX_BATCH: usize = 64;

/// Send buffer asked for (as root, beyond `wmem_max`): room for a few thousand small frames in
/// flight, so the sender waits on the device rather than on its own socket.
const SNDBUF: libc::c_int = 4 << 20;

/// What one [`PacketSender::send`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Frames the device took, the first ones of the batch.
    pub accepted: usize,
    /// Frames the device refused (0 or 1): the one right after the accepted ones. The kernel
    /// stops a batch at its first error, and on a blocking packet socket the only one that
    /// recurs under load is ENOBUFS, the device dropping the frame (veth: its peer's ring
    /// full, counted as the sender's `tx dropped`); another error shows on the next call.
    pub refused: usize,
}

/// A bound AF_PACKET socket that transmits frames on one interface.
#[derive(Debug)]
pub struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    /// A socket bound to the interface `ifindex` (of the current network namespace).
    pub fn bind(ifindex: u32) -> io::Result<PacketSender> {
        // SAFETY: socket(2) with constant arguments; it returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is a plain C struct of integers and bytes: all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex =
            i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `addr` is a live sockaddr_ll and the length given is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let size = SNDBUF;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: setsockopt(2) with a pointer to a live c_int and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const size).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            // SO_SNDBUFFORCE needs CAP_NET_ADMIN; without it the capped SO_SNDBUF will do.
            if rc == 0 {
                break;
            }
        }
        Ok(PacketSender { fd })
    }

    /// Hands the first [`MAX_BATCH`] of `frames` to the device in one sendmmsg(2) call.
    pub fn send(&self, frames: &[&[u8]]) -> io::Result<Sent> {
        let n = frames.len().min(MAX_BATCH);
        if n == 0 {
            return Ok(Sent {
                accepted: 0,
                refused: 0,
            });
        }
        // SAFETY: iovec and mmsghdr are plain C structs of integers and pointers: all zeroes
        // (null pointers, zero lengths) is valid.
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for ((v, m), f) in iov.iter_mut().zip(msgs.iter_mut()).zip(frames) {
            v.iov_base = f.as_ptr().cast_mut().cast();
            v.iov_len = f.len();
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `n` headers each point at one iovec of this frame, and each iovec at
        // a live frame of `frames`, which the kernel only reads; all outlive the call.
        let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) => Ok(Sent {
                    accepted: 0,
                    refused: 1,
                }),
                _ => Err(e),
            };
        }
        let accepted = rc as usize;
        Ok(Sent {
            accepted,
            refused: usize::from(accepted < n),
        })
    }
}
