//! A UDP echo server on netdemux's API, in a few lines:
//!
//!     udp_echo IFACE ADDR:PORT [NETNS]
//!
//! Datagrams to ADDR:PORT on IFACE skip the kernel; everything else on IFACE is untouched.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: udp_echo IFACE ADDR:PORT [NETNS]");
    };
    let mut stack = netdemux::Stack::builder().iface(&iface);
    if let Some(ns) = args.next() {
        stack = stack.netns(&ns);
    }
    let stack = stack.build().await?;
    let socket = stack.udp_bind(addr.parse()?).await?;
    println!("echoing on udp {} ({})", socket.local_addr(), stack.iface());

    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], peer).await?;
    }
}
