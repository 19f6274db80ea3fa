//! oci: the leaf vocabulary of images — digests, image references, media types, manifests, indexes, image
//! configs and platforms, with the validation rules of the upstream Go implementations (go-digest,
//! distribution/reference, containerd). It must never do IO (no files, no network, no clock): every other crate
//! builds on these values, so they have to be pure, deterministic and safe to feed untrusted bytes.

pub mod digest;
pub mod manifest;
pub mod media_type;
pub mod pattern;
pub mod platform;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest, ManifestError, parse_config,
    parse_manifest,
};
pub use platform::{NoMatchingManifest, Platform, PlatformError, PlatformMatcher};
pub use reference::{AnyReference, Reference, ReferenceError};
