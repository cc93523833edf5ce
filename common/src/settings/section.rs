//! [`settings_section!`]: one definition of a settings section gives its struct, its `Default`
//! and the doc of every key, so a key's doc is written once, as the doc comment of its field.
//!
//! The macro takes the struct as it should read, with a default after each field:
//!
//! ```text
//! settings_section! {
//!     /// Logging.
//!     [log] pub struct LogSettings {
//!         /// Emit JSON lines instead of human-readable text.
//!         pub json: bool = false,
//!     }
//! }
//! ```
//!
//! and emits the struct (serde `default` and `deny_unknown_fields`, the default appended to each
//! field's rustdoc), `impl Default`, and `LogSettings::SECTION`, the [`Section`] that the loader
//! checks keys against and that [`Settings::documented_defaults`](super::Settings::documented_defaults)
//! renders. Only `///` docs are taken; developer notes that should not reach `baton config` go in
//! `//` comments or on the `impl` blocks.

use super::{Condition, DropPolicy, GpuChoice, Secret};

/// One `[section]` of the settings file: its name, its doc and its keys, in file order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section {
    /// The table name, e.g. `scheduler`.
    pub name: &'static str,
    /// The section struct's doc comment, one entry per line.
    pub doc: &'static [&'static str],
    /// The keys, in the struct's field order.
    pub keys: &'static [Key],
}

/// One key of a [`Section`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// The key, e.g. `delta_ctrl_us`.
    pub name: &'static str,
    /// The field's doc comment, one entry per line (each with rustdoc's leading space).
    pub doc: &'static [&'static str],
    /// The values accepted, for keys that take one of a fixed set (the policy enums); empty
    /// otherwise.
    pub accepted: fn() -> Vec<&'static str>,
}

impl Section {
    /// The key called `name`, if this section has one.
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// The names of the keys, in file order.
    pub fn key_names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

/// A type a setting can have. `Default` is how a default is written in [`settings_section!`],
/// so `= 1000` is a `u64` and `= "info"` a `String` without `.into()`.
pub(crate) trait SettingValue: Sized {
    /// How a default of this type is written.
    type Default: Into<Self>;

    /// The values accepted, for types with a fixed set of them.
    fn accepted() -> Vec<&'static str> {
        Vec::new()
    }
}

impl SettingValue for u64 {
    type Default = u64;
}

impl SettingValue for f64 {
    type Default = f64;
}

impl SettingValue for bool {
    type Default = bool;
}

impl SettingValue for String {
    type Default = &'static str;
}

impl SettingValue for Secret {
    type Default = &'static str;
}

/// The policy enums accept the names of their variants.
macro_rules! enum_setting_value {
    ($($ty:ty),+) => {
        $(impl SettingValue for $ty {
            type Default = $ty;
            fn accepted() -> Vec<&'static str> {
                <$ty>::ALL.iter().map(|v| v.as_str()).collect()
            }
        })+
    };
}

enum_setting_value!(DropPolicy, Condition, GpuChoice);

/// The value a default written as `default` stands for.
pub(crate) fn from_default<T: SettingValue>(default: T::Default) -> T {
    default.into()
}

/// Defines a settings section; see the [module docs](self).
macro_rules! settings_section {
    (
        $(#[doc = $section_doc:literal])*
        [$section:ident] pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident: $ty:ty = $default:expr
            ),+ $(,)?
        }
    ) => {
        $(#[doc = $section_doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Default: `", stringify!($default), "`.")]
                pub $field: $ty,
            )+
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $crate::settings::section::from_default::<$ty>($default),)+
                }
            }
        }

        impl $name {
            /// The section's name and docs, for the loader's key checks and `baton config`.
            pub(crate) const SECTION: $crate::settings::section::Section =
                $crate::settings::section::Section {
                    name: stringify!($section),
                    doc: &[$($section_doc),*],
                    keys: &[$($crate::settings::section::Key {
                        name: stringify!($field),
                        doc: &[$($doc),*],
                        accepted: <$ty as $crate::settings::section::SettingValue>::accepted,
                    }),+],
                };
        }
    };
}

pub(crate) use settings_section;
