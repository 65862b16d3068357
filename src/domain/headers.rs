//! Static headers a destination adds to every request (DESIGN §7).
//!
//! Refused, whatever the case of the name:
//!
//! - hop-by-hop headers, which describe one connection and are not the sender's to set;
//! - `Host` and `Content-Length`, which follow from the URL and the body, and `Content-Type`,
//!   which the subscription's transform sets;
//! - `webhook-*` and `X-Loft-*`, which carry Loft's signature and delivery metadata, so a
//!   static header cannot forge or mask them;
//! - headers that carry credentials (`Authorization`, cookies, names containing `secret`,
//!   `token`, `api-key`, `password`...): static headers are stored and shown in clear, while the
//!   destination's `auth` field is encrypted and write-only.
//!
//! Names are kept lower-case, the form `http::HeaderName` stores and HTTP/2 requires.

use std::fmt;

use http::{HeaderName, HeaderValue};

/// How many static headers one destination may have.
pub const MAX_HEADERS: usize = 50;

/// The longest header value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// The longest header name, in bytes. Real names are short; this only bounds storage.
pub const MAX_NAME_LEN: usize = 256;

/// Headers that apply to one connection rather than to the message (RFC 9110 §7.6.1, plus
/// the de-facto `Proxy-Connection` and `Keep-Alive`, and the proxy credentials that are
/// consumed by the next hop). A forwarder drops these, and also any header the `Connection`
/// header names.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    // The RFC 2616 spelling, still sent by some clients.
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (any case) is a hop-by-hop header, to be stripped when forwarding a request.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

const SECRET_NAMES: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

const SECRET_PARTS: [&str; 9] =
    ["secret", "token", "api-key", "apikey", "api_key", "password", "passwd", "credential", "private-key"];

/// The validated static headers of one destination, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticHeaders(Vec<(HeaderName, HeaderValue)>);

/// Why one header was refused. The value is never quoted: it may be something the user
/// should not have put there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRejection {
    InvalidName,
    NameTooLong { len: usize },
    InvalidValue,
    ValueTooLong { len: usize },
    Duplicate { first_index: usize },
    HopByHop,
    Host,
    ContentLength,
    ContentType,
    Reserved,
    CarriesCredentials,
}

impl fmt::Display for HeaderRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderRejection::InvalidName => {
                f.write_str("not a valid header name (ASCII letters, digits and !#$%&'*+-.^_`|~ only)")
            }
            HeaderRejection::NameTooLong { len } => {
                write!(f, "name is {len} bytes long; the limit is {MAX_NAME_LEN}")
            }
            HeaderRejection::InvalidValue => f.write_str("value must be printable ASCII (spaces and tabs allowed)"),
            HeaderRejection::ValueTooLong { len } => {
                write!(f, "value is {len} bytes long; the limit is {MAX_VALUE_LEN}")
            }
            HeaderRejection::Duplicate { first_index } => {
                write!(f, "repeats headers[{first_index}]")
            }
            HeaderRejection::HopByHop => {
                f.write_str("hop-by-hop headers belong to a single connection and cannot be set")
            }
            HeaderRejection::Host => f.write_str("Host is taken from the destination URL"),
            HeaderRejection::ContentLength => f.write_str("Content-Length is taken from the body"),
            HeaderRejection::ContentType => {
                f.write_str("Content-Type is set by the event or the subscription's transform")
            }
            HeaderRejection::Reserved => {
                f.write_str("webhook-* and X-Loft-* headers are reserved for Loft's signature and delivery metadata")
            }
            HeaderRejection::CarriesCredentials => f.write_str(
                "this header carries credentials; set them in the destination's auth, which is stored encrypted",
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{count} headers given; the limit is {MAX_HEADERS}")]
    TooMany { count: usize },
    #[error("headers[{index}] ({name:?}): {reason}")]
    Invalid {
        index: usize,
        /// The name as given.
        name: String,
        reason: HeaderRejection,
    },
}

impl StaticHeaders {
    pub fn parse(headers: Vec<(String, String)>) -> Result<StaticHeaders, HeaderError> {
        if headers.len() > MAX_HEADERS {
            return Err(HeaderError::TooMany { count: headers.len() });
        }
        let mut parsed: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(headers.len());
        for (index, (name, value)) in headers.into_iter().enumerate() {
            let reject = |reason| HeaderError::Invalid { index, name: name.clone(), reason };
            let header_name = parse_name(&name).map_err(reject)?;
            if let Some(first_index) = parsed.iter().position(|(n, _)| *n == header_name) {
                return Err(reject(HeaderRejection::Duplicate { first_index }));
            }
            let header_value = parse_value(&value).map_err(reject)?;
            parsed.push((header_name, header_value));
        }
        Ok(StaticHeaders(parsed))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The headers as strings, for storing and echoing back. Names are lower-case.
    pub fn iter_str(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| {
            // Only printable ASCII was admitted, so the value is always a str.
            (n.as_str(), v.to_str().unwrap_or_default())
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_name(name: &str) -> Result<HeaderName, HeaderRejection> {
    if name.len() > MAX_NAME_LEN {
        return Err(HeaderRejection::NameTooLong { len: name.len() });
    }
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderRejection::InvalidName)?;
    // `HeaderName` is lower-case, so the checks below need no case folding.
    let lower = header_name.as_str();
    if is_hop_by_hop(lower) && !SECRET_NAMES.contains(&lower) {
        return Err(HeaderRejection::HopByHop);
    }
    if SECRET_NAMES.contains(&lower) || SECRET_PARTS.iter().any(|part| lower.contains(part)) {
        return Err(HeaderRejection::CarriesCredentials);
    }
    match lower {
        "host" => return Err(HeaderRejection::Host),
        "content-length" => return Err(HeaderRejection::ContentLength),
        "content-type" => return Err(HeaderRejection::ContentType),
        _ => {}
    }
    if lower.starts_with("webhook-") || lower.starts_with("x-loft-") {
        return Err(HeaderRejection::Reserved);
    }
    Ok(header_name)
}

fn parse_value(value: &str) -> Result<HeaderValue, HeaderRejection> {
    if value.len() > MAX_VALUE_LEN {
        return Err(HeaderRejection::ValueTooLong { len: value.len() });
    }
    let header_value = HeaderValue::from_str(value).map_err(|_| HeaderRejection::InvalidValue)?;
    // `from_str` also admits bytes above 0x7f (obsolete in RFC 9110, and mangled by many
    // receivers); `to_str` succeeds only for printable ASCII.
    header_value.to_str().map_err(|_| HeaderRejection::InvalidValue)?;
    Ok(header_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(name: &str, value: &str) -> Result<StaticHeaders, HeaderError> {
        StaticHeaders::parse(vec![(name.to_owned(), value.to_owned())])
    }

    fn rejection(name: &str, value: &str) -> HeaderRejection {
        match one(name, value) {
            Err(HeaderError::Invalid { reason, .. }) => reason,
            other => panic!("{name}: {value}: {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_headers_in_order() {
        let headers = StaticHeaders::parse(vec![
            ("X-Team".to_owned(), "payments".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
            ("x-empty".to_owned(), String::new()),
            ("User-Agent".to_owned(), "acme-relay/1.0 (+https://acme.test)".to_owned()),
        ])
        .unwrap();
        let pairs: Vec<(&str, &str)> = headers.iter_str().collect();
        assert_eq!(
            pairs,
            [
                ("x-team", "payments"),
                ("accept", "application/json"),
                ("x-empty", ""),
                ("user-agent", "acme-relay/1.0 (+https://acme.test)"),
            ]
        );
        assert_eq!(headers.len(), 4);
        assert!(StaticHeaders::parse(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn refuses_hop_by_hop_and_computed_headers() {
        for name in ["Connection", "keep-alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade"] {
            assert_eq!(rejection(name, "x"), HeaderRejection::HopByHop, "{name}");
        }
        assert_eq!(rejection("HOST", "x"), HeaderRejection::Host);
        assert_eq!(rejection("Content-Length", "1"), HeaderRejection::ContentLength);
        assert_eq!(rejection("content-type", "text/plain"), HeaderRejection::ContentType);
    }

    #[test]
    fn refuses_reserved_prefixes() {
        for name in ["webhook-id", "Webhook-Signature", "X-Loft-Event-Type", "x-loft-anything"] {
            assert_eq!(rejection(name, "x"), HeaderRejection::Reserved, "{name}");
        }
        // Only the prefixes: a name merely containing them is fine.
        one("X-Webhook-Source", "x").unwrap();
        one("webhook", "x").unwrap();
    }

    #[test]
    fn refuses_secret_bearing_names() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-APIKEY",
            "api_key",
            "X-Auth-Token",
            "X-Client-Secret",
            "X-Password",
            "Private-Token",
            "X-Credentials",
        ] {
            assert_eq!(rejection(name, "x"), HeaderRejection::CarriesCredentials, "{name}");
        }
    }

    #[test]
    fn refuses_invalid_names_and_values() {
        assert_eq!(rejection("", "x"), HeaderRejection::InvalidName);
        assert_eq!(rejection("bad name", "x"), HeaderRejection::InvalidName);
        assert_eq!(rejection("bad:name", "x"), HeaderRejection::InvalidName);
        assert_eq!(rejection("naïve", "x"), HeaderRejection::InvalidName);
        assert_eq!(rejection("x-a", "line\nbreak"), HeaderRejection::InvalidValue);
        assert_eq!(rejection("x-a", "nul\0"), HeaderRejection::InvalidValue);
        assert_eq!(rejection("x-a", "caf\u{e9}"), HeaderRejection::InvalidValue);
        assert_eq!(
            rejection("x-a", &"v".repeat(MAX_VALUE_LEN + 1)),
            HeaderRejection::ValueTooLong { len: MAX_VALUE_LEN + 1 }
        );
        one("x-a", &"v".repeat(MAX_VALUE_LEN)).unwrap();
        one("x-a", "tab\tand space").unwrap();
        assert_eq!(
            rejection(&"n".repeat(MAX_NAME_LEN + 1), "x"),
            HeaderRejection::NameTooLong { len: MAX_NAME_LEN + 1 }
        );
    }

    #[test]
    fn errors_name_the_header_by_index_and_name() {
        let err = StaticHeaders::parse(vec![
            ("X-Ok".to_owned(), "1".to_owned()),
            ("Authorization".to_owned(), "Bearer sk_live_123".to_owned()),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "headers[1] (\"Authorization\"): this header carries credentials; set them in the destination's auth, which is stored encrypted"
        );
        assert!(!err.to_string().contains("sk_live"));
        let err = StaticHeaders::parse(vec![("X-A".to_owned(), "1".to_owned()), ("x-a".to_owned(), "2".to_owned())])
            .unwrap_err();
        assert_eq!(
            err,
            HeaderError::Invalid {
                index: 1,
                name: "x-a".to_owned(),
                reason: HeaderRejection::Duplicate { first_index: 0 },
            }
        );
    }

    #[test]
    fn header_count_limit() {
        let headers = |n: usize| (0..n).map(|i| (format!("x-h{i}"), "v".to_owned())).collect::<Vec<_>>();
        assert_eq!(StaticHeaders::parse(headers(MAX_HEADERS)).unwrap().len(), MAX_HEADERS);
        assert_eq!(
            StaticHeaders::parse(headers(MAX_HEADERS + 1)).unwrap_err(),
            HeaderError::TooMany { count: MAX_HEADERS + 1 }
        );
    }

    #[test]
    fn hop_by_hop_is_case_insensitive() {
        for name in ["connection", "CONNECTION", "Keep-Alive", "te", "Trailers", "upgrade"] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["content-type", "x-connection", "tee", "host", "authorization"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }

    proptest! {
        #[test]
        fn any_case_spelling_is_judged_alike(
            name in prop::sample::select(vec![
                "connection", "host", "content-type", "authorization", "webhook-id",
                "x-loft-attempt", "x-api-key", "x-team", "accept",
            ]),
            flips in prop::collection::vec(any::<bool>(), 20),
        ) {
            let spelled: String = name
                .chars()
                .zip(flips.iter().cycle())
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            let a = one(name, "v").map_err(|e| match e {
                HeaderError::Invalid { reason, .. } => reason,
                other => panic!("{other:?}"),
            });
            let b = one(&spelled, "v").map_err(|e| match e {
                HeaderError::Invalid { reason, .. } => reason,
                other => panic!("{other:?}"),
            });
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(a.err(), b.err());
        }

        #[test]
        fn accepted_headers_round_trip(
            name in "x-[a-z0-9]{1,20}",
            value in "[ -~]{0,100}",
        ) {
            prop_assume!(!SECRET_PARTS.iter().any(|p| name.contains(p)));
            let headers = one(&name, &value).unwrap();
            let pairs: Vec<(&str, &str)> = headers.iter_str().collect();
            prop_assert_eq!(pairs, vec![(name.as_str(), value.as_str())]);
        }

        #[test]
        fn parse_never_panics(name in "\\PC{0,40}", value in "\\PC{0,40}") {
            let _ = one(&name, &value);
        }
    }
}
