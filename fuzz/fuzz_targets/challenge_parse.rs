//! Fuzz target: `WWW-Authenticate` parsing must never panic, whatever a registry sends, and every
//! challenge it returns has a lowercase scheme and parameters that can be looked up again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    for challenge in registry::parse_www_authenticate(header) {
        assert_eq!(challenge.scheme, challenge.scheme.to_ascii_lowercase());
        for (name, value) in &challenge.params {
            assert_eq!(challenge.param(name), Some(value.as_str()));
        }
    }
});
