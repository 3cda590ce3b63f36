//! Listeners under load and abuse: odd SYNs, full queues, SYN cookies.

use crate::stack::tcp::tests::script::run;

#[test]
fn a_syn_with_fin_to_a_listener_is_dropped() {
    // Linux (tcp_rcv_state_process in LISTEN): SYN+FIN is discarded, no SYN-ACK and no RST.
    run(r#"
        +0    app listen
        +0    < SF 0:0(0) win 65535 <mss 1000>
        +0    expect gone
        +.01  < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
    "#);
}

#[test]
fn a_syn_with_fin_to_a_closed_port_gets_a_rst() {
    run(r#"
        +0    < SF 0:0(0) win 65535 <mss 1000>
        +0    > R. 0:0(0) ack 2 win 0
    "#);
}
