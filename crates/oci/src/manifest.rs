//! Manifests, indexes (manifest lists), descriptors and image configs, and [`parse_manifest`], which turns the
//! exact bytes a registry served into one typed document. It owns structural validation: schemaVersion 2, known
//! media types, valid digests, non-negative sizes, no duplicate keys, and rejection of ambiguous documents
//! (CVE-2021-41190: both `manifests` and `config`/`layers`, or a `mediaType` that contradicts Content-Type). It
//! must never fetch or verify content (callers check the digest of the bytes before parsing them), and never
//! re-serialise and re-parse: the verified bytes are parsed once.
//!
//! The types are hand-written serde structs rather than `oci-spec`'s: the checks above need to see which keys
//! were present and to fail with field paths, `oci-spec`'s builders default or accept what has to be rejected
//! (a missing `mediaType` on descriptors, negative sizes via `i64`, duplicate map keys), and Docker schema2
//! documents use the same shapes with their own media types.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;
use crate::media_type;
use crate::platform::Platform;

/// Largest manifest or index accepted (containerd and the security cases use 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest image config accepted.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Why a manifest, index or config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("rejecting {size} byte document: larger than the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error(
        "schema1 manifests are deprecated and not supported: the registry served {media_type}; re-push the image \
         with a current client (docker push, buildah push, crane copy) so that it has an OCI or Docker schema2 \
         manifest"
    )]
    Schema1 { media_type: String },
    #[error(
        "rejecting ambiguous manifest: the document has both \"manifests\" and \"config\"/\"layers\" fields \
         (CVE-2021-41190); the image was built or modified by a broken or malicious tool, rebuild and re-push it"
    )]
    Ambiguous,
    #[error(
        "rejecting ambiguous manifest: its mediaType field {field:?} contradicts the Content-Type {content_type:?} \
         the registry sent (CVE-2021-41190); fix the registry or re-push the image"
    )]
    MediaTypeMismatch { field: String, content_type: String },
    #[error("media-type: expected {expected} but found {found} ({media_type})")]
    KindMismatch {
        expected: &'static str,
        found: &'static str,
        media_type: String,
    },
    #[error(
        "unsupported manifest media type {0:?}: expected an OCI image manifest or index, or a Docker schema2 \
         manifest or manifest list"
    )]
    UnsupportedMediaType(String),
    #[error(
        "cannot tell whether the document is a manifest or an index: it has no mediaType, the Content-Type is \
         generic and it has neither \"config\" nor \"manifests\""
    )]
    UnknownKind,
    #[error("unsupported schemaVersion {0}: expected 2")]
    SchemaVersion(i64),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ManifestError {
    fn json(e: serde_json::Error) -> ManifestError {
        let message = e.to_string();
        // serde_json appends " at line L column C"; keep the message once, with the position in front.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        ManifestError::InvalidJson {
            line: e.line(),
            column: e.column(),
            message,
        }
    }

    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A string map that rejects duplicate keys (serde_json's map would silently keep the last one).
fn unique_map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, V>, D::Error> {
    struct V0<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for V0<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(de::Error::custom(format!("duplicate key {k:?}")));
                }
                let v = map.next_value()?;
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V0(std::marker::PhantomData))
}

fn non_negative_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = i64::deserialize(d)?;
    u64::try_from(n).map_err(|_| de::Error::custom(format!("descriptor size {n} must be >= 0")))
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    #[serde(deserialize_with = "non_negative_size")]
    pub size: u64,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    fn validate(&self, field: &str) -> Result<(), ManifestError> {
        if !is_valid_media_type(&self.media_type) {
            return Err(ManifestError::invalid(
                format!("{field}.mediaType"),
                format!(
                    "{:?} is not a valid media type (type/subtype)",
                    self.media_type
                ),
            ));
        }
        Ok(())
    }
}

/// RFC 6838 `type/subtype` with restricted-name characters (plus `+` suffixes and `.` trees).
fn is_valid_media_type(s: &str) -> bool {
    let name_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(s.split_once('/'), Some((t, st)) if name_ok(t) && name_ok(st))
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<Descriptor>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<Descriptor>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest document.
// One value per pull: the size difference does not matter, and matching on unboxed variants keeps callers simple.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// The media type the document was accepted as.
    pub fn media_type(&self) -> Option<&str> {
        match self {
            Manifest::Image(m) => m.media_type.as_deref(),
            Manifest::Index(i) => i.media_type.as_deref(),
        }
    }
}

/// The fields that decide what kind of document this is. Derived `Deserialize` rejects duplicate keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    config: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    manifests: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

/// Content types that say nothing about the document (registries send them for blobs served as manifests).
fn is_generic_content_type(ct: &str) -> bool {
    matches!(
        ct,
        "" | "application/json" | "application/octet-stream" | "text/plain" | "binary/octet-stream"
    )
}

/// Parses and validates a manifest or index. `content_type` is the HTTP `Content-Type` (or the media type of
/// the descriptor that pointed here); `bytes` must be the exact, already digest-verified content.
pub fn parse_manifest(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(ManifestError::json)?;
    let ct = content_type.map(media_type::essence).unwrap_or_default();
    let field = probe.media_type.as_deref().map(media_type::essence);

    let schema_version = match &probe.schema_version {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(_) => {
            return Err(ManifestError::invalid(
                "schemaVersion",
                "must be an integer",
            ));
        }
        None => None,
    };
    for t in [Some(ct.as_str()), field.as_deref()].into_iter().flatten() {
        if media_type::is_schema1(t) {
            return Err(ManifestError::Schema1 {
                media_type: t.to_owned(),
            });
        }
    }
    if schema_version == Some(1) || probe.fs_layers.is_some() {
        return Err(ManifestError::Schema1 {
            media_type: field.clone().unwrap_or_else(|| "schemaVersion 1".into()),
        });
    }
    match schema_version {
        Some(2) => {}
        Some(v) => return Err(ManifestError::SchemaVersion(v)),
        None => {
            return Err(ManifestError::invalid(
                "schemaVersion",
                "missing (expected 2)",
            ));
        }
    }

    let has_index_fields = probe.manifests.is_some();
    let has_image_fields = probe.config.is_some() || probe.layers.is_some();
    if has_index_fields && has_image_fields {
        return Err(ManifestError::Ambiguous);
    }
    let specific_ct = (!is_generic_content_type(&ct)).then_some(ct.as_str());
    if let (Some(f), Some(c)) = (field.as_deref(), specific_ct)
        && f != c
    {
        return Err(ManifestError::MediaTypeMismatch {
            field: f.to_owned(),
            content_type: c.to_owned(),
        });
    }
    let declared = field.as_deref().or(specific_ct);
    let is_index = match declared {
        Some(t) if media_type::is_index(t) => {
            if has_image_fields {
                return Err(ManifestError::KindMismatch {
                    expected: "index",
                    found: "manifest",
                    media_type: t.into(),
                });
            }
            true
        }
        Some(t) if media_type::is_manifest(t) => {
            if has_index_fields {
                return Err(ManifestError::KindMismatch {
                    expected: "manifest",
                    found: "index",
                    media_type: t.into(),
                });
            }
            false
        }
        Some(t) => return Err(ManifestError::UnsupportedMediaType(t.to_owned())),
        None if has_index_fields => true,
        None if probe.config.is_some() => false,
        None => return Err(ManifestError::UnknownKind),
    };

    if is_index {
        let mut index: ImageIndex = serde_json::from_slice(bytes).map_err(ManifestError::json)?;
        for (i, d) in index.manifests.iter().enumerate() {
            d.validate(&format!("manifests[{i}]"))?;
        }
        if let Some(s) = &index.subject {
            s.validate("subject")?;
        }
        if index.media_type.is_none() {
            index.media_type = declared.map(str::to_owned);
        }
        Ok(Manifest::Index(index))
    } else {
        let mut m: ImageManifest = serde_json::from_slice(bytes).map_err(ManifestError::json)?;
        m.config.validate("config")?;
        for (i, d) in m.layers.iter().enumerate() {
            d.validate(&format!("layers[{i}]"))?;
        }
        if let Some(s) = &m.subject {
            s.validate("subject")?;
        }
        if m.media_type.is_none() {
            m.media_type = declared.map(str::to_owned);
        }
        Ok(Manifest::Image(m))
    }
}

/// The runtime defaults of an image (`config` of the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub exposed_ports: BTreeMap<String, IgnoredEmpty>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub volumes: BTreeMap<String, IgnoredEmpty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The `{}` value of `ExposedPorts` and `Volumes` entries (whatever it holds is ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IgnoredEmpty {}

impl<'de> Deserialize<'de> for IgnoredEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IgnoredEmpty, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(IgnoredEmpty {})
    }
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<Digest>,
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The image config blob (OCI `application/vnd.oci.image.config.v1+json`, same shape for Docker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub history: Vec<History>,
}

impl ImageConfig {
    /// The platform this config was built for.
    pub fn platform(&self) -> Platform {
        let mut p = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        p.os_version = self.os_version.clone();
        p.os_features = self.os_features.clone();
        p
    }
}

/// Parses and validates an image config: `rootfs.type` must be `layers`, diff ids valid digests.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            max: MAX_CONFIG_BYTES,
        });
    }
    let c: ImageConfig = serde_json::from_slice(bytes).map_err(ManifestError::json)?;
    if c.rootfs.kind != "layers" {
        return Err(ManifestError::invalid(
            "rootfs.type",
            format!("{:?} is not supported (expected \"layers\")", c.rootfs.kind),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::*;
    use serde_json::json;

    fn d(mt: &str, n: u8) -> serde_json::Value {
        json!({"mediaType": mt, "digest": Digest::sha256(&[n]).to_string(), "size": 10})
    }

    fn manifest_json(mt: Option<&str>) -> serde_json::Value {
        let mut v = json!({"schemaVersion": 2, "config": d(OCI_CONFIG, 1), "layers": [d(OCI_LAYER_TAR_GZIP, 2)]});
        if let Some(mt) = mt {
            v["mediaType"] = json!(mt);
        }
        v
    }

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn oci_manifest_parses_with_matching_content_type() {
        let m = parse_manifest(
            Some(OCI_MANIFEST),
            &bytes(&manifest_json(Some(OCI_MANIFEST))),
        )
        .unwrap();
        let Manifest::Image(m) = m else {
            panic!("not an image manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.config.media_type, OCI_CONFIG);
    }

    #[test]
    fn missing_media_type_is_taken_from_content_type_or_structure() {
        let b = bytes(&manifest_json(None));
        assert_eq!(
            parse_manifest(Some(DOCKER_MANIFEST), &b)
                .unwrap()
                .media_type(),
            Some(DOCKER_MANIFEST)
        );
        assert!(matches!(
            parse_manifest(Some("application/json"), &b).unwrap(),
            Manifest::Image(_)
        ));
    }

    #[test]
    fn index_with_layers_is_rejected_as_ambiguous() {
        let v = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d(OCI_MANIFEST, 1)],
                       "layers": [d(OCI_LAYER_TAR_GZIP, 2)]});
        assert_eq!(
            parse_manifest(Some(OCI_INDEX), &bytes(&v)),
            Err(ManifestError::Ambiguous)
        );
    }

    #[test]
    fn media_type_field_contradicting_content_type_is_rejected() {
        let b = bytes(&manifest_json(Some(OCI_MANIFEST)));
        let e = parse_manifest(Some(OCI_INDEX), &b).unwrap_err();
        assert!(matches!(e, ManifestError::MediaTypeMismatch { .. }), "{e}");
    }

    #[test]
    fn index_content_type_on_manifest_document_is_a_kind_mismatch() {
        let e = parse_manifest(Some(OCI_INDEX), &bytes(&manifest_json(None))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("media-type: expected index but found manifest ({OCI_INDEX})")
        );
    }

    #[test]
    fn schema1_is_rejected_with_a_fix() {
        let v = json!({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []});
        for ct in [Some(DOCKER_SCHEMA1_SIGNED), Some("application/json"), None] {
            let e = parse_manifest(ct, &bytes(&v)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("schema1 manifests are deprecated and not supported"),
                "{e}"
            );
            assert!(e.to_string().contains("re-push the image"), "{e}");
        }
    }

    #[test]
    fn negative_size_and_bad_digest_are_rejected() {
        let mut v = manifest_json(Some(OCI_MANIFEST));
        v["layers"][0]["size"] = json!(-1);
        let e = parse_manifest(None, &bytes(&v)).unwrap_err().to_string();
        assert!(e.contains("descriptor size -1 must be >= 0"), "{e}");
        let mut v = manifest_json(Some(OCI_MANIFEST));
        v["config"]["digest"] = json!("sha256:abc");
        let e = parse_manifest(None, &bytes(&v)).unwrap_err().to_string();
        assert!(e.contains("invalid checksum digest length"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let dup_field = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let e = parse_manifest(None, dup_field).unwrap_err().to_string();
        assert!(e.contains("duplicate field `mediaType`"), "{e}");
        let mut v = manifest_json(Some(OCI_MANIFEST));
        v["annotations"] = json!({"a": "1"});
        let text = String::from_utf8(bytes(&v))
            .unwrap()
            .replace(r#""a":"1""#, r#""a":"1","a":"2""#);
        let e = parse_manifest(None, text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key \"a\""), "{e}");
    }

    #[test]
    fn invalid_json_reports_line_and_column() {
        let e = parse_manifest(None, b"{\n  \"schemaVersion\": 2,\n  x").unwrap_err();
        let ManifestError::InvalidJson { line, column, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((*line, *column), (3, 3));
        assert!(
            e.to_string()
                .starts_with("invalid JSON at line 3 column 3: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_media_type_and_schema_version_are_rejected() {
        let v = manifest_json(Some("application/vnd.example+json"));
        assert!(matches!(
            parse_manifest(None, &bytes(&v)),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let mut v = manifest_json(Some(OCI_MANIFEST));
        v["schemaVersion"] = json!(3);
        assert_eq!(
            parse_manifest(None, &bytes(&v)),
            Err(ManifestError::SchemaVersion(3))
        );
    }

    #[test]
    fn oversized_manifest_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            parse_manifest(None, &big),
            Err(ManifestError::TooLarge { .. })
        ));
    }

    #[test]
    fn docker_manifest_list_parses_platforms() {
        let mut entry = d(DOCKER_MANIFEST, 1);
        entry["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
        let v =
            json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": [entry]});
        let Manifest::Index(i) = parse_manifest(Some(DOCKER_MANIFEST_LIST), &bytes(&v)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            i.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn image_config_parses_runtime_fields_and_checks_rootfs() {
        let diff = Digest::sha256(b"layer");
        let v = json!({"architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": null, "Env": ["A=1"], "WorkingDir": "/w", "User": "1000",
                       "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
            "history": [{"created_by": "x", "empty_layer": true}]});
        let c = parse_config(&bytes(&v)).unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.entrypoint.as_deref(), Some(&["/bin/sh".to_owned()][..]));
        assert_eq!(cc.cmd, None);
        assert_eq!(cc.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.rootfs.diff_ids, vec![diff]);
        assert!(c.history[0].empty_layer);
        assert_eq!(c.platform().to_string(), "linux/amd64");
        let mut bad = v.clone();
        bad["rootfs"]["type"] = json!("zfs");
        assert!(
            parse_config(&bytes(&bad))
                .unwrap_err()
                .to_string()
                .starts_with("rootfs.type: ")
        );
    }
}
