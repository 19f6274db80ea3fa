//! [`SecretString`]: the only type in which a password, token or `auth` value may be held. It owns redaction:
//! `Debug` and `Display` print `<redacted>`, serialisation is impossible, and the value is reachable only through
//! the explicitly named [`SecretString::expose`]. It must never implement a trait that could print the value.

use std::fmt;

/// A secret value (password, identity token). Debug/Display never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The secret itself, for the one place that must send it (an `Authorization` header, a helper's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> SecretString {
        SecretString(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(format!("{:?}", SecretString::default()), "<empty>");
        assert_eq!(s.expose(), "hunter2");
    }
}
