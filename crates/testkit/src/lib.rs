//! testkit: real-component fixtures for berth's registry tests (a dev-dependency only).
//!
//! Every fixture runs the real thing on loopback, picks free ports by binding port 0, keeps its files in a
//! temp dir, and stops on `Drop`:
//!
//! | module | fixture | what it is for |
//! |---|---|---|
//! | [`pki`] | [`pki::TestPki`], [`pki::Ca`], [`pki::Leaf`] | root + intermediate CA, server/client leaves, and the TLS bad cases (expired, not yet valid, wrong SAN, self-signed leaf, missing intermediate); PEM/DER, fingerprints, `write_to` |
//! | [`registry`] | [`registry::Registry`] | the real distribution 2.8 (`docker-registry serve`) with TLS, mTLS, htpasswd or token auth; access log parsed so tests count requests per path ("each blob fetched once") |
//! | [`token`] | [`token::TokenServer`] | an HTTPS distribution token server (GET + OAuth2 POST, refresh tokens) issuing JWTs that distribution verifies; records each request |
//! | [`front`] | [`front::Front`], [`front::Cdn`] | an HTTPS reverse proxy before a registry that redirects blobs to a CDN on another host and CA and injects faults (reset, flipped byte, 429, 5xx, stall, oversized manifest, hostile realm, ignored Range, extra bytes); the CDN records request headers |
//! | [`image`] | [`image::ImageBuilder`], [`image::ImageIndex`], [`image::RawPusher`] | OCI/Docker images built in code (hostile tars included), OCI layouts, pushes with skopeo (auth file 0600, never argv) or raw HTTP |
//!
//! Secrets (passwords, tokens, private keys) are wrapped in [`Secret`], whose `Debug`/`Display` redact.
//! The fixtures never use port 5000 or the system registry service and never send traffic off loopback.
//!
//! Tests that use HTTP clients of their own must install a rustls provider (`rustls::crypto::ring`); testkit's
//! own clients pass the ring provider explicitly and do not need it.

pub mod error;
pub mod front;
pub mod image;
mod net;
pub mod pki;
pub mod registry;
pub mod runner;
pub mod secret;
pub mod tls;
pub mod token;

pub use error::{Error, Result};
pub use secret::Secret;
