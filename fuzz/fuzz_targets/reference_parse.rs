//! Fuzz target for `oci::Reference`: `parse`, `parse_normalized`, `parse_any` and the digest parser must never
//! panic on any input, and every accepted reference must print to a string that parses back to the same value
//! (for `parse`, the very input; for `parse_normalized`, a fixed point of normalisation).

#![no_main]

use libfuzzer_sys::fuzz_target;
use oci::{Digest, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = s.parse::<Digest>();
    let _ = Reference::parse_any(s);

    if let Ok(r) = Reference::parse(s) {
        let shown = r.to_string();
        assert_eq!(shown, s, "Parse does not normalise, so Display must give back the input");
        let again = Reference::parse(&shown).expect("Display of a parsed reference must re-parse");
        assert_eq!(again, r);
        let _ = r.familiar_string();
        let _ = r.clone().with_default_tag();
    }

    if let Ok(r) = Reference::parse_normalized(s) {
        let shown = r.to_string();
        let again = Reference::parse(&shown).expect("Display of a normalised reference must re-parse");
        assert_eq!(again, r, "re-parse of {shown:?}");
        let renormalized = Reference::parse_normalized(&shown).expect("a normalised reference must normalise");
        assert_eq!(renormalized, r, "normalisation of {shown:?} is not a fixed point");
        let defaulted = r.clone().with_default_tag();
        assert_eq!(Reference::parse(&defaulted.to_string()).expect("default-tagged re-parses"), defaulted);
    }
});
