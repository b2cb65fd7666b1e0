//! The floor of dsmil: the small vocabulary every part of the daemon (and
//! `dsmilctl`) shares — deployment states, runtimes and targets, model
//! formats, quantization methods, inference options, event kinds — each
//! with its one parse and its one spelling.
//!
//! It imports nothing of the daemon's and holds no logic beyond naming,
//! parsing and classifying these values: a type lives here when two
//! modules that must not import each other both need it. The spellings are
//! the journal's and the wire's; changing one is a store migration.

mod event;
mod model;
mod options;
mod state;

pub use event::{EventKind, Severity};
pub use model::Format;
pub use options::{
    ActivationType, BackendKind, GateMetric, GateThresholds, Method, MethodName, PerformanceHint, Precision, Target,
};
pub use state::DeployState;

/// A value that is not one of a kind's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// What was being parsed ("backend", "method", ...).
    pub what: &'static str,
    pub value: String,
    /// The accepted spellings, for the message.
    pub expected: &'static str,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: expected {}", self.what, self.value, self.expected)
    }
}

impl std::error::Error for Unknown {}

/// Implements `as_str`, `Display`, `FromStr` (with [`Unknown`]) and serde
/// as the string spelling, from one table per enum.
macro_rules! spelled {
    ($ty:ident, $what:literal, $expected:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::Unknown;
            fn from_str(s: &str) -> Result<$ty, $crate::Unknown> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err($crate::Unknown { what: $what, value: s.to_owned(), expected: $expected }),
                }
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use spelled;
