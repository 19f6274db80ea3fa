//! imagePullPolicy: its default when the container leaves it empty (`pkg/apis/core/v1/defaults.go`: an
//! effective tag of `latest` means `Always`, anything else `IfNotPresent`), kubelet's `applyDefaultImageTag`, and
//! the decision table of `EnsureImageExists` combining the policy, the image's presence and KEP-2535's verdict.
//! It is pure: no IO, no Events; it must never look at credentials itself.

use std::fmt;

use crate::texts;

/// A container's imagePullPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the image is absent (or, under KEP-2535, not accessible to the pod).
    IfNotPresent,
    /// Never pull.
    Never,
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        })
    }
}

/// An imagePullPolicy the API would never have accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported imagePullPolicy {}: supported values are \"Always\", \"IfNotPresent\" and \"Never\"; fix the container's imagePullPolicy",
    texts::go_quote(.0)
)]
pub struct UnsupportedPolicy(pub String);

impl PullPolicy {
    /// The container's policy, or the API server's default for `image` when it is empty.
    pub fn effective(policy: Option<&str>, image: &str) -> Result<PullPolicy, UnsupportedPolicy> {
        match policy {
            None | Some("") => Ok(PullPolicy::default_for(image)),
            Some("Always") => Ok(PullPolicy::Always),
            Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
            Some("Never") => Ok(PullPolicy::Never),
            Some(other) => Err(UnsupportedPolicy(other.to_string())),
        }
    }

    /// `defaults.go`: the tag from `parsers.ParseImageName` (written, or `latest` when there is neither tag
    /// nor digest) equal to `latest` gives `Always`; anything else, an unparsable name included, gives
    /// `IfNotPresent`.
    pub fn default_for(image: &str) -> PullPolicy {
        match oci::Reference::parse_normalized(image) {
            Ok(r) => {
                let tag = match (r.tag(), r.digest()) {
                    (Some(t), _) => t,
                    (None, None) => "latest",
                    (None, Some(_)) => "",
                };
                if tag == "latest" {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }
            }
            Err(_) => PullPolicy::IfNotPresent,
        }
    }
}

/// kubelet `applyDefaultImageTag`: the image as written, with `:latest` appended when it has neither tag nor
/// digest (without qualifying the name: `busybox` becomes `busybox:latest`). The error is kubelet's
/// `couldn't parse image name "x": <reference error>`.
pub fn apply_default_tag(image: &str) -> Result<String, String> {
    let r = oci::Reference::parse_normalized(image)
        .map_err(|e| texts::couldnt_parse_image_name(image, &e.to_string()))?;
    Ok(match (r.tag(), r.digest()) {
        (None, None) => format!("{image}:latest"),
        _ => image.to_string(),
    })
}

/// What `EnsureImageExists` does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Use the local image; `verified` when KEP-2535 checked the pod may use it (the Event then says
    /// `... and can be accessed by the pod`).
    UsePresent {
        /// KEP-2535 verification is on and passed.
        verified: bool,
    },
    /// Pull (subject to back-off).
    Pull,
    /// Fail with ErrImageNeverPull (absent, or present but not accessible to the pod).
    NeverPull,
}

/// The decision table: `present` is whether the image is in the store; `must_attempt_pull` is KEP-2535's
/// `MustAttemptImagePull` for a present image (always false when verification is off).
pub fn decide(
    policy: PullPolicy,
    present: bool,
    verification_on: bool,
    must_attempt_pull: bool,
) -> Decision {
    let usable = present && !(verification_on && must_attempt_pull);
    match policy {
        PullPolicy::Always => Decision::Pull,
        PullPolicy::IfNotPresent if usable => Decision::UsePresent {
            verified: verification_on,
        },
        PullPolicy::IfNotPresent => Decision::Pull,
        PullPolicy::Never if usable => Decision::UsePresent {
            verified: verification_on,
        },
        PullPolicy::Never => Decision::NeverPull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_defaults_from_the_tag_as_the_api_server_does() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let table = [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("busybox:1.36", PullPolicy::IfNotPresent),
            ("reg.example:5000/team/app", PullPolicy::Always),
            ("reg.example:5000/team/app:v1", PullPolicy::IfNotPresent),
            (&*format!("busybox@{digest}"), PullPolicy::IfNotPresent),
            (&*format!("busybox:latest@{digest}"), PullPolicy::Always),
            ("Not/Valid", PullPolicy::IfNotPresent),
        ];
        for (image, want) in table {
            assert_eq!(PullPolicy::effective(None, image).unwrap(), want, "{image}");
            assert_eq!(
                PullPolicy::effective(Some(""), image).unwrap(),
                want,
                "{image}"
            );
        }
        assert_eq!(
            PullPolicy::effective(Some("Never"), "busybox").unwrap(),
            PullPolicy::Never
        );
        assert_eq!(
            PullPolicy::effective(Some("always"), "busybox")
                .unwrap_err()
                .to_string(),
            r#"unsupported imagePullPolicy "always": supported values are "Always", "IfNotPresent" and "Never"; fix the container's imagePullPolicy"#
        );
    }

    #[test]
    fn default_tag_is_appended_to_the_name_as_written() {
        assert_eq!(apply_default_tag("busybox").unwrap(), "busybox:latest");
        assert_eq!(apply_default_tag("busybox:1.36").unwrap(), "busybox:1.36");
        let pinned = format!("busybox@sha256:{}", "b".repeat(64));
        assert_eq!(apply_default_tag(&pinned).unwrap(), pinned);
        assert_eq!(
            apply_default_tag("reg:5000/a/b").unwrap(),
            "reg:5000/a/b:latest"
        );
        assert_eq!(
            apply_default_tag("Foo/Bar").unwrap_err(),
            r#"couldn't parse image name "Foo/Bar": invalid reference format: repository name (Bar) must be lowercase"#
        );
    }

    #[test]
    fn decision_table_matches_kubelet_with_and_without_verification() {
        use Decision::*;
        use PullPolicy::*;
        // (policy, present, verification on, must attempt pull) -> decision
        let table = [
            (Always, false, true, false, Pull),
            (Always, true, true, false, Pull),
            (Always, true, false, false, Pull),
            (IfNotPresent, false, true, false, Pull),
            (
                IfNotPresent,
                true,
                false,
                false,
                UsePresent { verified: false },
            ),
            (
                IfNotPresent,
                true,
                false,
                true,
                UsePresent { verified: false },
            ),
            (
                IfNotPresent,
                true,
                true,
                false,
                UsePresent { verified: true },
            ),
            (IfNotPresent, true, true, true, Pull),
            (Never, false, true, false, NeverPull),
            (Never, false, false, false, NeverPull),
            (Never, true, false, true, UsePresent { verified: false }),
            (Never, true, true, false, UsePresent { verified: true }),
            (Never, true, true, true, NeverPull),
        ];
        for (policy, present, on, must, want) in table {
            assert_eq!(
                decide(policy, present, on, must),
                want,
                "{policy} present={present} verification={on} must_pull={must}"
            );
        }
    }
}
