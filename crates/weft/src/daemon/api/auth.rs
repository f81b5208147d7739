//! The API's secret token: who may read the node's peers, endpoints,
//! topology and metrics.
//!
//! The API listens on a TCP port, which every local user can reach (the
//! control socket, a file, is root's alone). So every request must carry
//! the token from `[api] token_file`:
//!
//! - `Authorization: Bearer TOKEN` (scripts, curl, Prometheus'
//!   `authorization` setting); or
//! - the cookie a browser got from a URL with `?token=TOKEN` (what `weft
//!   map` prints): such a request is answered with `303 See Other` to the
//!   same URL without the token, setting the cookie `weft_token_PORT`
//!   (HttpOnly, SameSite=Strict; browsers share cookies between the ports
//!   of one host, hence the port in the name), so the token leaves the
//!   address bar and the page's requests carry the cookie;
//! - `/metrics` from a loopback client needs nothing with `[api]
//!   public_metrics = true`.
//!
//! Anything else gets `401` with `WWW-Authenticate: Bearer`. Tokens are
//! compared in constant time.
//!
//! The file: created at start if missing, holding 32 random bytes as 64
//! hex digits, mode 0640, owner the daemon (root), group `weft` if that
//! group exists (so its members can use `weft map` without root). An
//! existing file is used as it is (any 32 to 256 visible characters, so an
//! operator may set one); one that every user can read gets a warning.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use tracing::{info, warn};

use super::AppState;
use super::connections::Peer;
use crate::config::DEFAULT_DAEMON_USER;
use crate::pki;

/// The query parameter that trades a token for a cookie.
const TOKEN_PARAMETER: &str = "token";
/// Start of the cookie's name; the listening port follows.
const COOKIE_PREFIX: &str = "weft_token";
/// Shortest and longest token accepted from the file.
const TOKEN_LENGTH: std::ops::RangeInclusive<usize> = 32..=256;

/// The API's bearer token.
#[derive(Clone)]
pub(crate) struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// The token in `path`, made first if the file does not exist.
    pub(super) fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match read_token(path) {
            Ok(token) => {
                warn_if_exposed(path);
                return Ok(token);
            }
            Err(error) if !is_not_found(&error) => return Err(error),
            Err(_) => {}
        }
        let token = Self(hex(&pki::random_bytes::<32>()?));
        match create(path, &token) {
            Ok(()) => {
                info!(path = %path.display(), "made the API token");
                Ok(token)
            }
            // Another daemon made it meanwhile: use that one.
            Err(error) if is_already_there(&error) => read_token(path),
            Err(error) => Err(error),
        }
    }

    /// The token as sent in headers and URLs.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is the token, in time that does not depend on
    /// where they differ.
    fn matches(&self, offered: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), offered.as_bytes());
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs)
                .fold(0u8, |difference, (a, b)| difference | (a ^ b))
                == 0
    }
}

/// Reads the token in `path`, checking that it looks like one.
pub(crate) fn read_token(path: &Path) -> anyhow::Result<ApiToken> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API token {}", path.display()))?;
    let token = text.trim();
    if !TOKEN_LENGTH.contains(&token.len()) || !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!(
            "{} does not hold an API token (32 to 256 visible characters; remove it to get a new one)",
            path.display()
        );
    }
    Ok(ApiToken(token.to_owned()))
}

/// Checks the token of a request; see the module doc.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let token = &state.token;
    if state.public_metrics && request.uri().path() == "/metrics" {
        let from_loopback = request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .is_some_and(|ConnectInfo(peer)| peer.remote.ip().is_loopback());
        if from_loopback {
            return next.run(request).await;
        }
    }
    if let Some(query) = request.uri().query()
        && let Some(offered) = query_token(query)
    {
        if !token.matches(offered) {
            return unauthorized(&state);
        }
        return trade_for_cookie(request.uri().path(), query, request.headers(), token);
    }
    let headers = request.headers();
    let offered = bearer(headers).into_iter().chain(cookies(headers));
    if offered.into_iter().any(|offered| token.matches(offered)) {
        return next.run(request).await;
    }
    unauthorized(&state)
}

fn unauthorized(state: &AppState) -> HttpResponse {
    state
        .unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut response = super::error(
        StatusCode::UNAUTHORIZED,
        "this API needs its token: `Authorization: Bearer TOKEN` with the token in [api] token_file; for the map, open the URL `weft map` prints",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"weft\""),
    );
    response
}

/// The value of the `token` parameter of a query, as written.
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == TOKEN_PARAMETER)
        .map(|(_, value)| value)
}

/// `303 See Other` to `path` with the query less its token, setting the
/// cookie.
fn trade_for_cookie(
    path: &str,
    query: &str,
    headers: &HeaderMap,
    token: &ApiToken,
) -> HttpResponse {
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map_or(*pair, |(name, _)| name) != TOKEN_PARAMETER
        })
        .collect();
    // A path starting with `//` would be read as another host.
    let path = if path.starts_with("//") { "/" } else { path };
    let location = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        cookie_name(headers),
        token.as_str()
    );
    let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) else {
        return super::error(StatusCode::BAD_REQUEST, "the URL cannot be redirected to");
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}

/// `weft_token_PORT`, with the port of the request's `Host`.
fn cookie_name(headers: &HeaderMap) -> String {
    let port = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    match port {
        Some(port) => format!("{COOKIE_PREFIX}_{port}"),
        None => COOKIE_PREFIX.to_owned(),
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The values of every `weft_token*` cookie.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.starts_with(COOKIE_PREFIX))
        .map(|(_, value)| value)
}

/// Writes the token to a temporary file with its final mode and group,
/// then links it into place, so nobody ever sees a partial or open file
/// and an existing one is never replaced.
fn create(path: &Path, token: &ApiToken) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary: PathBuf = directory.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_private(&temporary, token).and_then(|()| {
        std::fs::hard_link(&temporary, path)
            .with_context(|| format!("cannot create the API token {}", path.display()))
    });
    let _ = std::fs::remove_file(&temporary);
    result
}

fn write_private(path: &Path, token: &ApiToken) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{}\n", token.as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name(DEFAULT_DAEMON_USER) {
        std::os::unix::fs::fchown(&file, None, Some(group.gid.as_raw())).with_context(|| {
            format!(
                "cannot give {} to group {DEFAULT_DAEMON_USER}",
                path.display()
            )
        })?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o640))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// A token file every user may read is a mistake worth a warning, as for
/// the node's key.
fn warn_if_exposed(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o007 != 0
    {
        warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the API token is readable by every user; chmod 640 it"
        );
    }
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::NotFound)
}

fn is_already_there(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_missing_token_file_is_made_private_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("weft-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.token");
        let _ = std::fs::remove_file(&path);
        let made = ApiToken::load_or_create(&path).unwrap();
        assert_eq!(made.as_str().len(), 64);
        assert!(made.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o640);
        assert_eq!(metadata.uid(), nix::unistd::geteuid().as_raw());
        let again = ApiToken::load_or_create(&path).unwrap();
        assert_eq!(again.as_str(), made.as_str());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::write(&path, "short\n").unwrap();
        let error = ApiToken::load_or_create(&path).unwrap_err();
        assert!(
            error.to_string().contains("does not hold an API token"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_match_only_exactly() {
        let token = ApiToken("a".repeat(64));
        assert!(token.matches(&"a".repeat(64)));
        assert!(!token.matches(&"a".repeat(63)));
        assert!(!token.matches(&format!("{}b", "a".repeat(63))));
        assert!(!token.matches(""));
    }

    #[test]
    fn bearer_headers_and_cookies_are_read() {
        let map = headers(&[
            (header::AUTHORIZATION, "bearer  secret-1 "),
            (header::COOKIE, "other=1; weft_token_4880=secret-2"),
            (header::COOKIE, "weft_token=secret-3"),
        ]);
        assert_eq!(bearer(&map), Some("secret-1"));
        assert_eq!(cookies(&map).collect::<Vec<_>>(), ["secret-2", "secret-3"]);
        assert_eq!(
            bearer(&headers(&[(header::AUTHORIZATION, "Basic x")])),
            None
        );
    }

    #[test]
    fn a_token_in_the_url_becomes_a_cookie_and_leaves_the_url() {
        let token = ApiToken("t".repeat(32));
        assert_eq!(query_token("destination=h1&token=abc"), Some("abc"));
        assert_eq!(query_token("tokens=1"), None);
        let host = headers(&[(header::HOST, "127.0.0.1:4880")]);
        let response =
            trade_for_cookie("/", "token=x&destination=h1&group=239.1.2.3", &host, &token);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "/?destination=h1&group=239.1.2.3"
        );
        assert_eq!(
            response.headers()[header::SET_COOKIE],
            format!(
                "weft_token_4880={}; Path=/; HttpOnly; SameSite=Strict",
                token.as_str()
            )
        );
        let response = trade_for_cookie("//evil.example/", "token=x", &HeaderMap::new(), &token);
        assert_eq!(response.headers()[header::LOCATION], "/");
        assert!(
            response.headers()[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .starts_with("weft_token=")
        );
    }
}
