//! refs: which blobs a stored manifest or index refers to, for gc and for the image
//! completeness check.
//!
//! Documents are parsed with `oci::manifest::parse_manifest` (the same validating parser the
//! pull used before the manifest was committed), passing the media type of the descriptor
//! that pointed at it. Only manifests and indexes are parsed; configs and layers never are.
//! This module must never treat unparsable content as "references nothing": callers stop
//! (gc deletes nothing) when a walked manifest fails to parse.

use oci::manifest::{Manifest, parse_manifest};
use oci::media_type;

use crate::digest::{Descriptor, Digest};

/// Largest manifest or index the store parses (the `oci` limit, 4 MiB like containerd).
pub const MAX_MANIFEST_SIZE: u64 = oci::manifest::MAX_MANIFEST_BYTES as u64;

/// True when content of `media_type` is a manifest or index whose references are walked.
pub fn is_manifest_type(media_type: &str) -> bool {
    let essence = media_type::essence(media_type);
    media_type::is_manifest(&essence) || media_type::is_index(&essence)
}

/// One reference out of a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Referenced digest.
    pub digest: Digest,
    /// Declared media type (may be empty in an index entry).
    pub media_type: String,
    /// True for index entries and `subject`: manifests that may legitimately be absent
    /// locally (platforms that were not pulled, an artifact's parent).
    pub optional: bool,
}

impl Ref {
    fn new(d: &Descriptor, optional: bool) -> Ref {
        Ref {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            optional,
        }
    }

    /// True when the referenced blob is itself a manifest or index to walk: its media type
    /// says so, or it is an index entry or subject without a media type.
    pub fn walkable(&self) -> bool {
        is_manifest_type(&self.media_type) || (self.optional && self.media_type.is_empty())
    }
}

/// References of the manifest or index `bytes`, reached through a descriptor of
/// `media_type` (empty when unknown).
pub fn references(media_type: &str, bytes: &[u8]) -> Result<Vec<Ref>, String> {
    let ct = (!media_type.is_empty()).then_some(media_type);
    let doc = parse_manifest(ct, bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match &doc {
        Manifest::Image(m) => {
            out.push(Ref::new(&m.config, false));
            out.extend(m.layers.iter().map(|l| Ref::new(l, false)));
            out.extend(m.subject.iter().map(|s| Ref::new(s, true)));
        }
        Manifest::Index(i) => {
            out.extend(i.manifests.iter().map(|m| Ref::new(m, true)));
            out.extend(i.subject.iter().map(|s| Ref::new(s, true)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";

    #[test]
    fn manifest_references_config_and_layers() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{A}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{B}","size":3}}]}}"#
        );
        let refs = references(MANIFEST, doc.as_bytes()).unwrap();
        let ds: Vec<String> = refs.iter().map(|r| r.digest.to_string()).collect();
        assert_eq!(ds, [A, B]);
        assert!(refs.iter().all(|r| !r.optional && !r.walkable()));
    }

    #[test]
    fn index_children_are_optional_and_walkable() {
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"{MANIFEST}","digest":"{A}","size":1}},
            {{"mediaType":"{MANIFEST}","digest":"{C}","size":1}}]}}"#
        );
        let refs = references(INDEX, doc.as_bytes()).unwrap();
        assert_eq!(refs.len(), 2);
        assert!(refs.iter().all(|r| r.optional && r.walkable()));
    }

    #[test]
    fn manifest_media_types_match_by_essence() {
        assert!(is_manifest_type("application/vnd.oci.image.index.v1+json"));
        assert!(is_manifest_type(
            "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"
        ));
        assert!(!is_manifest_type(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
    }

    #[test]
    fn invalid_json_digest_or_ambiguous_doc_is_an_error_not_an_empty_list() {
        assert!(references(MANIFEST, b"{not json").is_err());
        let bad_digest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"x","digest":"sha256:../../etc","size":1},"layers":[]}"#;
        assert!(references(MANIFEST, bad_digest.as_bytes()).is_err());
        let ambiguous = format!(
            r#"{{"schemaVersion":2,"manifests":[],"config":{{"mediaType":"x","digest":"{A}","size":1}},"layers":[]}}"#
        );
        assert!(references("", ambiguous.as_bytes()).is_err());
    }
}
