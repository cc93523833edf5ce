//! The documented defaults: the whole settings tree as TOML, every key at its default under its
//! doc comment and beside the environment variable that overrides it. `baton config` prints it
//! and docs/settings.md shows it (a test keeps that file current).
//!
//! The docs are the fields' own doc comments, collected by `settings_section!`, so they cannot
//! drift from the structs; the values come from serializing [`Settings::default`].

use std::fmt::Write;

use super::{env_var_name, Settings, SECTIONS};

/// What the file is and how the environment overrides it.
const HEADER: &str = "\
# Baton settings. Every key is optional; the values shown are the defaults.
# Each key can also be set by the environment variable named beside it,
# BATON_<SECTION>__<KEY> (e.g. BATON_SCHEDULER__DELTA_CTRL_US=150), which wins over this file.
";

impl Settings {
    /// The whole settings tree as TOML with every key at its default, each under its doc and
    /// beside its environment variable.
    pub fn documented_defaults() -> String {
        let defaults = toml::Value::try_from(Settings::default()).expect("default settings serialize to TOML");
        let mut out = String::from(HEADER);
        for section in SECTIONS {
            out.push('\n');
            push_comment(&mut out, section.doc);
            let _ = writeln!(out, "[{}]", section.name);
            for key in section.keys {
                push_comment(&mut out, key.doc);
                let value = &defaults[section.name][key.name];
                let var = env_var_name(&format!("{}.{}", section.name, key.name));
                let _ = writeln!(out, "{} = {value}  # {var}", key.name);
            }
        }
        out
    }
}

/// Appends doc comment lines as TOML comments.
fn push_comment(out: &mut String, doc: &[&str]) {
    for line in doc {
        // rustdoc keeps the space after `///`.
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_files::{no_env, write};
    use super::*;

    #[test]
    fn documented_defaults_cover_every_key_and_parse_back() {
        let text = Settings::documented_defaults();
        let parsed: Settings = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Settings::default());

        // The sections' keys are exactly the struct fields.
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        let table = defaults.as_table().unwrap();
        let mut documented: Vec<String> = Vec::new();
        for section in SECTIONS {
            for key in section.keys {
                documented.push(format!("{}.{}", section.name, key.name));
            }
        }
        let mut actual: Vec<String> = Vec::new();
        for (section, keys) in table {
            for key in keys.as_table().unwrap().keys() {
                actual.push(format!("{section}.{key}"));
            }
        }
        documented.sort();
        actual.sort();
        assert_eq!(documented, actual);

        // And the file is accepted by the loader itself.
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "defaults.toml", &text);
        assert_eq!(
            Settings::load_with_env(Some(&path), no_env()).unwrap(),
            Settings::default()
        );
        assert!(text.contains("drop_policy = \"window_drop\""), "{text}");
        assert!(
            text.contains("delta_ctrl_us = 1000  # BATON_SCHEDULER__DELTA_CTRL_US\n"),
            "{text}"
        );
    }

    #[test]
    fn every_section_and_key_has_a_doc_naming_its_accepted_values() {
        for section in SECTIONS {
            assert!(!section.doc.is_empty(), "[{}] has no doc comment", section.name);
            for key in section.keys {
                let doc = key.doc.join("\n");
                assert!(
                    !doc.trim().is_empty(),
                    "{}.{} has no doc comment",
                    section.name,
                    key.name
                );
                for value in (key.accepted)() {
                    assert!(
                        doc.contains(&format!("`{value}`")),
                        "the doc of {}.{} does not say what `{value}` does:\n{doc}",
                        section.name,
                        key.name
                    );
                }
            }
        }
    }

    /// docs/settings.md shows `baton config`'s output; this keeps it current. After changing a
    /// setting, regenerate it with `BATON_UPDATE_DOCS=1 cargo test -p baton-common settings_doc`.
    #[test]
    fn settings_doc_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/settings.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (start, end) = ("```toml\n", "```\n");
        let from = doc.find(start).expect("a ```toml block in docs/settings.md") + start.len();
        let to = from + doc[from..].find(end).expect("the end of the ```toml block");
        let current = Settings::documented_defaults();
        if doc[from..to] == current {
            return;
        }
        if std::env::var_os("BATON_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{current}{}", &doc[..from], &doc[to..])).unwrap();
            return;
        }
        panic!(
            "docs/settings.md does not show the current `baton config` output; regenerate it with \
             BATON_UPDATE_DOCS=1 cargo test -p baton-common settings_doc"
        );
    }
}
