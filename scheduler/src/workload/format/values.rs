//! The values of a workload file, each checked inside its own `Deserialize` so that a bad one is
//! reported at its own line, with what was expected ("`0` is not a positive number of seconds").

use std::fmt;
use std::marker::PhantomData;

use baton_common::profile::{Profile, DEFAULT_SPEC_MAX_BATCH};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::workload::spec::GAP_FORM;
use crate::workload::{Gap, Segment};

pub(super) const FRAMEWORK_FORM: &str = "`sleep#slope_us,intercept_us,pre_us,post_us` (e.g. `sleep#1082,5204,0,0`)";
const SEED_FORM: &str = "a non-negative integer (decimal or 0x-hex)";

/// One entry of `warmup`, `bench` or `cooldown`.
pub(super) enum SegmentFile {
    /// A bare rps number, lasting the model's `segment_duration`.
    Bare(f64),
    /// `{duration, rps}`.
    Timed(Segment),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimedSegment {
    duration: Seconds,
    rps: Rps,
}

/// Defines a newtype over `f64` that accepts any YAML number satisfying `$ok` and otherwise
/// fails with "`x` is not $what".
macro_rules! checked_number {
    ($(#[$doc:meta])* $name:ident, $what:literal, $ok:expr) => {
        $(#[$doc])*
        pub(super) struct $name(pub(super) f64);

        impl $name {
            const WHAT: &'static str = $what;

            fn check<E: de::Error>(x: f64) -> Result<Self, E> {
                let ok: fn(f64) -> bool = $ok;
                if ok(x) {
                    Ok($name(x))
                } else {
                    Err(E::custom(format_args!("`{x}` is not {}", Self::WHAT)))
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($name::WHAT)
                    }
                    fn visit_f64<E: de::Error>(self, x: f64) -> Result<$name, E> {
                        $name::check(x)
                    }
                    fn visit_i64<E: de::Error>(self, x: i64) -> Result<$name, E> {
                        $name::check(x as f64)
                    }
                    fn visit_u64<E: de::Error>(self, x: u64) -> Result<$name, E> {
                        $name::check(x as f64)
                    }
                }
                d.deserialize_f64(V)
            }
        }
    };
}

checked_number!(
    /// A duration in seconds: finite and positive.
    Seconds,
    "a positive number of seconds",
    |x| x.is_finite() && x > 0.0
);
checked_number!(
    /// A latency in milliseconds: finite and positive.
    Millis,
    "a positive number of milliseconds",
    |x| x.is_finite() && x > 0.0
);
checked_number!(
    /// A request rate: finite and non-negative (0 is a silent segment).
    Rps,
    "a non-negative number of requests per second",
    |x| x.is_finite() && x >= 0.0
);

/// Accepts a YAML integer (the parser reads `0x…` as one) or a string holding a decimal or
/// `0x`-hex integer, for files written by tools that quote it.
pub(super) struct Seed(pub(super) u64);

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SEED_FORM)
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Seed, E> {
                Ok(Seed(x))
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Seed, E> {
                u64::try_from(x)
                    .map(Seed)
                    .map_err(|_| E::custom(format_args!("`{x}` is not {SEED_FORM}")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Seed, E> {
                let t = s.trim();
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse::<u64>(),
                };
                parsed
                    .map(Seed)
                    .map_err(|_| E::custom(format_args!("`{s}` is not {SEED_FORM}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// The number of GPUs: a positive integer.
pub(super) struct Gpus(pub(super) usize);

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Gpus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Gpus, E> {
                match usize::try_from(x) {
                    Ok(g) if g > 0 => Ok(Gpus(g)),
                    _ => Err(E::custom(format_args!("`{x}` is not a positive integer"))),
                }
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Gpus, E> {
                Err(E::custom(format_args!("`{x}` is not a positive integer")))
            }
        }
        d.deserialize_u64(V)
    }
}

/// Reads a string and converts it with `parse`, whose error says what is wrong with it.
struct FromText<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for FromText<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.parse)(s).map_err(E::custom)
    }
}

/// A model's name: not empty or blank.
pub(super) struct Name(pub(super) String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromText {
            expecting: "a non-empty name",
            parse: |s| match s.trim() {
                "" => Err(format!("`{s}` is not a non-empty name")),
                _ => Ok(Name(s.to_string())),
            },
        })
    }
}

/// `framework: sleep#…`, the only kind Baton can emulate, as a latency profile.
pub(super) struct Framework(pub(super) Profile);

impl<'de> Deserialize<'de> for Framework {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromText {
            expecting: FRAMEWORK_FORM,
            parse: |s| {
                if !s.trim().starts_with("sleep#") {
                    return Err(format!(
                        "`{s}` is not a sleep profile; only {FRAMEWORK_FORM} is supported"
                    ));
                }
                Profile::from_spec(s, DEFAULT_SPEC_MAX_BATCH)
                    .map(Framework)
                    .map_err(|e| e.to_string())
            },
        })
    }
}

impl<'de> Deserialize<'de> for Gap {
    /// `const`, `exp` or `gamma:<shape>`, as [`Gap::from_str`](std::str::FromStr) reads it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromText {
            expecting: GAP_FORM,
            parse: str::parse,
        })
    }
}

impl<'de> Deserialize<'de> for SegmentFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SegmentFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an rps number or a `{duration, rps}` mapping")
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<SegmentFile, E> {
                Rps::check(x).map(|r| SegmentFile::Bare(r.0))
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<SegmentFile, E> {
                self.visit_f64(x as f64)
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<SegmentFile, E> {
                self.visit_f64(x as f64)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SegmentFile, A::Error> {
                let t = TimedSegment::deserialize(MapAccessDeserializer::new(map))?;
                Ok(SegmentFile::Timed(Segment {
                    duration_s: t.duration.0,
                    rps: t.rps.0,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list that must have at least one entry (`models`, `bench`).
pub(super) struct NonEmpty<T>(pub(super) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NonEmpty<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                if items.is_empty() {
                    return Err(de::Error::custom("the list is empty; it needs at least one entry"));
                }
                Ok(NonEmpty(items))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}
