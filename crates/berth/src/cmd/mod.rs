//! One module per subcommand family; each turns parsed arguments into library calls and prints the result.
//! Modules must never hold logic a library crate should own.

pub mod auth;
pub mod cluster;
pub mod doctor;
pub mod image;
pub mod migrate;
pub mod pull;
pub mod run;
pub mod server;
pub mod trust;
