//! The code the benchmark binaries share: `fixture` (the realistic image, the local TLS registry with
//! htpasswd auth and the credential files each tool reads), `measure` (running a tool to completion with its
//! wall time, its own peak RSS from `wait4` and the arrival time of marker lines in its output, plus medians),
//! `process` (the servers and agents a benchmark starts, stopped when dropped, and the check that none is left
//! behind) and `cluster` (a `berth server` with its nodes on this machine, driven with kubectl, for the
//! benchmarks that apply Deployments). It owns nothing berth ships; it must never talk to anything but
//! loopback, and never leave a process it started running.

pub mod cluster;
pub mod fixture;
pub mod measure;
pub mod process;
