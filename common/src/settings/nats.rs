//! `[nats]`: where the NATS server is, how to authenticate, and TLS — and the rules that refuse
//! credentials which cannot work together before anything connects.
//!
//! [`crate::nats`] turns these settings into a connection; it is the only place that does.

use std::path::Path;

use super::error::rule;
use super::section::settings_section;
use super::{env_var_name, Secret, SettingsError};

settings_section! {
    /// How to reach the NATS server: where it is, how to authenticate, and TLS.
    ///
    /// At most one way to authenticate may be set: `user` + `password`, `token`, `nkey_seed` or
    /// `creds_file`; none means an open server. Empty strings mean "not set", so every key can be
    /// given (or cleared) through the environment.
    [nats] pub struct NatsSettings {
        /// NATS server URL(s), comma-separated. A `tls://` URL requires TLS.
        pub url: String = "nats://127.0.0.1:4222",
        /// Connection name shown by the NATS server's monitoring.
        pub name: String = "baton",
        /// User for user/password authentication (set `password` too).
        pub user: String = "",
        /// Password of `user`. Secrets are best passed through the environment from a secret
        /// store rather than written in a file.
        pub password: Secret = "",
        /// Token authentication.
        pub token: Secret = "",
        /// NKey authentication: the user's seed (58 characters starting with `SU`), made with
        /// `nk -gen user -pubout`.
        pub nkey_seed: Secret = "",
        /// Path of a `.creds` file (user JWT and nkey seed) for decentralised (operator mode)
        /// authentication.
        pub creds_file: String = "",
        /// PEM file of the CA certificate(s) that signed the server's certificate; empty means
        /// the system's roots.
        pub ca_file: String = "",
        /// PEM client certificate for mutual TLS (set `key_file` too).
        pub cert_file: String = "",
        /// PEM private key of `cert_file`.
        pub key_file: String = "",
        /// Refuse to talk to a server without TLS. When false, TLS is still used if the server
        /// asks for it or the URL is `tls://`.
        pub require_tls: bool = false,
    }
}

impl NatsSettings {
    /// The authentication methods set, as `(key, what)`; [`validate`](Self::validate) allows
    /// at most one.
    fn auth_methods(&self) -> Vec<(&'static str, &'static str)> {
        let mut methods = Vec::new();
        if !self.user.is_empty() || self.password.is_set() {
            methods.push(("nats.user", "user/password"));
        }
        if self.token.is_set() {
            methods.push(("nats.token", "token"));
        }
        if self.nkey_seed.is_set() {
            methods.push(("nats.nkey_seed", "nkey_seed"));
        }
        if !self.creds_file.is_empty() {
            methods.push(("nats.creds_file", "creds_file"));
        }
        methods
    }

    /// Checks the `[nats]` rules: a URL, at most one way to authenticate, complete pairs
    /// (user with password, certificate with key), a plausible nkey seed, and files that exist.
    /// Errors name the key and say what to change.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.url.trim().is_empty() {
            return rule("nats.url", "must not be empty, e.g. \"nats://127.0.0.1:4222\"".into());
        }
        if self.password.is_set() && self.user.is_empty() {
            return rule(
                "nats.password",
                format!(
                    "is set but nats.user is empty: set both ({} and {}) or neither",
                    env_var_name("nats.user"),
                    env_var_name("nats.password")
                ),
            );
        }
        if !self.user.is_empty() && !self.password.is_set() {
            return rule(
                "nats.user",
                format!(
                    "`{}` is set but nats.password is empty: set both ({} and {}) or neither",
                    self.user,
                    env_var_name("nats.user"),
                    env_var_name("nats.password")
                ),
            );
        }
        let methods = self.auth_methods();
        if let [_, (key, _), ..] = methods.as_slice() {
            let names: Vec<&str> = methods.iter().map(|(_, what)| *what).collect();
            return rule(
                key,
                format!(
                    "only one way to authenticate may be set, but {} are: keep one and clear the others",
                    names.join(" and ")
                ),
            );
        }
        // A user seed is "S" (seed) + "U" (user) + base32; account or server seeds would be
        // refused by the server with a less helpful message.
        let seed = self.nkey_seed.expose();
        if self.nkey_seed.is_set() && !(seed.starts_with("SU") && seed.len() == 58) {
            return rule(
                "nats.nkey_seed",
                "is not a user nkey seed (58 characters starting with `SU`): make one with \
                 `nk -gen user -pubout` and list its public key (U…) in the server's authorization"
                    .into(),
            );
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            let (set, missing) = if self.cert_file.is_empty() {
                ("nats.key_file", "nats.cert_file")
            } else {
                ("nats.cert_file", "nats.key_file")
            };
            return rule(
                set,
                format!("is set but {missing} is empty: a client certificate needs its private key (set both)"),
            );
        }
        for (key, path) in [
            ("nats.creds_file", &self.creds_file),
            ("nats.ca_file", &self.ca_file),
            ("nats.cert_file", &self.cert_file),
            ("nats.key_file", &self.key_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return rule(
                    key,
                    format!(
                        "file `{path}` does not exist (or is not a file); fix the path or clear {}",
                        env_var_name(key)
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_files::{no_env, write};
    use super::super::Settings;
    use super::*;

    #[test]
    fn nats_credentials_and_tls_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", "-");
        let cert = write(&dir, "client.pem", "-");
        let key = write(&dir, "client-key.pem", "-");
        let s = Settings::load_with_env(
            None,
            [
                ("BATON_NATS__URL", "tls://nats:4222"),
                ("BATON_NATS__USER", "worker"),
                ("BATON_NATS__PASSWORD", "0123"),
                ("BATON_NATS__CA_FILE", ca.to_str().unwrap()),
                ("BATON_NATS__CERT_FILE", cert.to_str().unwrap()),
                ("BATON_NATS__KEY_FILE", key.to_str().unwrap()),
                ("BATON_NATS__REQUIRE_TLS", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.nats.user, "worker");
        // Taken verbatim, not parsed as the number 123.
        assert_eq!(s.nats.password.expose(), "0123");
        assert_eq!(s.nats.ca_file, ca.to_str().unwrap());
        assert!(s.nats.require_tls);
        for (var, value) in [("BATON_NATS__TOKEN", "1e3"), ("BATON_NATS__TOKEN", "true")] {
            let s = Settings::load_with_env(None, [(var, value)]).unwrap();
            assert_eq!(s.nats.token.expose(), value);
        }
        let path = write(&dir, "n.toml", "[nats]\nuser = \"client\"\npassword = \"s3cret\"\n");
        let s = Settings::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!((s.nats.user.as_str(), s.nats.password.expose()), ("client", "s3cret"));
        // Settings can be logged: secrets do not show.
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("password: \"<redacted>\""), "{debug}");
        assert!(debug.contains("token: \"\""), "{debug}");
    }

    #[test]
    fn bad_nats_credential_combinations_name_the_key_and_the_fix() {
        let seed = format!("SU{}", "A".repeat(56));
        /// Environment, the key at fault, and part of the message.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("BATON_NATS__PASSWORD", "x")],
                "nats.password",
                "is set but nats.user is empty: set both (BATON_NATS__USER and BATON_NATS__PASSWORD) or neither",
            ),
            (
                &[("BATON_NATS__USER", "x")],
                "nats.user",
                "`x` is set but nats.password is empty",
            ),
            (
                &[
                    ("BATON_NATS__USER", "u"),
                    ("BATON_NATS__PASSWORD", "p"),
                    ("BATON_NATS__TOKEN", "t"),
                ],
                "nats.token",
                "only one way to authenticate may be set, but user/password and token are: keep one and clear \
                 the others",
            ),
            (
                &[("BATON_NATS__TOKEN", "t"), ("BATON_NATS__NKEY_SEED", seed.as_str())],
                "nats.nkey_seed",
                "but token and nkey_seed are",
            ),
            (
                &[("BATON_NATS__NKEY_SEED", "SAxyz")],
                "nats.nkey_seed",
                "is not a user nkey seed (58 characters starting with `SU`)",
            ),
            (
                &[("BATON_NATS__CREDS_FILE", "/nonexistent/baton.creds")],
                "nats.creds_file",
                "file `/nonexistent/baton.creds` does not exist (or is not a file); fix the path or clear \
                 BATON_NATS__CREDS_FILE",
            ),
            (
                &[("BATON_NATS__CA_FILE", "/nonexistent/ca.pem")],
                "nats.ca_file",
                "does not exist",
            ),
            (
                &[("BATON_NATS__CERT_FILE", "/nonexistent/c.pem")],
                "nats.cert_file",
                "is set but nats.key_file is empty: a client certificate needs its private key (set both)",
            ),
            (
                &[("BATON_NATS__KEY_FILE", "/k.pem")],
                "nats.key_file",
                "nats.cert_file is empty",
            ),
            (&[("BATON_NATS__URL", " ")], "nats.url", "must not be empty"),
        ];
        for (vars, key, message) in cases {
            let err = Settings::load_with_env(None, vars.iter().copied()).unwrap_err();
            assert!(
                matches!(&err, SettingsError::Rule { key: k, .. } if k == key),
                "{vars:?}: {err}"
            );
            let text = err.to_string();
            assert!(text.starts_with(&format!("invalid setting `{key}`: ")), "{text}");
            assert!(text.contains(message), "{vars:?}: {text}\nexpected: {message}");
        }
        // A well-formed seed alone is fine (the server judges whether it is known).
        let s = Settings::load_with_env(None, [("BATON_NATS__NKEY_SEED", seed.as_str())]).unwrap();
        assert_eq!(s.nats.nkey_seed.expose(), seed);
    }
}
