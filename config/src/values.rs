//! Small value types with their own parse rules and messages: bounded
//! integers (TTLs, weights), domain names, and scalars read as text.

use std::fmt;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_yaml::Value;

use crate::yaml::describe;

/// Reads an integer in `lo..=hi`, saying so when the value is anything else.
fn bounded<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64, what: &str) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    match v.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(D::Error::custom(format!(
            "expected {what} {lo}..={hi}, got {}",
            describe(&v)
        ))),
    }
}

macro_rules! bounded_int {
    ($(#[$doc:meta])* $name:ident($inner:ty), $lo:expr, $hi:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // the bounds fit the inner type, so the cast cannot truncate
                bounded(d, $lo, $hi, $what).map(|n| $name(n as $inner))
            }
        }
    };
}

/// Largest TTL RFC 2181 §8 allows.
pub const MAX_TTL: u32 = 2_147_483_647;

bounded_int!(
    /// A TTL in seconds (RFC 2181: 0..=2^31-1).
    Ttl(u32), 0, MAX_TTL as u64, "a TTL in seconds"
);
bounded_int!(
    /// An endpoint weight.
    Weight(u16), 0, 65_535, "an integer"
);
bounded_int!(
    /// An unsigned 16-bit field (MX preference, SRV fields, priorities).
    U16(u16), 0, 65_535, "an integer"
);
bounded_int!(
    /// An unsigned 32-bit field (SOA timers).
    U32(u32), 0, u32::MAX as u64, "an integer"
);
bounded_int!(
    /// A count of answers for `first`.
    Count(u16), 1, 1_000, "a count"
);

/// A duration: `500ms`, `5s`, `2m`, or a bare number of seconds. Kept in
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    /// Parses the text forms; the error says what was expected.
    pub fn parse(text: &str) -> Result<Millis, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let scale = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => 0,
        };
        match num.parse::<u64>() {
            Ok(n) if scale > 0 && n <= u64::MAX / 3_600_000 => Ok(Millis(n * scale)),
            _ => Err(format!(
                "expected a duration such as 500ms, 5s or 2m, got {text:?}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Number(n) => n.as_u64().map(|s| Millis(s.saturating_mul(1000))),
            Value::String(s) => Millis::parse(s).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            D::Error::custom(format!(
                "expected a duration such as 500ms, 5s or 2m, got {}",
                describe(&v)
            ))
        })
    }
}

/// A scalar read as text: record values may be written as numbers or words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            Value::Bool(b) => Ok(Text(b.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a text value, got {}",
                describe(&other)
            ))),
        }
    }
}

/// An absolute domain name in presentation form, with the trailing dot,
/// case kept as written. Comparisons use [`DomainName::key`]. It serializes
/// as its text for replication; user input goes through [`DomainName::parse`].
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

/// A name decoded from JSON (the API, the log, a snapshot) must be one
/// [`DomainName::parse`] made: absolute and well-formed.
impl TryFrom<String> for DomainName {
    type Error = String;

    fn try_from(text: String) -> Result<DomainName, String> {
        let parsed = DomainName::parse(&text)?;
        if parsed.0 == text {
            Ok(parsed)
        } else {
            Err(format!("{text:?} is not an absolute domain name"))
        }
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> String {
        n.0
    }
}

impl DomainName {
    /// Parses an absolute or relative name; relative names are taken as
    /// written below the root (callers resolve `@` and zone-relative names
    /// first). Allows letters, digits, `-`, `_` and `*` labels; at most 63
    /// octets a label and 255 in all.
    pub fn parse(text: &str) -> Result<DomainName, String> {
        let t = text.trim();
        if t == "." {
            return Ok(DomainName(".".into()));
        }
        let body = t.strip_suffix('.').unwrap_or(t);
        if body.is_empty() {
            return Err("expected a domain name, got an empty string".into());
        }
        let mut wire_len = 1;
        for label in body.split('.') {
            if label.is_empty() {
                return Err(format!("{text:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{text:?} has a label longer than 63 octets"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
            {
                return Err(format!(
                    "{text:?} is not a domain name (labels hold letters, digits, '-' and '_')"
                ));
            }
            wire_len += label.len() + 1;
        }
        if wire_len > 255 {
            return Err(format!("{text:?} is longer than 255 octets"));
        }
        Ok(DomainName(format!("{body}.")))
    }

    /// The name with its trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lower-case form for comparisons.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// Whether `self` is `zone` or below it.
    pub fn is_within(&self, zone: &DomainName) -> bool {
        let me = self.key();
        let z = zone.key();
        z == "." || me == z || me.ends_with(&format!(".{z}"))
    }

    /// Number of labels (the root has none).
    pub fn label_count(&self) -> usize {
        if self.0 == "." {
            0
        } else {
            self.0.matches('.').count()
        }
    }

    /// The name one label up, `None` at the root.
    pub fn parent(&self) -> Option<DomainName> {
        if self.0 == "." {
            return None;
        }
        let body = &self.0[..self.0.len() - 1];
        Some(match body.split_once('.') {
            Some((_, rest)) => DomainName(format!("{rest}.")),
            None => DomainName(".".into()),
        })
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = DomainName::parse("WWW.Example.com").unwrap();
        assert_eq!(n.as_str(), "WWW.Example.com.");
        assert_eq!(n.key(), "www.example.com.");
        assert!(n.is_within(&DomainName::parse("example.COM.").unwrap()));
        assert!(!n.is_within(&DomainName::parse("ample.com").unwrap()));
        assert_eq!(n.label_count(), 3);
        assert_eq!(n.parent().unwrap().as_str(), "Example.com.");
        for bad in ["", "a..b", "a b.c", &"x".repeat(64)] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?}");
        }
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(DomainName::parse(&long).is_err());
    }

    #[test]
    fn bounded_ints_say_what_they_expected() {
        let e = serde_yaml::from_str::<Weight>("heavy").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected an integer 0..=65535, got string \"heavy\""
        );
        assert_eq!(serde_yaml::from_str::<Weight>("7").unwrap(), Weight(7));
        assert!(serde_yaml::from_str::<Ttl>("-1").is_err());
        assert!(serde_yaml::from_str::<Ttl>("2147483648").is_err());
        assert!(serde_yaml::from_str::<Count>("0").is_err());
    }

    #[test]
    fn durations() {
        for (text, ms) in [("500ms", 500), ("5s", 5000), ("2m", 120_000), ("3", 3000)] {
            assert_eq!(serde_yaml::from_str::<Millis>(text).unwrap(), Millis(ms));
        }
        for bad in ["5 parsecs", "-1s", "s", "1.5s"] {
            assert!(serde_yaml::from_str::<Millis>(bad).is_err(), "{bad}");
        }
    }
}
