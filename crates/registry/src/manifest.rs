//! Manifest resolution and fetching: HEAD with GET fallback, digest checks, the size cap.
//!
//! Owns turning a tag or digest into verified manifest bytes: `HEAD` first (it does not count
//! against Docker Hub's pull limit), falling back to `GET` on 405 or when `Docker-Content-Digest` /
//! `Content-Length` are missing; a by-digest fetch is verified against the requested digest, a tag
//! fetch against `Docker-Content-Digest` when the registry sends one; bodies are read under the
//! manifest cap (enforced while reading, the error names cap and size); Docker schema1 is refused.
//! It must never return bytes that were not verified, and never trust a header digest over the
//! bytes received.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use oci::media_type::{self, DOCKER_MANIFEST_LIST, OCI_INDEX};
use oci::{Descriptor, Digest, ImageManifest, Manifest, ManifestError, Platform, PlatformMatcher};

use crate::error::{RegistryError, Role};
use crate::origin::{HostPort, Origin};
use crate::repository::{DOCKER_CONTENT_DIGEST, Need, Repository, Target, What, manifest_headers};

/// What a tag or digest points to, verified and parsed.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Descriptor of the document (media type, digest, size): the repo digest of the image.
    pub descriptor: Descriptor,
    /// The exact bytes (their digest is `descriptor.digest`).
    pub bytes: Bytes,
    /// The parsed document (manifest or index).
    pub manifest: Manifest,
}

impl Resolved {
    /// The media type.
    pub fn media_type(&self) -> &str {
        &self.descriptor.media_type
    }

    /// True for an index or manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self.manifest, Manifest::Index(_))
    }
}

/// The image manifest to run on one platform: the resolved top-level document plus, when that
/// is an index, the selected platform manifest.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The document the reference names (index or manifest).
    pub top: Resolved,
    /// Descriptor of the image manifest (equal to `top.descriptor` when there is no index).
    pub descriptor: Descriptor,
    /// The image manifest bytes.
    pub bytes: Bytes,
    /// The parsed image manifest.
    pub manifest: ImageManifest,
}

fn media_type_of(h: &HeaderMap) -> Option<String> {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type::essence)
        .filter(|v| !v.is_empty())
}

fn manifest_error(
    host: &HostPort,
    repository: &str,
    reference: &str,
    e: ManifestError,
) -> RegistryError {
    let unsupported = matches!(
        e,
        ManifestError::Schema1 { .. }
            | ManifestError::UnsupportedMediaType(_)
            | ManifestError::SchemaVersion(_)
    );
    let msg = format!("manifest {repository}:{reference} on {host}: {e}");
    if unsupported {
        RegistryError::Unsupported(msg)
    } else {
        RegistryError::InvalidManifest(msg)
    }
}

/// Parses verified manifest bytes, turning oci's verdicts (schema1, ambiguous documents,
/// contradicting media types) into registry errors naming host, repository and reference.
pub fn classify_manifest(
    content_type: Option<&str>,
    bytes: &[u8],
    host: &HostPort,
    repository: &str,
    reference: &str,
) -> Result<(String, Manifest), RegistryError> {
    let m = oci::parse_manifest(content_type, bytes)
        .map_err(|e| manifest_error(host, repository, reference, e))?;
    let mt = match (&m, m.media_type()) {
        (_, Some(mt)) => media_type::essence(mt),
        (Manifest::Index(_), None) => OCI_INDEX.to_string(),
        (Manifest::Image(_), None) => media_type::OCI_MANIFEST.to_string(),
    };
    Ok((mt, m))
}

impl Repository {
    /// The path under an endpoint's API root.
    fn manifest_path(&self, reference: &str) -> String {
        format!("/{}/manifests/{}", self.name(), reference)
    }

    fn manifest_what(&self, reference: &str) -> What {
        if reference.contains(':') {
            What(format!("manifest {reference}"))
        } else {
            What(format!("manifest for tag {reference:?}"))
        }
    }

    /// Resolves a reference's digest (when pinned) or tag (`latest` when it has neither) to the
    /// verified, parsed document it names.
    pub async fn resolve(&self, reference: &oci::Reference) -> Result<Resolved, RegistryError> {
        match (reference.digest(), reference.tag()) {
            (Some(d), _) => self.resolve_str(&d.to_string()).await,
            (None, Some(t)) => self.resolve_str(t).await,
            (None, None) => self.resolve_str(oci::reference::DEFAULT_TAG).await,
        }
    }

    /// Resolves a reference and, when it names an index, selects the manifest for `platform`
    /// (containerd's matcher with its fallbacks) and fetches it.
    pub async fn resolve_image(
        &self,
        reference: &oci::Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, RegistryError> {
        let top = self.resolve(reference).await?;
        let index = match &top.manifest {
            Manifest::Image(m) => {
                return Ok(ResolvedImage {
                    descriptor: top.descriptor.clone(),
                    bytes: top.bytes.clone(),
                    manifest: m.clone(),
                    top,
                });
            }
            Manifest::Index(i) => i,
        };
        let matcher = PlatformMatcher::new(platform.clone());
        let chosen = matcher.select_or_error(index).map_err(|e| {
            RegistryError::Unsupported(format!(
                "{}/{}@{}: {e}",
                self.host(),
                self.name(),
                top.descriptor.digest
            ))
        })?;
        let chosen = chosen.clone();
        let bytes = self.fetch_manifest(&chosen).await?;
        let shown = chosen.digest.to_string();
        let (_, parsed) = classify_manifest(
            Some(&chosen.media_type),
            &bytes,
            self.host(),
            self.name(),
            &shown,
        )?;
        let manifest = match parsed {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                return Err(RegistryError::InvalidManifest(format!(
                    "manifest {}@{shown} on {}: the index entry for {platform} is itself an index; nested indexes are not pulled",
                    self.name(),
                    self.host()
                )));
            }
        };
        Ok(ResolvedImage {
            top,
            descriptor: chosen,
            bytes,
            manifest,
        })
    }

    /// Resolves a tag or a digest (`sha256:...`) to verified manifest bytes. A tag is resolved
    /// only on endpoints with the resolve capability, a digest on any endpoint that may pull;
    /// endpoints are tried in order.
    pub async fn resolve_str(&self, reference: &str) -> Result<Resolved, RegistryError> {
        let need = if reference.parse::<Digest>().is_ok() {
            Need::Pull
        } else {
            Need::Resolve
        };
        for t in self.targets(need)? {
            match self.resolve_at(&t, reference).await {
                Ok(r) => return Ok(r),
                Err(e) => self.fail_over(&t, e)?,
            }
        }
        unreachable!("fail_over returns the last endpoint's error")
    }

    async fn resolve_at(&self, t: &Target, reference: &str) -> Result<Resolved, RegistryError> {
        let requested: Option<Digest> = reference.parse().ok();
        let what = self.manifest_what(reference);
        let f = self
            .request(
                t,
                Method::HEAD,
                &self.manifest_path(reference),
                manifest_headers(),
                &what,
            )
            .await?;
        let status = f.resp.status();
        let cap = self.inner.client.config().max_manifest_size;
        if status == StatusCode::OK {
            let h = f.resp.headers();
            let header_digest: Option<Digest> = h
                .get(DOCKER_CONTENT_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            // the header itself: on a HEAD, reqwest's `content_length()` is the (empty) body's
            // size hint, not what the server declared
            let len: Option<u64> = h
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            if let Some(l) = len
                && l > cap
            {
                return Err(RegistryError::TooLarge {
                    host: self.host().clone(),
                    what: format!("manifest {}:{reference}", self.name()),
                    cap,
                    size: format!("{l} bytes"),
                });
            }
            if let (Some(d), Some(_)) = (header_digest, len) {
                // by digest: always the requested one; by tag: fetch exactly what HEAD named
                let target = requested.clone().unwrap_or(d);
                return self
                    .get_manifest(t, &target.to_string(), Some(&target), reference, None)
                    .await;
            }
        } else if !matches!(status.as_u16(), 405 | 403 | 400 | 501) {
            return Err(self.status_error(f, "HEAD", &what).await);
        }
        // HEAD unsupported or incomplete (or 403: GET shows the error body)
        self.get_manifest(t, reference, requested.as_ref(), reference, None)
            .await
    }

    /// Fetches the manifest or index a descriptor points to, verified against its digest and
    /// size. The descriptor's media type must agree with the document.
    pub async fn fetch_manifest(&self, desc: &Descriptor) -> Result<Bytes, RegistryError> {
        let cap = self.inner.client.config().max_manifest_size;
        if desc.size > cap {
            return Err(RegistryError::TooLarge {
                host: self.host().clone(),
                what: format!("manifest {}@{}", self.name(), desc.digest),
                cap,
                size: format!("{} bytes (descriptor size)", desc.size),
            });
        }
        let r = desc.digest.to_string();
        let mut fetched = None;
        for t in self.targets(Need::Pull)? {
            match self
                .get_manifest(&t, &r, Some(&desc.digest), &r, Some(&desc.media_type))
                .await
            {
                Ok(got) => {
                    fetched = Some(got);
                    break;
                }
                Err(e) => self.fail_over(&t, e)?,
            }
        }
        let got = fetched.expect("fail_over returns the last endpoint's error");
        if got.bytes.len() as u64 != desc.size {
            return Err(RegistryError::DigestMismatch {
                what: format!(
                    "manifest {}@{} from {}",
                    self.name(),
                    desc.digest,
                    self.host()
                ),
                expected: format!("{} bytes", desc.size),
                actual: format!("{} bytes", got.bytes.len()),
            });
        }
        Ok(got.bytes)
    }

    async fn get_manifest(
        &self,
        t: &Target,
        path_ref: &str,
        expected: Option<&Digest>,
        shown_ref: &str,
        descriptor_media_type: Option<&str>,
    ) -> Result<Resolved, RegistryError> {
        let what = self.manifest_what(shown_ref);
        let f = self
            .request(
                t,
                Method::GET,
                &self.manifest_path(path_ref),
                manifest_headers(),
                &what,
            )
            .await?;
        if !f.resp.status().is_success() {
            return Err(self.status_error(f, "GET", &what).await);
        }
        let host = Origin::of(&f.url)
            .map(|o| o.host)
            .unwrap_or_else(|| self.host().clone());
        let content_type = media_type_of(f.resp.headers());
        let header_digest = f
            .resp
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string());
        let cap = self.inner.client.config().max_manifest_size;
        let bytes = self
            .inner
            .client
            .read_capped(
                f.resp,
                cap,
                &host,
                f.role,
                &format!("manifest {}:{shown_ref}", self.name()),
            )
            .await?;
        let digest = match expected {
            Some(d) => {
                let actual = d.algorithm().digest(&bytes);
                if &actual != d {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("manifest {}@{d} from {host}", self.name()),
                        expected: d.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => match header_digest.filter(|h| !h.is_empty()) {
                Some(h) => {
                    let claimed: Digest = h.parse().map_err(|e| RegistryError::Protocol {
                        host: host.clone(),
                        role: Role::Registry,
                        reason: format!("invalid Docker-Content-Digest {h:?}: {e}"),
                    })?;
                    let actual = claimed.algorithm().digest(&bytes);
                    if actual != claimed {
                        return Err(RegistryError::DigestMismatch {
                            what: format!(
                                "manifest {}:{shown_ref} from {host}: registry returned Docker-Content-Digest {claimed} but the manifest hashes to {actual}",
                                self.name()
                            ),
                            expected: claimed.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    actual
                }
                None => Digest::sha256(&bytes),
            },
        };
        // the descriptor that pointed here is authoritative over a generic Content-Type, and a
        // specific Content-Type must agree with it
        if let (Some(dm), Some(ct)) = (descriptor_media_type, content_type.as_deref())
            && !matches!(
                ct,
                "application/json" | "application/octet-stream" | "text/plain"
            )
            && media_type::essence(dm) != ct
        {
            return Err(RegistryError::InvalidManifest(format!(
                "manifest {}@{digest} on {host}: the registry sent Content-Type {ct:?} but the descriptor says {dm:?}",
                self.name()
            )));
        }
        let ct = descriptor_media_type.or(content_type.as_deref());
        let (media_type, manifest) = classify_manifest(ct, &bytes, &host, self.name(), shown_ref)?;
        if media_type == DOCKER_MANIFEST_LIST || media_type == OCI_INDEX {
            tracing::debug!(digest = %digest, "resolved an index");
        }
        Ok(Resolved {
            descriptor: Descriptor::new(&media_type, digest, bytes.len() as u64),
            bytes,
            manifest,
        })
    }

    /// Streams the blob a descriptor names from `offset` (0 for all of it). Registry only:
    /// descriptor `urls` (foreign layers) are never contacted, so no request can carry
    /// credentials to them (CVE-2020-15157); the digest and size still bind the content.
    pub async fn fetch_blob(
        &self,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<crate::blob::BlobStream, RegistryError> {
        self.fetch_blob_digest(&desc.digest, desc.size, Some(&desc.media_type), offset)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> HostPort {
        HostPort::new("reg", 5000)
    }

    const CONFIG: &str = r#"{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2}"#;

    #[test]
    fn schema1_is_refused_as_unsupported_naming_the_image() {
        let e = classify_manifest(
            Some(media_type::DOCKER_SCHEMA1_SIGNED),
            b"{}",
            &h(),
            "a",
            "1",
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        let s = e.to_string();
        assert!(
            s.contains("schema1") && s.contains("a:1 on reg:5000"),
            "{s}"
        );
        let e = classify_manifest(
            Some("text/plain"),
            br#"{"schemaVersion":1,"fsLayers":[]}"#,
            &h(),
            "a",
            "1",
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported, "{e}");
    }

    #[test]
    fn ambiguous_and_contradicting_documents_are_refused() {
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(classify_manifest(Some(OCI_INDEX), both, &h(), "a", "1").is_err());
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let e = classify_manifest(Some(media_type::OCI_MANIFEST), m, &h(), "a", "1").unwrap_err();
        assert!(e.to_string().contains("contradicts"), "{e}");
    }

    #[test]
    fn generic_content_type_falls_back_to_document() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{CONFIG},"layers":[]}}"#
        );
        let (mt, parsed) =
            classify_manifest(Some("application/json"), m.as_bytes(), &h(), "a", "1").unwrap();
        assert_eq!(mt, media_type::DOCKER_MANIFEST);
        assert!(matches!(parsed, Manifest::Image(_)));
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(
            classify_manifest(None, idx, &h(), "a", "1").unwrap().0,
            OCI_INDEX
        );
    }

    #[test]
    fn unknown_media_type_and_bad_json_are_errors() {
        assert!(classify_manifest(Some("application/vnd.foo"), b"{}", &h(), "a", "1").is_err());
        let e = classify_manifest(Some(media_type::OCI_MANIFEST), b"<html>", &h(), "a", "1")
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Protocol);
        assert!(e.to_string().contains("a:1 on reg:5000"), "{e}");
    }
}
