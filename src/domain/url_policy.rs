//! Which destination URLs and addresses Loft may send to (DESIGN §7).
//!
//! A destination is reached from inside the operator's network, so by default Loft refuses
//! everything that is not a public unicast address: loopback, private, link-local (where cloud
//! metadata services live), CGNAT, multicast, reserved and documentation ranges, and the IPv6
//! forms that embed such an IPv4 address. [`DestinationUrl::parse`] applies this to literal IPs
//! and `localhost` names when a destination is created or updated; the sender applies
//! [`check_ip`] again to every address a host name resolves to, at connect time, so that a
//! name that later resolves to `127.0.0.1` (DNS rebinding) is refused too.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// The longest destination URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What the operator allows beyond the strict default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `--allow-http-destinations`: plain `http` URLs.
    pub allow_http: bool,
    /// `--allow-private-destinations`: every address and `localhost`.
    pub allow_private: bool,
    /// Networks admitted even though they are in a forbidden range, e.g. one internal subnet.
    pub allowed_cidrs: Vec<IpNet>,
}

/// The kind of address a forbidden address is; its text is shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressCategory {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    CloudMetadata,
    SharedCgnat,
    Multicast,
    Broadcast,
    Reserved,
    Documentation,
    Benchmarking,
}

impl AddressCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressCategory::Unspecified => "unspecified address",
            AddressCategory::Loopback => "loopback address",
            AddressCategory::Private => "private address",
            AddressCategory::LinkLocal => "link-local address",
            AddressCategory::CloudMetadata => "cloud metadata address",
            AddressCategory::SharedCgnat => "shared (CGNAT) address",
            AddressCategory::Multicast => "multicast address",
            AddressCategory::Broadcast => "broadcast address",
            AddressCategory::Reserved => "reserved address",
            AddressCategory::Documentation => "documentation address",
            AddressCategory::Benchmarking => "benchmarking address",
        }
    }
}

impl fmt::Display for AddressCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address the policy refuses. `Copy` and allocation-free, since the sender's resolver
/// checks every resolved address with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{address} is a {category}")]
pub struct ForbiddenAddress {
    pub address: IpAddr,
    pub category: AddressCategory,
}

/// Refuses `ip` unless it is a public unicast address, the policy allows private
/// destinations, or it lies in one of the allowed networks. An IPv6 address that embeds an
/// IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by the IPv4 address, as that
/// is where a connection to it ends up.
pub fn check_ip(ip: IpAddr, policy: &UrlPolicy) -> Result<(), ForbiddenAddress> {
    if policy.allow_private || is_allowed(ip, policy) {
        return Ok(());
    }
    let category = match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match classify_v6(v6) {
            V6::Public => None,
            V6::Category(category) => Some(category),
            V6::Embeds(v4) if is_allowed(IpAddr::V4(v4), policy) => None,
            V6::Embeds(v4) => classify_v4(v4),
        },
    };
    match category {
        Some(category) => Err(ForbiddenAddress { address: ip, category }),
        None => Ok(()),
    }
}

fn is_allowed(ip: IpAddr, policy: &UrlPolicy) -> bool {
    policy.allowed_cidrs.iter().any(|net| net.contains(&ip))
}

/// IPv4 ranges refused, most specific first: the first that contains an address names it.
const V4_RANGES: &[([u8; 4], u8, AddressCategory)] = &[
    ([0, 0, 0, 0], 32, AddressCategory::Unspecified),
    // "This network": only valid as a source address.
    ([0, 0, 0, 0], 8, AddressCategory::Reserved),
    ([10, 0, 0, 0], 8, AddressCategory::Private),
    // Alibaba Cloud's metadata service sits inside the shared range.
    ([100, 100, 100, 200], 32, AddressCategory::CloudMetadata),
    ([100, 64, 0, 0], 10, AddressCategory::SharedCgnat),
    ([127, 0, 0, 0], 8, AddressCategory::Loopback),
    // AWS, GCP, Azure, OpenStack and others; AWS ECS task metadata.
    ([169, 254, 169, 254], 32, AddressCategory::CloudMetadata),
    ([169, 254, 170, 2], 32, AddressCategory::CloudMetadata),
    ([169, 254, 0, 0], 16, AddressCategory::LinkLocal),
    ([172, 16, 0, 0], 12, AddressCategory::Private),
    ([192, 0, 0, 0], 24, AddressCategory::Reserved),
    ([192, 0, 2, 0], 24, AddressCategory::Documentation),
    ([192, 88, 99, 0], 24, AddressCategory::Reserved),
    ([192, 168, 0, 0], 16, AddressCategory::Private),
    ([198, 18, 0, 0], 15, AddressCategory::Benchmarking),
    ([198, 51, 100, 0], 24, AddressCategory::Documentation),
    ([203, 0, 113, 0], 24, AddressCategory::Documentation),
    ([224, 0, 0, 0], 4, AddressCategory::Multicast),
    ([255, 255, 255, 255], 32, AddressCategory::Broadcast),
    ([240, 0, 0, 0], 4, AddressCategory::Reserved),
];

fn classify_v4(ip: Ipv4Addr) -> Option<AddressCategory> {
    let bits = u32::from(ip);
    V4_RANGES.iter().find_map(|&(net, len, category)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (bits & mask == u32::from_be_bytes(net)).then_some(category)
    })
}

enum V6 {
    Public,
    Category(AddressCategory),
    Embeds(Ipv4Addr),
}

/// IPv6 ranges refused outright, most specific first.
const V6_RANGES: &[(u128, u8, AddressCategory)] = &[
    (0, 128, AddressCategory::Unspecified),
    (1, 128, AddressCategory::Loopback),
    // Local-use NAT64 (RFC 8215): translates into the operator's own network.
    (0x0064_ff9b_0001 << 80, 48, AddressCategory::Private),
    // Discard-only (RFC 6666).
    (0x0100 << 112, 64, AddressCategory::Reserved),
    (0x2001_0002 << 96, 48, AddressCategory::Benchmarking),
    (0x2001_0db8 << 96, 32, AddressCategory::Documentation),
    // AWS's IPv6 instance metadata service, inside the unique local range.
    (0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128, AddressCategory::CloudMetadata),
    // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
    (0xfc00 << 112, 7, AddressCategory::Private),
    (0xfe80 << 112, 10, AddressCategory::LinkLocal),
    (0xfec0 << 112, 10, AddressCategory::Private),
    (0xff00 << 112, 8, AddressCategory::Multicast),
];

fn classify_v6(ip: Ipv6Addr) -> V6 {
    let bits = u128::from(ip);
    let in_net = |net: u128, len: u8| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        bits & mask == net
    };
    if let Some(&(_, _, category)) = V6_RANGES.iter().find(|&&(net, len, _)| in_net(net, len)) {
        return V6::Category(category);
    }
    let low32 = Ipv4Addr::from(bits as u32);
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d, RFC 2765), NAT64
    // (64:ff9b::a.b.c.d) and the deprecated IPv4-compatible form (::a.b.c.d).
    if in_net(0xffff << 32, 96) || in_net(0xffff << 48, 96) || in_net(0x0064_ff9b << 96, 96) || in_net(0, 96) {
        return V6::Embeds(low32);
    }
    // 6to4 (2002:AABB:CCDD::/48) routes to the IPv4 address in bits 16..48.
    if in_net(0x2002 << 112, 16) {
        return V6::Embeds(Ipv4Addr::from((bits >> 80) as u32));
    }
    V6::Public
}

/// A destination URL that passed the policy in force when it was parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestinationUrl(Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    #[error("URL is {len} bytes long; the limit is {MAX_URL_LEN}")]
    TooLong { len: usize },
    #[error("not a valid absolute URL: {0}")]
    Invalid(#[from] url::ParseError),
    #[error("URL scheme must be https, not {scheme:?}")]
    Scheme { scheme: String },
    #[error("plain http destinations are not allowed on this server; use https")]
    HttpNotAllowed,
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not contain a username or password; put credentials in the destination's auth")]
    Credentials,
    #[error("URL must not contain a fragment (#...), which is never sent to the receiver")]
    Fragment,
    #[error("{host} is a local host name; private destinations are not allowed on this server")]
    LocalHost { host: String },
    #[error("destination address not allowed: {0}")]
    Forbidden(#[from] ForbiddenAddress),
}

impl DestinationUrl {
    pub fn parse(s: &str, policy: &UrlPolicy) -> Result<DestinationUrl, UrlPolicyError> {
        if s.len() > MAX_URL_LEN {
            return Err(UrlPolicyError::TooLong { len: s.len() });
        }
        let url = Url::parse(s)?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(UrlPolicyError::HttpNotAllowed),
            other => {
                return Err(UrlPolicyError::Scheme { scheme: other.to_owned() });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlPolicyError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(UrlPolicyError::Fragment);
        }
        // The url crate has already turned every spelling of an IPv4 address (`0x7f.1`,
        // `2130706433`) into `Host::Ipv4`, so a literal address cannot pass as a name.
        match url.host() {
            None => return Err(UrlPolicyError::NoHost),
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
            Some(Host::Domain(name)) => {
                // Special-scheme hosts arrive lower-cased; a trailing dot names the same host.
                let name = name.strip_suffix('.').unwrap_or(name);
                let local = name == "localhost" || name.ends_with(".localhost");
                if local && !policy.allow_private {
                    return Err(UrlPolicyError::LocalHost { host: name.to_owned() });
                }
            }
        }
        Ok(DestinationUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn into_url(self) -> Url {
        self.0
    }
}

impl fmt::Display for DestinationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl AsRef<str> for DestinationUrl {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    fn category(ip: &str) -> Option<AddressCategory> {
        check_ip(ip.parse().unwrap(), &strict()).err().map(|e| e.category)
    }

    #[test]
    fn forbidden_addresses_by_category() {
        use AddressCategory::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("169.254.170.2", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("fd00:ec2::254", CloudMetadata),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("0.0.0.0", Unspecified),
            ("::", Unspecified),
            ("255.255.255.255", Broadcast),
            ("0.1.2.3", Reserved),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("192.0.0.8", Reserved),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("64:ff9b:1::a00:1", Private),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("100::1", Reserved),
            // IPv6 forms of forbidden IPv4 addresses.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:0:192.168.0.1", Private),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", CloudMetadata),
            ("2002:7f00:1::", Loopback),
            ("2002:a00:1::1", Private),
        ];
        for (ip, want) in cases {
            assert_eq!(category(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::8.8.8.8",
        ] {
            assert_eq!(category(ip), None, "{ip}");
        }
    }

    #[test]
    fn error_names_the_address_and_category() {
        let err = check_ip("169.254.169.254".parse().unwrap(), &strict()).unwrap_err();
        assert_eq!(err.to_string(), "169.254.169.254 is a cloud metadata address");
        let err = check_ip("::ffff:127.0.0.1".parse().unwrap(), &strict()).unwrap_err();
        assert_eq!(err.to_string(), "::ffff:127.0.0.1 is a loopback address");
    }

    #[test]
    fn allow_private_admits_everything() {
        let policy = UrlPolicy { allow_private: true, ..UrlPolicy::default() };
        for ip in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fd00::1"] {
            assert!(check_ip(ip.parse().unwrap(), &policy).is_ok(), "{ip}");
        }
    }

    #[test]
    fn allowed_cidrs_admit_chosen_networks_only() {
        let policy = UrlPolicy {
            allowed_cidrs: vec!["10.1.0.0/16".parse().unwrap(), "fd00:1::/32".parse().unwrap()],
            ..UrlPolicy::default()
        };
        let ok = |ip: &str| check_ip(ip.parse().unwrap(), &policy).is_ok();
        assert!(ok("10.1.2.3"));
        assert!(ok("::ffff:10.1.2.3"), "the mapped form of an allowed address");
        assert!(ok("64:ff9b::a01:203"), "the NAT64 form of an allowed address");
        assert!(ok("fd00:1::5"));
        assert!(!ok("10.2.0.1"));
        assert!(!ok("::ffff:10.2.0.1"));
        assert!(!ok("127.0.0.1"));
        assert!(!ok("fd00:2::5"));
    }

    fn parse(s: &str) -> Result<DestinationUrl, UrlPolicyError> {
        DestinationUrl::parse(s, &strict())
    }

    #[test]
    fn accepts_public_https_urls() {
        for s in [
            "https://example.com/hook",
            "https://example.com:8443/a/b?c=d",
            "https://8.8.8.8/x",
            "https://[2606:4700:4700::1111]/x",
            "https://EXAMPLE.com./hook",
        ] {
            let url = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(url.as_str().starts_with("https://"));
        }
        assert_eq!(parse("https://Example.COM/Path").unwrap().to_string(), "https://example.com/Path");
    }

    #[test]
    fn refuses_bad_urls_with_precise_errors() {
        assert!(matches!(parse("/relative"), Err(UrlPolicyError::Invalid(_))));
        assert!(matches!(parse(""), Err(UrlPolicyError::Invalid(_))));
        assert!(matches!(parse("https://"), Err(UrlPolicyError::Invalid(_))));
        assert_eq!(parse("http://example.com"), Err(UrlPolicyError::HttpNotAllowed));
        assert_eq!(parse("ftp://example.com"), Err(UrlPolicyError::Scheme { scheme: "ftp".to_owned() }));
        assert_eq!(parse("mailto:someone@example.com"), Err(UrlPolicyError::Scheme { scheme: "mailto".to_owned() }));
        assert_eq!(parse("https://user:pw@example.com/"), Err(UrlPolicyError::Credentials));
        assert_eq!(parse("https://user@example.com/"), Err(UrlPolicyError::Credentials));
        assert_eq!(parse("https://example.com/#frag"), Err(UrlPolicyError::Fragment));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse(&long), Err(UrlPolicyError::TooLong { len: long.len() }));
    }

    #[test]
    fn refuses_local_hosts_and_forbidden_literals() {
        for s in ["https://localhost/", "https://LOCALHOST:8080/", "https://localhost./", "https://api.localhost/"] {
            assert!(matches!(parse(s), Err(UrlPolicyError::LocalHost { .. })), "{s}");
        }
        for (s, want) in [
            ("https://127.0.0.1/", AddressCategory::Loopback),
            ("https://2130706433/", AddressCategory::Loopback),
            ("https://0x7f.1/", AddressCategory::Loopback),
            ("https://0177.0.0.1/", AddressCategory::Loopback),
            ("https://[::1]/", AddressCategory::Loopback),
            ("https://[::ffff:7f00:1]/", AddressCategory::Loopback),
            ("https://169.254.169.254/latest/meta-data", AddressCategory::CloudMetadata),
            ("https://[fd00:ec2::254]/", AddressCategory::CloudMetadata),
            ("https://10.0.0.5/", AddressCategory::Private),
            ("https://0.0.0.0/", AddressCategory::Unspecified),
        ] {
            match parse(s) {
                Err(UrlPolicyError::Forbidden(f)) => assert_eq!(f.category, want, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(
            parse("https://10.0.0.5/").unwrap_err().to_string(),
            "destination address not allowed: 10.0.0.5 is a private address"
        );
    }

    #[test]
    fn relaxed_policies() {
        let dev = UrlPolicy { allow_http: true, allow_private: true, allowed_cidrs: Vec::new() };
        for s in ["http://localhost:3000/hook", "http://127.0.0.1:3000/", "https://10.0.0.1/"] {
            DestinationUrl::parse(s, &dev).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let http_only = UrlPolicy { allow_http: true, ..UrlPolicy::default() };
        DestinationUrl::parse("http://example.com/", &http_only).unwrap();
        assert!(DestinationUrl::parse("http://127.0.0.1/", &http_only).is_err());
        let subnet = UrlPolicy { allowed_cidrs: vec!["10.0.0.0/24".parse().unwrap()], ..UrlPolicy::default() };
        DestinationUrl::parse("https://10.0.0.9/", &subnet).unwrap();
        assert!(DestinationUrl::parse("https://10.0.1.9/", &subnet).is_err());
        // An allowed network admits addresses, not the name localhost.
        let loopback = UrlPolicy { allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()], ..UrlPolicy::default() };
        DestinationUrl::parse("https://127.0.0.1/", &loopback).unwrap();
        assert!(DestinationUrl::parse("https://localhost/", &loopback).is_err());
    }

    fn v4_in(net: [u8; 4], len: u32) -> impl Strategy<Value = Ipv4Addr> {
        let base = u32::from_be_bytes(net);
        let host_bits = if len == 0 { u32::MAX } else { (1u32 << (32 - len)) - 1 };
        any::<u32>().prop_map(move |r| Ipv4Addr::from(base | (r & host_bits)))
    }

    fn private_v4() -> impl Strategy<Value = (Ipv4Addr, AddressCategory)> {
        prop_oneof![
            v4_in([10, 0, 0, 0], 8).prop_map(|ip| (ip, AddressCategory::Private)),
            v4_in([172, 16, 0, 0], 12).prop_map(|ip| (ip, AddressCategory::Private)),
            v4_in([192, 168, 0, 0], 16).prop_map(|ip| (ip, AddressCategory::Private)),
            v4_in([127, 0, 0, 0], 8).prop_map(|ip| (ip, AddressCategory::Loopback)),
            v4_in([224, 0, 0, 0], 4).prop_map(|ip| (ip, AddressCategory::Multicast)),
        ]
    }

    proptest! {
        #[test]
        fn private_ranges_are_always_refused((ip, want) in private_v4()) {
            let err = check_ip(IpAddr::V4(ip), &strict()).unwrap_err();
            prop_assert_eq!(err.category, want);
            // The same address spelled as IPv6 is refused for the same reason.
            for v6 in [ip.to_ipv6_mapped(), ip.to_ipv6_compatible()] {
                let err = check_ip(IpAddr::V6(v6), &strict()).unwrap_err();
                prop_assert_eq!(err.category, want);
            }
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(u32::from(ip)));
            prop_assert_eq!(check_ip(IpAddr::V6(nat64), &strict()).unwrap_err().category, want);
            // And in a URL.
            let url = format!("https://{ip}/hook");
            prop_assert!(matches!(parse(&url), Err(UrlPolicyError::Forbidden(_))));
        }

        #[test]
        fn every_ipv6_embedding_agrees_with_ipv4(raw in any::<u32>()) {
            let ip = Ipv4Addr::from(raw);
            let v4 = check_ip(IpAddr::V4(ip), &strict()).map_err(|e| e.category);
            let mapped = check_ip(IpAddr::V6(ip.to_ipv6_mapped()), &strict()).map_err(|e| e.category);
            prop_assert_eq!(v4, mapped);
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(raw));
            prop_assert_eq!(v4, check_ip(IpAddr::V6(nat64), &strict()).map_err(|e| e.category));
        }

        #[test]
        fn allow_private_admits_any_address(raw in any::<u128>()) {
            let policy = UrlPolicy { allow_private: true, ..UrlPolicy::default() };
            prop_assert!(check_ip(IpAddr::V6(Ipv6Addr::from(raw)), &policy).is_ok());
            prop_assert!(check_ip(IpAddr::V4(Ipv4Addr::from(raw as u32)), &policy).is_ok());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
            let _ = parse(&format!("https://{s}"));
        }
    }
}
