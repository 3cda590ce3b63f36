//! The application API on a testbed: a tokio runtime and a `Stack` on namespace b's veth end.

use super::netns::Testbed;

/// A two-thread tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A `Stack` on `tb`'s namespace-b interface.
pub async fn stack(tb: &Testbed) -> netdemux::Stack {
    netdemux::Stack::builder()
        .iface(&tb.veth_b)
        .netns(&tb.ns_b)
        .build()
        .await
        .expect("the stack comes up")
}
