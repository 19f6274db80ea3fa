//! `ImageManager::ensure_image` paths that end before any registry is contacted (invalid names, policy Never
//! with an absent image, an unsupported policy) and a pull to a closed port, over a real content store and
//! registry client: kubelet's Events and waiting reasons, exactly.

mod common;

use std::time::Duration;

use common::*;
use podpull::{EventType, ManualClock};

fn env() -> (
    tempfile::TempDir,
    podpull::ImageManager,
    std::sync::Arc<ManualClock>,
) {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::create_dir_all(&hosts).unwrap();
    let clock = ManualClock::new();
    let m = manager(dir.path(), client(&hosts), clock.clone());
    (dir, m, clock)
}

#[tokio::test]
async fn an_invalid_image_name_is_invalid_image_name_with_kubelets_inspect_failed_text() {
    let (_dir, m, _) = env();
    let events = Events::default();
    let w = m
        .ensure_image(&pod("a"), "Foo/Bar", None, &[], &events, None)
        .await
        .unwrap_err();
    let msg = r#"Failed to apply default image tag "Foo/Bar": couldn't parse image name "Foo/Bar": invalid reference format: repository name (Bar) must be lowercase"#;
    assert_eq!(
        (w.reason.as_str(), w.message.as_str()),
        ("InvalidImageName", msg)
    );
    assert_eq!(
        events.all(),
        [
            (EventType::Warning, "InspectFailed".into(), msg.to_string()),
            (
                EventType::Warning,
                "Failed".into(),
                "Error: InvalidImageName".into()
            ),
        ]
    );
}

#[tokio::test]
async fn never_with_an_absent_image_is_err_image_never_pull() {
    let (_dir, m, _) = env();
    let events = Events::default();
    let w = m
        .ensure_image(&pod("a"), "busybox", Some("Never"), &[], &events, None)
        .await
        .unwrap_err();
    let msg = r#"Container image "busybox" is not present with pull policy of Never"#;
    assert_eq!(
        (w.reason.as_str(), w.message.as_str()),
        ("ErrImageNeverPull", msg)
    );
    assert_eq!(
        events.all(),
        [
            (
                EventType::Warning,
                "ErrImageNeverPull".into(),
                msg.to_string()
            ),
            (
                EventType::Warning,
                "Failed".into(),
                "Error: ErrImageNeverPull".into()
            ),
        ]
    );
}

#[tokio::test]
async fn an_unsupported_policy_names_the_field_and_the_values() {
    let (_dir, m, _) = env();
    let w = m
        .ensure_image(
            &pod("a"),
            "busybox",
            Some("Sometimes"),
            &[],
            &Events::default(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(w.reason, "CreateContainerConfigError");
    assert!(
        w.message
            .contains(r#"unsupported imagePullPolicy "Sometimes""#),
        "{}",
        w.message
    );
}

#[tokio::test]
async fn a_network_failure_backs_off_ten_then_twenty_seconds_per_pod() {
    let (_dir, m, clock) = env();
    // Port 1 on loopback: connection refused at once.
    let image = "127.0.0.1:1/team/app";
    let p = pod("a");
    let events = Events::default();
    let first = m
        .ensure_image(&p, image, None, &[], &events, None)
        .await
        .unwrap_err();
    assert_eq!(first.reason, "ErrImagePull");
    assert!(first.message.contains("127.0.0.1:1"), "{}", first.message);
    // No tag: the default tag is part of the back-off key and the policy is Always.
    assert_eq!(
        m.backoff_delay(&p.uid, image),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        m.backoff_delay(&p.uid, "127.0.0.1:1/team/app:latest"),
        Some(Duration::from_secs(10))
    );
    let b = m
        .ensure_image(&p, image, None, &[], &Events::default(), None)
        .await
        .unwrap_err();
    assert_eq!(
        b.message,
        format!(
            "Back-off pulling image \"{image}\": ErrImagePull: {}",
            first.message
        )
    );
    clock.advance(Duration::from_secs(10));
    let again = m
        .ensure_image(&p, image, None, &[], &Events::default(), None)
        .await
        .unwrap_err();
    assert_eq!(again.reason, "ErrImagePull");
    assert_eq!(
        m.backoff_delay(&p.uid, image),
        Some(Duration::from_secs(20))
    );
    clock.advance(Duration::from_secs(19));
    let still = m
        .ensure_image(&p, image, None, &[], &Events::default(), None)
        .await
        .unwrap_err();
    assert_eq!(still.reason, "ImagePullBackOff");
}
