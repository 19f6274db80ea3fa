//! Platforms (`os/arch[/variant]`) and the choice of one manifest from an index, following containerd's
//! `platforms` package: `normalizeArch`/`normalizeOS`, and the `Only()` fallback order (arm64 also runs arm
//! v8..v5; amd64/vN also runs lower levels and 386). It owns platform parsing, comparison and selection; it must
//! never fetch anything: a descriptor without a `platform` field is not considered (the caller may resolve it from
//! the config if it wants to).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{Descriptor, ImageIndex};

/// The `platform` object of an index entry (and of `berth` options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// A platform specifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    Invalid(String),
    #[error("invalid platform {spec:?}: unknown operating system or architecture {part:?}")]
    Unknown { spec: String, part: String },
}

/// No index entry matches the wanted platform (the message Docker users know, plus what was there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no matching manifest for {wanted} in the manifest list entries (available: {})", available_text(.available))]
pub struct NoMatchingManifest {
    pub wanted: String,
    pub available: Vec<String>,
}

fn available_text(available: &[String]) -> String {
    if available.is_empty() {
        "none: no entry declares a platform".to_owned()
    } else {
        available.join(", ")
    }
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// containerd `normalizeOS`.
pub fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

/// containerd `normalizeArch`: canonical architecture and variant.
pub fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".into(),
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

fn is_known_arch(arch: &str) -> bool {
    let (a, _) = normalize_arch(arch, "");
    KNOWN_ARCH.contains(&a.as_str())
}

impl Platform {
    /// A platform from its parts (no normalisation).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
            ..Platform::default()
        }
    }

    /// Parses `os`, `arch`, `os/arch` or `os/arch/variant` (containerd `platforms.Parse`); a lone OS takes this
    /// machine's architecture, a lone architecture this machine's OS. Case is folded; the spelling is kept
    /// (`linux/arm64/v8` displays as written, matching normalises).
    pub fn parse(spec: &str) -> Result<Platform, PlatformError> {
        let lower = spec.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if parts.len() > 3 || !parts.iter().all(|p| valid_part(p)) {
            return Err(PlatformError::Invalid(spec.to_owned()));
        }
        let unknown = |part: &str| PlatformError::Unknown {
            spec: spec.to_owned(),
            part: part.to_owned(),
        };
        match parts.as_slice() {
            [single] => {
                let host = Platform::host();
                if KNOWN_OS.contains(&normalize_os(single).as_str()) {
                    Ok(Platform {
                        os: single.to_string(),
                        ..host
                    })
                } else if is_known_arch(single) {
                    Ok(Platform::new(&host.os, single, None))
                } else {
                    Err(unknown(single))
                }
            }
            [os, arch] | [os, arch, _] => {
                if !KNOWN_OS.contains(&normalize_os(os).as_str()) {
                    return Err(unknown(os));
                }
                if !is_known_arch(arch) {
                    return Err(unknown(arch));
                }
                Ok(Platform::new(os, arch, parts.get(2).copied()))
            }
            _ => Err(PlatformError::Invalid(spec.to_owned())),
        }
    }

    /// This machine's platform, in the spelling Docker prints (`linux/arm64/v8`, `linux/amd64`, `linux/arm/v7`).
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            "mips64" => ("mips64", None),
            other => (other, None),
        };
        Platform::new(os, arch, variant)
    }

    /// The containerd-normalised form (`aarch64` -> `arm64`, arm64 `v8` -> no variant, `armhf` -> arm/v7, ...).
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) =
            normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform {
            architecture,
            os: normalize_os(&self.os),
            variant: (!variant.is_empty()).then_some(variant),
            ..self.clone()
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = if self.os.is_empty() {
            "unknown"
        } else {
            &self.os
        };
        let arch = if self.architecture.is_empty() {
            "unknown"
        } else {
            &self.architecture
        };
        write!(f, "{os}/{arch}")?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

/// Parses `vMAJOR[.MINOR]` (arm64 variants).
fn arm64_version(variant: &str) -> Option<(u32, u32)> {
    let v = variant.strip_prefix('v')?;
    let (major, minor) = match v.split_once('.') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => (v.parse().ok()?, 0),
    };
    Some((major, minor))
}

fn arm64_variant(major: u32, minor: u32) -> Option<String> {
    // Normalised spelling: v8.0 is "", v9.0 is "v9".
    match (major, minor) {
        (8, 0) => None,
        (m, 0) => Some(format!("v{m}")),
        (m, n) => Some(format!("v{m}.{n}")),
    }
}

/// Chooses manifests for a wanted platform: containerd `Only()` (with fallbacks) or `OnlyStrict()`.
#[derive(Debug, Clone)]
pub struct PlatformMatcher {
    wanted: Platform,
    /// Acceptable normalised platforms, best first.
    vector: Vec<Platform>,
}

impl PlatformMatcher {
    /// containerd `Only(p)`: `p`, then the platforms it can also run, in preference order.
    pub fn new(wanted: Platform) -> PlatformMatcher {
        let n = wanted.normalized();
        let mut vector = vec![n.clone()];
        let with = |arch: &str, variant: Option<String>| Platform {
            architecture: arch.to_owned(),
            variant,
            ..n.clone()
        };
        let arm_from = |vector: &mut Vec<Platform>, top: u32| {
            for v in (5..=top).rev() {
                vector.push(with("arm", Some(format!("v{v}"))));
            }
        };
        match n.architecture.as_str() {
            "amd64" => {
                let level = n
                    .variant
                    .as_deref()
                    .and_then(|v| v.strip_prefix('v')?.parse::<u32>().ok())
                    .unwrap_or(1);
                for l in (1..level).rev() {
                    vector.push(with("amd64", (l > 1).then(|| format!("v{l}"))));
                }
                vector.push(with("386", None));
            }
            "arm" => {
                if let Some(top) = n
                    .variant
                    .as_deref()
                    .and_then(|v| v.strip_prefix('v')?.parse::<u32>().ok())
                {
                    for v in (5..top).rev() {
                        vector.push(with("arm", Some(format!("v{v}"))));
                    }
                }
            }
            "arm64" => {
                let (major, minor) = n
                    .variant
                    .as_deref()
                    .and_then(arm64_version)
                    .unwrap_or((8, 0));
                if major >= 9 {
                    for m in (0..minor).rev() {
                        vector.push(with("arm64", arm64_variant(major, m)));
                    }
                    // v9.x implies v8.(x+5).
                    for m in (0..=minor + 5).rev() {
                        vector.push(with("arm64", arm64_variant(8, m)));
                    }
                } else if major == 8 {
                    for m in (0..minor).rev() {
                        vector.push(with("arm64", arm64_variant(8, m)));
                    }
                }
                arm_from(&mut vector, 8);
            }
            _ => {}
        }
        PlatformMatcher { wanted, vector }
    }

    /// containerd `OnlyStrict(p)`: the platform itself, no fallbacks.
    pub fn strict(wanted: Platform) -> PlatformMatcher {
        let vector = vec![wanted.normalized()];
        PlatformMatcher { wanted, vector }
    }

    /// The platform asked for.
    pub fn wanted(&self) -> &Platform {
        &self.wanted
    }

    /// Position of `p` in the preference order (0 is best), or `None` when it cannot run here. OS, architecture
    /// and variant must be equal after normalisation, and `p`'s `os.features` must be a subset of the wanted ones.
    pub fn rank(&self, p: &Platform) -> Option<usize> {
        let p = p.normalized();
        self.vector.iter().position(|c| {
            c.os == p.os
                && c.architecture == p.architecture
                && c.variant == p.variant
                && p.os_features
                    .iter()
                    .all(|f| self.wanted.os_features.contains(f))
        })
    }

    /// Whether `p` can run here.
    pub fn matches(&self, p: &Platform) -> bool {
        self.rank(p).is_some()
    }

    /// The best entry of `index` (lowest rank; the first such entry in index order).
    pub fn select<'a>(&self, index: &'a ImageIndex) -> Option<&'a Descriptor> {
        let mut best: Option<(usize, &Descriptor)> = None;
        for d in &index.manifests {
            let Some(p) = &d.platform else { continue };
            if let Some(r) = self.rank(p)
                && best.is_none_or(|(b, _)| r < b)
            {
                best = Some((r, d));
            }
        }
        best.map(|(_, d)| d)
    }

    /// [`PlatformMatcher::select`], or the error listing what the index offers.
    pub fn select_or_error<'a>(
        &self,
        index: &'a ImageIndex,
    ) -> Result<&'a Descriptor, NoMatchingManifest> {
        self.select(index).ok_or_else(|| NoMatchingManifest {
            wanted: self.wanted.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::media_type;

    fn entry(p: &str, n: u8) -> Descriptor {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256(&[n]), 100);
        let parts: Vec<&str> = p.split('/').collect();
        d.platform = Some(Platform::new(parts[0], parts[1], parts.get(2).copied()));
        d
    }

    fn index(entries: &[&str]) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: entries
                .iter()
                .enumerate()
                .map(|(i, p)| entry(p, i as u8))
                .collect(),
            ..ImageIndex::default()
        }
    }

    /// containerd `database_test.go`-style normalisation vectors.
    #[test]
    fn normalize_arch_follows_containerd() {
        let rows = [
            (("aarch64", ""), ("arm64", "")),
            (("arm64", "v8"), ("arm64", "")),
            (("arm64", "8"), ("arm64", "")),
            (("arm64", "v8.0"), ("arm64", "")),
            (("arm64", "9.0"), ("arm64", "v9")),
            (("arm64", "v8.2"), ("arm64", "v8.2")),
            (("armhf", ""), ("arm", "v7")),
            (("armel", ""), ("arm", "v6")),
            (("arm", ""), ("arm", "v7")),
            (("arm", "7"), ("arm", "v7")),
            (("arm", "5"), ("arm", "v5")),
            (("x86_64", "v1"), ("amd64", "")),
            (("x86-64", "v3"), ("amd64", "v3")),
            (("i386", "whatever"), ("386", "")),
            (("ppc64le", ""), ("ppc64le", "")),
        ];
        for ((a, v), (wa, wv)) in rows {
            assert_eq!(
                normalize_arch(a, v),
                (wa.to_owned(), wv.to_owned()),
                "{a}/{v}"
            );
        }
    }

    #[test]
    fn parse_accepts_full_and_short_specifiers() {
        let p = Platform::parse("Linux/ARM64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(p.normalized().to_string(), "linux/arm64");
        assert_eq!(Platform::parse("linux").unwrap().os, "linux");
        assert_eq!(Platform::parse("arm64").unwrap().architecture, "arm64");
        assert!(matches!(
            Platform::parse("plan10/amd64"),
            Err(PlatformError::Unknown { .. })
        ));
        assert!(matches!(
            Platform::parse("linux//v7"),
            Err(PlatformError::Invalid(_))
        ));
        assert!(matches!(
            Platform::parse("a/b/c/d"),
            Err(PlatformError::Invalid(_))
        ));
    }

    #[test]
    fn arm64_prefers_exact_then_falls_back_to_arm_v8_to_v5() {
        let m = PlatformMatcher::new(Platform::parse("linux/arm64/v8").unwrap());
        let idx = index(&["linux/amd64", "linux/arm/v5", "linux/arm/v7", "linux/arm64"]);
        assert_eq!(
            m.select(&idx)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .to_string(),
            "linux/arm64"
        );
        let idx = index(&["linux/amd64", "linux/arm/v5", "linux/arm/v7"]);
        assert_eq!(
            m.select(&idx)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .to_string(),
            "linux/arm/v7"
        );
        assert!(
            PlatformMatcher::strict(Platform::parse("linux/arm64").unwrap())
                .select(&idx)
                .is_none()
        );
    }

    #[test]
    fn amd64_levels_fall_back_to_lower_levels_then_386() {
        let m = PlatformMatcher::new(Platform::parse("linux/amd64/v3").unwrap());
        let idx = index(&["linux/386", "linux/amd64/v2", "linux/amd64/v4"]);
        assert_eq!(
            m.select(&idx)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .to_string(),
            "linux/amd64/v2"
        );
        let idx = index(&["linux/386", "linux/amd64/v4"]);
        assert_eq!(
            m.select(&idx)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .to_string(),
            "linux/386"
        );
        let plain = PlatformMatcher::new(Platform::parse("linux/amd64").unwrap());
        assert!(plain.matches(&Platform::new("linux", "x86_64", Some("v1"))));
        assert!(!plain.matches(&Platform::new("linux", "amd64", Some("v2"))));
    }

    #[test]
    fn first_entry_wins_among_equal_ranks() {
        let m = PlatformMatcher::new(Platform::parse("linux/amd64").unwrap());
        let idx = index(&["linux/arm64", "linux/amd64", "linux/x86_64"]);
        assert_eq!(m.select(&idx).unwrap().digest, idx.manifests[1].digest);
    }

    #[test]
    fn os_features_must_be_a_subset() {
        let m = PlatformMatcher::new(Platform::parse("windows/amd64").unwrap());
        let mut p = Platform::new("windows", "amd64", None);
        p.os_features = vec!["win32k".into()];
        assert!(!m.matches(&p));
    }

    #[test]
    fn no_match_error_lists_available_platforms() {
        let m = PlatformMatcher::new(Platform::parse("linux/arm64/v8").unwrap());
        let idx = index(&["linux/amd64", "linux/s390x"]);
        let e = m.select_or_error(&idx).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/arm64/v8 in the manifest list entries (available: linux/amd64, linux/s390x)"
        );
    }

    #[test]
    fn host_platform_is_known_and_matches_itself() {
        let h = Platform::host();
        assert!(PlatformMatcher::new(h.clone()).matches(&h));
    }
}
