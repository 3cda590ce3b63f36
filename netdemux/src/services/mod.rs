//! Built-in services that run on the queue workers. For now the UDP sink: it claims the frames
//! of its bindings and counts them (packets and payload bytes), the cheapest possible consumer.

pub mod udp_sink;
