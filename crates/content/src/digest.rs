//! digest: how validated digests (from crate `oci`) map onto store paths.
//!
//! Paths are built only from `oci::Digest`, whose only constructors validate the algorithm
//! and the exact lowercase hex (INT-12), so `sha256:../../x` can never become a path.
//! This module must never build a path from a raw string.

pub use oci::digest::{Algorithm, Digest, DigestError, Digester};
pub use oci::manifest::Descriptor;

/// The algorithms the store keeps a `blobs/<alg>` directory for (all that `oci` accepts).
pub(crate) const ALGORITHMS: &[Algorithm] =
    &[Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512];

/// A hasher for the algorithm of `digest`.
pub(crate) fn digester_for(digest: &Digest) -> Digester {
    digest.algorithm().digester()
}

/// `(algorithm, hex)` path components of a validated digest.
pub(crate) fn components(digest: &Digest) -> (&'static str, &str) {
    (digest.algorithm().as_str(), digest.hex())
}

/// Parse `<alg>-<hex>` (ingest directory and lock file names) back into a digest.
pub(crate) fn from_file_stem(stem: &str) -> Option<Digest> {
    let (alg, hex) = stem.split_once('-')?;
    Digest::from_parts(Algorithm::from_name(alg)?, hex).ok()
}
