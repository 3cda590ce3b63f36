//! A TCP echo server on netdemux's userspace TCP stack, in a few lines:
//!
//!     tcp_echo IFACE ADDR:PORT [NETNS]
//!
//! Connections to ADDR:PORT on IFACE skip the kernel; everything else on IFACE is untouched.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: tcp_echo IFACE ADDR:PORT [NETNS]");
    };
    let mut stack = netdemux::Stack::builder().iface(&iface);
    if let Some(ns) = args.next() {
        stack = stack.netns(&ns);
    }
    let stack = stack.build().await?;
    let listener = stack.tcp_listen(addr.parse()?).await?;
    println!(
        "echoing on tcp {} ({})",
        listener.local_addr(),
        stack.iface()
    );

    loop {
        let (mut conn, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("{peer}: {e}");
                        break;
                    }
                }
            }
            let _ = conn.shutdown().await;
        });
    }
}
