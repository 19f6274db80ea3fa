//! Runs real credential-helper executables (shell scripts written into a temporary directory) through
//! `HelperRunner`, checking the exec protocol: server URL on stdin only, `get` as the sole argument, `<token>`
//! meaning an identity token, the "not found" message meaning no credential, and a bounded wait.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use credentials::HelperRunner;

fn write_helper(dir: &std::path::Path, name: &str, body: &str) {
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn helper_receives_url_on_stdin_and_returns_user_and_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "test",
        r#"[ "$#" = 1 ] && [ "$1" = get ] || { echo "bad args: $*"; exit 2; }
url=$(cat)
[ "$url" = "reg.example.com:5000" ] || { echo "wrong url"; exit 3; }
printf '{"ServerURL":"%s","Username":"robot","Secret":"s3cret"}' "$url""#,
    );
    let runner = HelperRunner::with_search_path(dir.path());
    let e = runner
        .get("test", "reg.example.com:5000", "config.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.username.as_str(), e.password.expose()),
        ("robot", "s3cret")
    );
    assert!(e.identity_token.is_none());
}

#[test]
fn token_user_name_means_identity_token() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "tok",
        r#"cat >/dev/null; echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#,
    );
    let e = HelperRunner::with_search_path(dir.path())
        .get("tok", "x", "c")
        .unwrap()
        .unwrap();
    assert_eq!(e.username, "");
    assert_eq!(e.identity_token.unwrap().expose(), "refresh");
}

#[test]
fn not_found_message_means_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "none",
        "cat >/dev/null; echo 'credentials not found in native keychain'; exit 1",
    );
    assert!(
        HelperRunner::with_search_path(dir.path())
            .get("none", "x", "c")
            .unwrap()
            .is_none()
    );
}

#[test]
fn failure_and_missing_helper_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "broken",
        "cat >/dev/null; echo 'keychain locked' >&2; exit 4",
    );
    let runner = HelperRunner::with_search_path(dir.path());
    let e = runner
        .get("broken", "reg.example.com", "c")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("credential helper docker-credential-broken failed for reg.example.com"),
        "{e}"
    );
    assert!(e.ends_with("keychain locked"), "{e}");
    let e = runner
        .get("absent", "reg.example.com", "/home/u/.docker/config.json")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "credential helper docker-credential-absent not found in PATH; install it or remove it from \
         credHelpers/credsStore in /home/u/.docker/config.json"
    );
}

#[test]
fn malformed_output_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "junk",
        "cat >/dev/null; echo 'password=hunter2'",
    );
    let e = HelperRunner::with_search_path(dir.path())
        .get("junk", "x", "c")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn hanging_helper_is_stopped_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(dir.path(), "slow", "exec sleep 30");
    let runner =
        HelperRunner::with_search_path(dir.path()).with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let e = runner.get("slow", "x", "c").unwrap_err().to_string();
    assert!(e.contains("did not answer within"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
