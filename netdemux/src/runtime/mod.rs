//! The data plane: [`dataplane`] starts it once for the daemon and the library alike (the
//! privileged set-up, then one [`worker`] per RX queue, and a guard that undoes a half-finished
//! start); a worker runs over its socket's [`frames`], which [`faults`] can wrap for tests; the
//! [`resolver`] asks the kernel about neighbours for an application's sends.

pub mod dataplane;
pub mod faults;
pub mod frames;
pub mod resolver;
pub mod worker;
