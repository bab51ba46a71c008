//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, which the
//! MCP authorization spec prefers to dynamic registration): a client whose `client_id` is
//! an https URL is described by the JSON document at that URL. writ fetches it when the
//! client first appears at `/oauth/authorize`, within limits (5 KiB, 5 seconds, no
//! redirects, public addresses only), keeps it for 5 minutes, and records the client as
//! an agent (unreviewed, a public client: such a client holds no shared secret) so its
//! tokens have a holder the ledger knows.
//!
//! Fetching a URL a stranger names is a server-side request forgery risk: the URL must
//! be https on the default port, its host must resolve only to public addresses (checked
//! on the addresses actually connected to, by a resolver that drops the others), and
//! nothing but a small JSON document is read. `--client-metadata-loopback` lifts the
//! address rule for loopback, and allows http there, for development and writ's tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Largest document read.
pub const DOCUMENT_BYTES_MAX: usize = 5 * 1024;
/// Longest a fetch may take.
pub const FETCH_SECONDS_MAX: u64 = 5;
/// How long a fetched document is used before it is fetched again.
pub const CACHE_SECONDS: u64 = 300;
/// Most documents kept at once.
pub const CACHE_ENTRIES_MAX: usize = 1024;

/// A client's metadata document, as far as writ reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Document {
    /// Must be the document's own URL.
    pub client_id: String,
    /// Shown on the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Where codes may go.
    pub redirect_uris: Vec<String>,
    /// `none` (absent means the same): a document names no shared secret.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Space-separated scopes the client may ask for.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Fetches and caches metadata documents.
pub struct ClientMetadata {
    client: reqwest::Client,
    loopback: bool,
    cache: tokio::sync::Mutex<HashMap<String, (Instant, Arc<Document>)>>,
}

impl std::fmt::Debug for ClientMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetadata")
            .field("loopback", &self.loopback)
            .finish()
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// Resolves names to the addresses writ may fetch from: public ones (and loopback ones
/// when allowed), so a name cannot point the fetch inside the network.
struct PublicOnly {
    loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let loopback = self.loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()) || (loopback && addr.ip().is_loopback()))
                .collect();
            if found.is_empty() {
                return Err(format!("`{host}` resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

impl ClientMetadata {
    /// A fetcher; `loopback` also allows documents served over http on loopback.
    pub fn new(loopback: bool) -> Result<ClientMetadata, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(FETCH_SECONDS_MAX))
            .connect_timeout(Duration::from_secs(FETCH_SECONDS_MAX))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .dns_resolver(Arc::new(PublicOnly { loopback }))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(ClientMetadata {
            client,
            loopback,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Whether `client_id` names a metadata document (rather than a registered client).
    pub fn names_document(client_id: &str) -> bool {
        client_id.starts_with("https://") || client_id.starts_with("http://")
    }

    /// Checks the URL itself (draft §3): https, a path, no fragment, credentials or dot
    /// segments; http only on loopback when allowed.
    fn check_url(&self, client_id: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(client_id)
            .map_err(|_| format!("client_id `{client_id}` is not a URL"))?;
        let loopback_host = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        match url.scheme() {
            "https" => {}
            "http" if self.loopback && loopback_host => {}
            _ => return Err("a client_id URL must be https".into()),
        }
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err("a client_id URL carries no fragment and no credentials".into());
        }
        let path = url.path();
        if path == "/" || path.is_empty() {
            return Err("a client_id URL must have a path".into());
        }
        if client_id
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err("a client_id URL has no dot segments".into());
        }
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host()
            && !(self.loopback && loopback_host)
        {
            return Err("a client_id URL names its host by name, not by address".into());
        }
        Ok(url)
    }

    /// The client's document, from the cache or fetched now.
    pub async fn document(&self, client_id: &str) -> Result<Arc<Document>, String> {
        {
            let cache = self.cache.lock().await;
            if let Some((at, document)) = cache.get(client_id)
                && at.elapsed() < Duration::from_secs(CACHE_SECONDS)
            {
                return Ok(document.clone());
            }
        }
        let url = self.check_url(client_id)?;
        let document = Arc::new(self.fetch(url, client_id).await?);
        let mut cache = self.cache.lock().await;
        if cache.len() >= CACHE_ENTRIES_MAX {
            let ttl = Duration::from_secs(CACHE_SECONDS);
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.clear();
            }
        }
        cache.insert(client_id.to_owned(), (Instant::now(), document.clone()));
        Ok(document)
    }

    async fn fetch(&self, url: url::Url, client_id: &str) -> Result<Document, String> {
        let failed =
            |why: String| format!("the client's metadata document could not be fetched: {why}");
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| failed(err.to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(failed(format!("it answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| failed(err.to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > DOCUMENT_BYTES_MAX {
                return Err(failed(format!(
                    "it is larger than {DOCUMENT_BYTES_MAX} bytes"
                )));
            }
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|err| format!("the client's metadata document is not valid: {err}"))?;
        if document.client_id != client_id {
            return Err(
                "the client's metadata document names another client_id than its URL".into(),
            );
        }
        if document.redirect_uris.is_empty() {
            return Err("the client's metadata document names no redirect_uris".into());
        }
        match document.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(format!(
                    "the client's metadata document asks for token_endpoint_auth_method `{other}`; writ takes `none` (PKCE) from such clients"
                ));
            }
        }
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                !is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(
                is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
    }

    #[test]
    fn client_id_urls_are_held_to_the_draft() {
        let strict = ClientMetadata::new(false).unwrap_or_else(|e| panic!("{e}"));
        for bad in [
            "http://client.example/meta.json",
            "https://client.example/",
            "https://client.example/a/../meta.json",
            "https://user:pw@client.example/meta.json",
            "https://client.example/meta.json#x",
            "https://10.0.0.1/meta.json",
            "http://127.0.0.1:8000/meta.json",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        assert!(strict.check_url("https://client.example/meta.json").is_ok());
        let loopback = ClientMetadata::new(true).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loopback
                .check_url("http://127.0.0.1:8000/meta.json")
                .is_ok()
        );
    }
}
