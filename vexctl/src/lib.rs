//! The part of vexctl that other programs reuse: the ioctl ABI of a mounted vexfs
//! ([`abi`]: the structs and numbers of `include/vexfs.h`, checked against the header at test
//! time) and the calls with safe signatures ([`ioctl`]). The `vexctl` binary (src/main.rs) and
//! the guest test tools of `testkit/` use them.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod abi;
pub mod ioctl;
