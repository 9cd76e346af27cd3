//! Outbound safety for requests Belfry makes to URLs that users or
//! producers gave it (web push endpoints now; chat and webhooks reuse it):
//! only http(s), never to loopback, link-local, private or otherwise
//! non-public addresses unless `BELFRY_OUTBOUND_ALLOW` names the host or
//! its network, and never following redirects.
//!
//! The address check runs where the connection is made: the HTTP client
//! built by [`OutboundPolicy::client`] resolves names through
//! [`OutboundPolicy`] itself, so the addresses checked are the addresses
//! connected to (a name that resolves to a public address when checked and
//! to a private one when used cannot slip through). Addresses written in
//! the URL are never resolved, so [`OutboundPolicy::check_url`] checks them
//! before the request; the client goes through no proxy.

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One entry of `BELFRY_OUTBOUND_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// A host name (lower case), allowed whatever it resolves to.
    Host(String),
    /// An address or a network (`127.0.0.1`, `10.0.0.0/8`, `::1`).
    Net(IpNet),
}

/// Which non-public destinations outgoing requests may reach anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<Allowed>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl OutboundPolicy {
    /// Parses a comma-separated list of hosts and CIDRs (or single
    /// addresses), e.g. `127.0.0.1,10.0.0.0/8,push.intranet`. Empty
    /// entries are ignored.
    pub fn parse(list: &str) -> Result<OutboundPolicy, String> {
        let mut allowed = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                allowed.push(Allowed::Net(net));
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                allowed.push(Allowed::Net(IpNet::from(ip)));
            } else if entry.contains('/') {
                return Err(format!(
                    "'{entry}' is not a network; write it as an address and prefix length, e.g. 10.0.0.0/8"
                ));
            } else if is_host_name(entry) {
                allowed.push(Allowed::Host(entry.to_ascii_lowercase()));
            } else {
                return Err(format!(
                    "'{entry}' is neither a host name, an address nor a network (e.g. push.intranet, 127.0.0.1, 10.0.0.0/8)"
                ));
            }
        }
        Ok(OutboundPolicy { allowed })
    }

    /// This policy, also allowing the host of `url`: for destinations
    /// the administrator configured (the FCM and APNs base URLs), which
    /// are trusted as configuration rather than checked like URLs that
    /// users and producers give.
    pub fn trusting(&self, url: &Url) -> OutboundPolicy {
        let mut policy = self.clone();
        match url.host() {
            Some(url::Host::Domain(name)) => policy
                .allowed
                .push(Allowed::Host(name.to_ascii_lowercase())),
            Some(url::Host::Ipv4(ip)) => policy
                .allowed
                .push(Allowed::Net(IpNet::from(IpAddr::V4(ip)))),
            Some(url::Host::Ipv6(ip)) => policy
                .allowed
                .push(Allowed::Net(IpNet::from(IpAddr::V6(ip)))),
            None => {}
        }
        policy
    }

    /// Whether nothing beyond public addresses is allowed.
    pub fn is_strict(&self) -> bool {
        self.allowed.is_empty()
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Whether a connection to `ip` (reached through `host`) is allowed.
    pub fn ip_allowed(&self, host: Option<&str>, ip: IpAddr) -> bool {
        is_public(ip)
            || host.is_some_and(|h| self.host_allowed(h))
            || self
                .allowed
                .iter()
                .any(|a| matches!(a, Allowed::Net(net) if net.contains(&canonical(ip))))
    }

    /// Checks what can be checked before connecting: an http(s) URL with
    /// a host, and an address written in it that is allowed.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!(
                "only http and https URLs are allowed, not {}:",
                url.scheme()
            )));
        }
        let ip = match url.host() {
            None => return Err(Refused("the URL has no host".into())),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        if self.ip_allowed(None, ip) {
            Ok(())
        } else {
            Err(refusal(ip))
        }
    }

    /// An HTTP client whose connections obey this policy: names resolve
    /// through it, no redirect is followed, no proxy is used.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        self.builder(timeout)
            .build()
            .expect("the HTTP client's settings are valid")
    }

    /// The builder of [`OutboundPolicy::client`], for more settings.
    pub fn builder(&self, timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(self.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
    }
}

fn refusal(ip: IpAddr) -> Refused {
    Refused(format!(
        "{ip} is a loopback, link-local, private or otherwise non-public address; \
         requests there are refused unless BELFRY_OUTBOUND_ALLOW (--outbound-allow) allows it"
    ))
}

/// Resolves a name and keeps only the addresses the policy allows; none
/// left is an error that names the refused address.
impl Resolve for OutboundPolicy {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| {
                    let ok = policy.ip_allowed(Some(&host), a.ip());
                    if !ok {
                        refused.get_or_insert(a.ip());
                    }
                    ok
                })
                .collect();
            if allowed.is_empty() {
                let why = match refused {
                    Some(ip) => format!("{host} resolves to {}", refusal(ip)),
                    None => format!("{host} resolves to no address"),
                };
                return Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, shared (CGNAT), unspecified, broadcast, multicast,
/// documentation or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, protocol assignments
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32, documentation
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b::/96 and friends (NAT64) may reach private IPv4 space
        || first == 0x0064
        // ::/96, IPv4-compatible (deprecated)
        || ip.segments()[..6].iter().all(|s| *s == 0))
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_by_default() {
        let strict = OutboundPolicy::default();
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!strict.ip_allowed(None, ip(private)), "{private}");
        }
        for public in ["8.8.8.8", "142.250.1.1", "2a00:1450:4001::1"] {
            assert!(strict.ip_allowed(None, ip(public)), "{public}");
        }
    }

    #[test]
    fn the_allow_list_takes_hosts_addresses_and_networks() {
        let p = OutboundPolicy::parse(" 127.0.0.1, 10.0.0.0/8 ,push.intranet,[::1],").unwrap();
        assert!(p.ip_allowed(None, ip("127.0.0.1")));
        assert!(!p.ip_allowed(None, ip("127.0.0.2")));
        assert!(p.ip_allowed(None, ip("10.200.0.1")));
        assert!(p.ip_allowed(None, ip("::ffff:10.0.0.1")));
        assert!(p.ip_allowed(None, ip("::1")));
        assert!(!p.ip_allowed(None, ip("192.168.0.1")));
        assert!(p.ip_allowed(Some("PUSH.intranet."), ip("192.168.0.1")));
        assert!(OutboundPolicy::parse("10.0.0.0/33").is_err());
        assert!(OutboundPolicy::parse("http://x").is_err());
        assert!(OutboundPolicy::parse("").unwrap().is_strict());
    }

    #[test]
    fn urls_must_be_http_and_written_addresses_are_checked() {
        let strict = OutboundPolicy::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(strict.check_url(&url("https://push.example.com/x")).is_ok());
        assert!(strict.check_url(&url("ftp://push.example.com/x")).is_err());
        assert!(strict.check_url(&url("http://127.0.0.1:9/x")).is_err());
        assert!(strict.check_url(&url("http://[::1]:9/x")).is_err());
        assert!(strict.check_url(&url("http://8.8.8.8/x")).is_ok());
        let open = OutboundPolicy::parse("127.0.0.0/8").unwrap();
        assert!(open.check_url(&url("http://127.0.0.1:9/x")).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect() {
        let strict = OutboundPolicy::default();
        let err = match strict.resolve("localhost".parse().unwrap()).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("localhost must be refused"),
        };
        assert!(err.contains("BELFRY_OUTBOUND_ALLOW"), "{err}");
        let allowed = OutboundPolicy::parse("localhost").unwrap();
        assert!(allowed.resolve("localhost".parse().unwrap()).await.is_ok());
        // And through a client: the request fails before connecting.
        let client = strict.client(Duration::from_secs(5));
        let e = client.get("http://localhost:9/").send().await.unwrap_err();
        let chain = format!("{:?}", e);
        assert!(chain.contains("non-public"), "{chain}");
    }
}
