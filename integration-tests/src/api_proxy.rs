//! A Docker API version shim for engines older than testcontainers' client.
//!
//! testcontainers 0.27 talks to Docker through bollard 0.20, which puts API version 1.52 in every
//! request path (`/v1.52/containers/create`) and never negotiates. Engines before 25.0 reject a
//! version newer than their own with `client version 1.52 is too new. Maximum supported API
//! version is 1.41` (Debian 12's docker.io 20.10 is such an engine). Everything the tests ask for
//! exists in those older APIs, so this shim sits on a private Unix socket and rewrites the version
//! in each request line to the engine's; bodies, responses and upgraded (hijacked) streams pass
//! through untouched. [`crate::engine`] starts it only when the engine needs it and points
//! `DOCKER_HOST` at it.
//!
//! Requests are framed just enough to find the next request line on a kept-alive connection:
//! `Content-Length` bodies, chunked bodies, and `Upgrade` (after which bytes are copied raw).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Starts the shim on `listen`, forwarding to the engine socket `upstream` with API version
/// `version` (e.g. `"1.41"`). It runs on its own thread for the rest of the process, because each
/// `#[tokio::test]` has a runtime of its own that ends with the test.
pub fn spawn(listen: &Path, upstream: PathBuf, version: String) -> io::Result<()> {
    let _ = std::fs::remove_file(listen);
    let std_listener = std::os::unix::net::UnixListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("docker-api-shim".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the Docker API shim");
            rt.block_on(async move {
                let listener = UnixListener::from_std(std_listener).expect("shim listener");
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (upstream, version) = (upstream.clone(), version.clone());
                    tokio::spawn(async move {
                        // Dropped connections are routine; a request the shim cannot frame is not.
                        if let Err(e) = relay(client, &upstream, &version).await {
                            if e.kind() == io::ErrorKind::InvalidData {
                                eprintln!("docker API shim: {e}");
                            }
                        }
                    });
                }
            });
        })?;
    Ok(())
}

/// One client connection: requests go up rewritten, responses come down as they are.
async fn relay(client: UnixStream, upstream: &Path, version: &str) -> io::Result<()> {
    let server = UnixStream::connect(upstream).await?;
    let (client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, server_tx) = server.into_split();
    let version = version.to_string();
    let up = tokio::spawn(async move { requests(BufReader::new(client_rx), server_tx, &version).await });
    let down = tokio::io::copy(&mut server_rx, &mut client_tx).await;
    let _ = client_tx.shutdown().await;
    // The engine closed (or failed): nothing more can be answered on this connection.
    up.abort();
    down.map(|_| ())
}

/// Forwards requests from `rx` to `tx`, rewriting each request line's API version.
async fn requests<R, W>(mut rx: R, mut tx: W, version: &str) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let mut line = String::new();
        if rx.read_line(&mut line).await? == 0 {
            return tx.shutdown().await;
        }
        let mut head = rewrite_request_line(&line, version);
        let (mut length, mut chunked, mut upgrade) = (0u64, false, false);
        loop {
            let mut header = String::new();
            if rx.read_line(&mut header).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside request headers",
                ));
            }
            head.push_str(&header);
            if header == "\r\n" || header == "\n" {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
            match name.as_str() {
                "content-length" => {
                    length = value
                        .parse()
                        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?
                }
                "transfer-encoding" => chunked = value.contains("chunked"),
                "upgrade" => upgrade = true,
                _ => {}
            }
        }
        tx.write_all(head.as_bytes()).await?;
        if chunked {
            copy_chunked(&mut rx, &mut tx).await?;
        } else {
            let copied = tokio::io::copy(&mut (&mut rx).take(length), &mut tx).await?;
            if copied < length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside a request body",
                ));
            }
        }
        tx.flush().await?;
        if upgrade {
            // A hijacked stream (attach, exec): raw bytes from here on.
            tokio::io::copy(&mut rx, &mut tx).await?;
            return tx.shutdown().await;
        }
    }
}

/// `GET /v1.52/containers/json HTTP/1.1` → `GET /v1.41/containers/json HTTP/1.1`. Paths without
/// a version prefix are left alone.
fn rewrite_request_line(line: &str, version: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return line.to_string();
    };
    let versioned = target
        .strip_prefix("/v")
        .and_then(|t| t.split_once('/'))
        .filter(|(v, _)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    match versioned {
        Some((_, path)) => format!("{method} /v{version}/{path} {rest}"),
        None => line.to_string(),
    }
}

/// Copies one chunked body, through its last chunk and trailers.
async fn copy_chunked<R, W>(rx: &mut R, tx: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let mut size_line = String::new();
        if rx.read_line(&mut size_line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of stream inside a chunked body",
            ));
        }
        tx.write_all(size_line.as_bytes()).await?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(hex, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size `{hex}`")))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut trailer = String::new();
                if rx.read_line(&mut trailer).await? == 0 {
                    return Ok(());
                }
                tx.write_all(trailer.as_bytes()).await?;
                if trailer == "\r\n" || trailer == "\n" {
                    return Ok(());
                }
            }
        }
        // The chunk and its CRLF.
        let copied = tokio::io::copy(&mut (&mut *rx).take(size + 2), tx).await?;
        if copied < size + 2 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of stream inside a chunk",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_version() {
        assert_eq!(
            rewrite_request_line("POST /v1.52/containers/create?name=x HTTP/1.1\r\n", "1.41"),
            "POST /v1.41/containers/create?name=x HTTP/1.1\r\n"
        );
        assert_eq!(
            rewrite_request_line("GET /_ping HTTP/1.1\r\n", "1.41"),
            "GET /_ping HTTP/1.1\r\n"
        );
        assert_eq!(
            rewrite_request_line("GET /volumes/v1/x HTTP/1.1\r\n", "1.41"),
            "GET /volumes/v1/x HTTP/1.1\r\n"
        );
    }

    #[tokio::test]
    async fn frames_kept_alive_requests_and_chunked_bodies() {
        let input = "POST /v1.52/a HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /v1.52/b HTTP/1.1\r\n\
                     Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /v1.52/c HTTP/1.1\r\n\r\n";
        let mut out = Vec::new();
        requests(BufReader::new(input.as_bytes()), &mut out, "1.41")
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), input.replace("/v1.52/", "/v1.41/"));
    }
}
