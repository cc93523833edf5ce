//! Connecting to NATS: the one place that turns `[nats]` settings into a connection.
//!
//! The scheduler, the workers, the client library and the command-line tools all connect
//! through [`connect`], so credentials and TLS mean the same thing everywhere and a
//! misconfiguration is reported the same way.
//!
//! Two failures look alike on the wire and must not be treated alike:
//!
//! - **The server is unreachable** (not started yet, restarting, network down). Services wait
//!   for it — in a container deployment NATS often starts after the scheduler and the workers —
//!   logging that they are waiting and why; clients give up after a bound.
//! - **The server rejects us** (wrong user, password, token or nkey; a TLS handshake that
//!   cannot succeed). Retrying cannot help and would hide the mistake behind an endless
//!   reconnect loop, so [`connect`] ends at once with an error that names the settings to check.
//!
//! That is why Baton does not use async-nats' `retry_on_initial_connect`: it retries every
//! failure forever in the background, a rejected password included. [`connect`] makes the first
//! connection itself; once connected, async-nats reconnects on its own after any drop.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::rustls;
use async_nats::{ConnectErrorKind, ConnectOptions};

use crate::settings::{NatsSettings, SettingsError};

/// What [`connect`] does while no server answers. A rejected credential or a failed TLS
/// handshake ends it at once either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Wait for the server as long as it takes (services: the scheduler, workers).
    Forever,
    /// Give up after this long (clients and command-line tools).
    For(Duration),
}

/// Why [`connect`] could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsConnectError {
    /// The `[nats]` settings break a rule (e.g. a password without a user, a missing file).
    #[error(transparent)]
    Settings(#[from] SettingsError),

    /// A credentials file could not be read or parsed.
    #[error("cannot use {key} `{path}`: {message}")]
    CredentialsFile {
        key: &'static str,
        path: String,
        message: String,
    },

    /// The server answered and refused the credentials (or their absence).
    #[error("NATS at {url} rejected the credentials ({reason}): {hint}")]
    Rejected { url: String, reason: String, hint: String },

    /// The TLS handshake failed: a certificate problem, not a network one.
    #[error("TLS with NATS at {url} failed ({reason}): {hint}")]
    Tls { url: String, reason: String, hint: String },

    /// The URL cannot be parsed.
    #[error("`{url}` is not a NATS URL ({reason}); set nats.url (BATON_NATS__URL), e.g. nats://127.0.0.1:4222")]
    Url { url: String, reason: String },

    /// No server answered within the [`Retry::For`] bound.
    #[error(
        "no NATS server answered at {url} within {:.1} s ({last}): is nats-server running, and is nats.url \
         (BATON_NATS__URL) right?",
        after.as_secs_f64()
    )]
    Unreachable { url: String, after: Duration, last: String },
}

impl NatsConnectError {
    /// True when the server refused the credentials: retrying with the same settings is futile.
    pub fn is_rejected(&self) -> bool {
        matches!(self, NatsConnectError::Rejected { .. })
    }
}

impl NatsSettings {
    /// The async-nats options these settings describe: name, authentication and TLS, and
    /// reconnecting forever once connected. Callers add what is theirs (event callbacks,
    /// reconnect delays) and hand them to [`connect`] rather than connecting themselves.
    pub fn connect_options(&self) -> Result<ConnectOptions, NatsConnectError> {
        self.validate()?;
        let mut options = ConnectOptions::new().max_reconnects(None);
        if !self.name.is_empty() {
            options = options.name(&self.name);
        }
        if !self.user.is_empty() {
            options = options.user_and_password(self.user.clone(), self.password.expose().to_string());
        } else if self.token.is_set() {
            options = options.token(self.token.expose().to_string());
        } else if self.nkey_seed.is_set() {
            options = options.nkey(self.nkey_seed.expose().to_string());
        } else if !self.creds_file.is_empty() {
            let creds_error = |message: String| NatsConnectError::CredentialsFile {
                key: "nats.creds_file",
                path: self.creds_file.clone(),
                message,
            };
            let text = std::fs::read_to_string(&self.creds_file).map_err(|e| creds_error(e.to_string()))?;
            options = options
                .credentials(&text)
                .map_err(|e| creds_error(format!("not a NATS .creds file: {e}")))?;
        }
        if !self.ca_file.is_empty() {
            options = options.add_root_certificates(Path::new(&self.ca_file).to_path_buf());
        }
        if !self.cert_file.is_empty() {
            options = options.add_client_certificate(self.cert_file.clone().into(), self.key_file.clone().into());
        }
        if self.require_tls {
            options = options.require_tls(true);
        }
        Ok(options)
    }

    /// What to check when the server refuses the credentials, naming the keys in use.
    fn rejection_hint(&self) -> String {
        let check = if !self.user.is_empty() {
            format!(
                "check [nats] user/password (BATON_NATS__USER, BATON_NATS__PASSWORD; user `{}`)",
                self.user
            )
        } else if self.token.is_set() {
            "check [nats] token (BATON_NATS__TOKEN)".to_string()
        } else if self.nkey_seed.is_set() {
            "check [nats] nkey_seed (BATON_NATS__NKEY_SEED): its public key must be a user in the server's \
             authorization"
                .to_string()
        } else if !self.creds_file.is_empty() {
            format!(
                "check [nats] creds_file `{}` (BATON_NATS__CREDS_FILE): is it for this server's operator and not expired?",
                self.creds_file
            )
        } else {
            return "the server requires credentials and none are set: set [nats] user and password, token, \
                    nkey_seed or creds_file (e.g. BATON_NATS__USER and BATON_NATS__PASSWORD)"
                .to_string();
        };
        format!("{check}; retrying cannot help, so Baton does not")
    }

    /// What to check after a failed TLS handshake, by what failed: our check of the server's
    /// certificate, or the server's check of ours (it sends an alert).
    fn tls_hint(&self, cause: Option<&rustls::Error>) -> String {
        let server_side = matches!(cause, Some(rustls::Error::AlertReceived(_)));
        let not_tls = matches!(cause, Some(rustls::Error::InvalidMessage(_)));
        let mut hint = if not_tls {
            "the server does not answer in TLS: enable TLS on the server (a tls block in its config) or, if \
             plain text is intended, set [nats] require_tls = false and use a nats:// URL"
                .to_string()
        } else if server_side {
            if self.cert_file.is_empty() {
                "the server verifies clients: set [nats] cert_file and key_file (BATON_NATS__CERT_FILE, \
                 BATON_NATS__KEY_FILE) to a certificate signed by a CA it trusts"
                    .to_string()
            } else {
                format!(
                    "the server refused the client certificate: check [nats] cert_file `{}` and key_file (signed by \
                     a CA in the server's tls.ca_file, not expired, key matches)",
                    self.cert_file
                )
            }
        } else {
            let ca = if self.ca_file.is_empty() {
                "no ca_file is set, so the system's roots are used".to_string()
            } else {
                format!("ca_file is `{}`", self.ca_file)
            };
            format!(
                "check [nats] ca_file (BATON_NATS__CA_FILE): it must hold the CA that signed the server's \
                 certificate ({ca}), and the URL's host must be one of the certificate's names"
            )
        };
        if self.require_tls && !not_tls {
            hint.push_str("; require_tls is on, so a server without TLS is refused too");
        }
        hint.push_str("; retrying cannot help, so Baton does not");
        hint
    }
}

/// Connects to the NATS server(s) in `settings.url` with `settings`' credentials and TLS.
///
/// `configure` adds the caller's own options (event callbacks, reconnect delays) to
/// [`NatsSettings::connect_options`]; it is called once per attempt. While the server is
/// unreachable, [`connect`] retries with a growing delay (up to 2 s), logging a warning at
/// the first failure and every 10 s after, until `retry` says to stop. A rejected credential,
/// a TLS failure or a bad URL ends it at once.
pub async fn connect(
    settings: &NatsSettings,
    retry: Retry,
    configure: impl Fn(ConnectOptions) -> ConnectOptions,
) -> Result<async_nats::Client, NatsConnectError> {
    let url = settings.url.as_str();
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut last_warning: Option<Instant> = None;
    loop {
        let options = configure(settings.connect_options()?);
        let error = match options.connect(url).await {
            Ok(client) => {
                if last_warning.is_some() {
                    tracing::info!(
                        url,
                        waited_s = start.elapsed().as_secs(),
                        "NATS is reachable now; connected"
                    );
                }
                return Ok(client);
            }
            Err(e) => e,
        };
        let reason = error.to_string();
        match error.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                return Err(NatsConnectError::Rejected {
                    url: url.to_string(),
                    reason: error.kind().to_string(),
                    hint: settings.rejection_hint(),
                })
            }
            ConnectErrorKind::Tls => {
                return Err(NatsConnectError::Tls {
                    url: url.to_string(),
                    reason,
                    hint: settings.tls_hint(None),
                })
            }
            // async-nats reports a failed handshake as an I/O error; its cause says otherwise.
            ConnectErrorKind::Io if tls_cause(&error).is_some() => {
                return Err(NatsConnectError::Tls {
                    url: url.to_string(),
                    reason,
                    hint: settings.tls_hint(tls_cause(&error)),
                })
            }
            ConnectErrorKind::ServerParse => {
                return Err(NatsConnectError::Url {
                    url: url.to_string(),
                    reason,
                })
            }
            _ => {}
        }
        if let Retry::For(limit) = retry {
            if start.elapsed() + delay > limit {
                return Err(NatsConnectError::Unreachable {
                    url: url.to_string(),
                    after: limit,
                    last: reason,
                });
            }
        }
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                url,
                error = reason,
                waited_s = start.elapsed().as_secs(),
                "NATS is unreachable; retrying until it answers (a wrong nats.url looks like this too)"
            );
            last_warning = Some(Instant::now());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The TLS error behind a connection failure, if there is one.
fn tls_cause(error: &async_nats::ConnectError) -> Option<&rustls::Error> {
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_retried_until_the_bound() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = NatsSettings {
            url: format!("nats://127.0.0.1:{port}"),
            ..NatsSettings::default()
        };
        let start = Instant::now();
        let err = connect(&settings, Retry::For(Duration::from_millis(700)), |o| o)
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, NatsConnectError::Unreachable { .. }), "{err}");
        assert!(!err.is_rejected());
        // Several attempts (100, 200 ms… apart), then the bound.
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "no NATS server answered at nats://127.0.0.1:{port} within 0.7 s ("
            )),
            "{text}"
        );
        assert!(
            text.ends_with("is nats-server running, and is nats.url (BATON_NATS__URL) right?"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bad_settings_fail_before_any_attempt() {
        let settings = NatsSettings {
            password: "p".into(),
            ..NatsSettings::default()
        };
        let err = connect(&settings, Retry::Forever, |o| o).await.unwrap_err();
        assert!(matches!(err, NatsConnectError::Settings(_)), "{err}");
        assert!(err.to_string().contains("`nats.password`"), "{err}");
    }
}
