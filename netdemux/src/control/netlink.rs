//! One request to the kernel's rtnetlink, answered synchronously: the messages are
//! netlink-packet-route's, the socket netlink-sys's.

use std::io;

use anyhow::{Context as _, Result, bail};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Why a request was not answered with messages.
#[derive(Debug)]
pub enum Refusal {
    /// The kernel answered with this error (e.g. `ENETUNREACH` for a route lookup).
    Kernel(io::Error),
    /// Talking to the kernel failed.
    Other(anyhow::Error),
}

/// Sends `msg` (a dump request when `dump`) and returns the kernel's answers.
pub fn request(msg: RouteNetlinkMessage, dump: bool) -> Result<Vec<RouteNetlinkMessage>, Refusal> {
    exchange(msg, dump).map_err(|e| match e.downcast::<io::Error>() {
        Ok(io) if io.raw_os_error().is_some() => Refusal::Kernel(io),
        Ok(io) => Refusal::Other(io.into()),
        Err(e) => Refusal::Other(e),
    })
}

fn exchange(msg: RouteNetlinkMessage, dump: bool) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("cannot open an rtnetlink socket")?;
    socket
        .bind_auto()
        .context("cannot bind the rtnetlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("cannot connect the rtnetlink socket")?;
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    nl.header.sequence_number = 1;
    nl.finalize();
    let mut out = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut out);
    socket.send(&out, 0).context("rtnetlink send")?;

    let mut answers = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .context("rtnetlink recv")?;
        let mut off = 0;
        while off < n {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                .map_err(|e| anyhow::anyhow!("malformed rtnetlink answer: {e}"))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(answers),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => return Err(io::Error::from_raw_os_error(-code.get()).into()),
                    None => return Ok(answers),
                },
                NetlinkPayload::InnerMessage(m) => answers.push(m),
                _ => {}
            }
            if !dump {
                return Ok(answers);
            }
            if len == 0 {
                bail!("malformed rtnetlink answer: an empty message");
            }
            off += (len + 3) & !3;
        }
    }
}
