//! The test runner of berth's `harness = false` test binaries (those that start containers, whose binary is also
//! the containers' shim and so needs its own `main`): runs the named tests whose name contains the first
//! non-flag argument (like libtest's filter), one after another, each caught on panic, and prints libtest-like
//! lines (`test NAME ... ok (1.2s)`, then `N passed; M failed`). It owns nothing else: the binary's `main`
//! keeps its shim dispatch and set-up, and this module must never skip or retry a test on its own.

use std::time::Instant;

/// Runs `tests` filtered by the first non-flag command-line argument; exits the process with status 1 when
/// any test failed (returns when all passed).
pub fn run_tests(tests: &[(&str, fn())]) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        ran += 1;
        let start = Instant::now();
        let ok = std::panic::catch_unwind(f).is_ok();
        println!(
            "test {name} ... {} ({:.1}s)",
            if ok { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f32()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!("\n{} passed; {} failed", ran - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}
