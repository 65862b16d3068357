//! `loft send`: a test webhook signed as a provider would sign it, posted to a URL.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::config::{SendArgs, SendScheme};
use crate::signing::{Scheme, sign_outbound_as};

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let data = match args.data.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("reading --data file {path}"))?,
        None => args.data.clone().into_bytes(),
    };
    let scheme = scheme(args.scheme, args.signature_header.as_deref())?;
    let now = SystemTime::now();
    let request = build(&scheme, &args.event_type, &data, now)?;
    let mut headers = sign_outbound_as(&scheme, args.secret.expose(), &request.body, now)
        .map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    headers.extend(request.headers);
    for extra in &args.headers {
        let (name, value) =
            extra.split_once(':').with_context(|| format!("--header {extra:?} is not `Name: value`"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    crate::delivery::sender::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut post = client.post(args.url.clone()).header("content-type", "application/json").body(request.body);
    for (name, value) in &headers {
        post = post.header(name.as_str(), value.as_str());
    }
    let response = post.send().await.with_context(|| format!("POST {}", redact(&args.url)))?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    println!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if !body.is_empty() {
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn scheme(scheme: SendScheme, header: Option<&str>) -> anyhow::Result<Scheme> {
    let generic = || {
        header
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("this scheme needs --signature-header NAME, as configured on the source"))
    };
    let scheme = match scheme {
        SendScheme::StandardWebhooks => Scheme::StandardWebhooks,
        SendScheme::Github => Scheme::Github,
        SendScheme::Stripe => Scheme::Stripe,
        SendScheme::Shopify => Scheme::Shopify,
        SendScheme::HmacSha256Hex => Scheme::HmacSha256Hex { header: generic()? },
        SendScheme::HmacSha256Base64 => Scheme::HmacSha256Base64 { header: generic()? },
    };
    if header.is_some() && !matches!(scheme, Scheme::HmacSha256Hex { .. } | Scheme::HmacSha256Base64 { .. }) {
        anyhow::bail!(
            "--signature-header is only for the hmac-sha256-* schemes; the provider schemes' headers are fixed"
        );
    }
    Ok(scheme)
}

/// What gets signed and sent besides the signature.
pub struct TestRequest {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// The body and type headers each provider sends: Standard Webhooks and Stripe wrap the data in
/// their envelopes (carrying the type inside), the others send it as given and name the type in
/// a header.
pub fn build(scheme: &Scheme, event_type: &str, data: &[u8], now: SystemTime) -> anyhow::Result<TestRequest> {
    let json: serde_json::Value = serde_json::from_slice(data).context("--data is not JSON")?;
    let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let id = ulid::Ulid::new().to_string();
    let header = |name: &str, value: String| vec![(name.to_owned(), value)];
    let (body, headers) = match scheme {
        Scheme::StandardWebhooks => {
            let timestamp = chrono::DateTime::from_timestamp(seconds as i64, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let body = serde_json::json!({"type": event_type, "timestamp": timestamp, "data": json});
            (serde_json::to_vec(&body)?, Vec::new())
        }
        Scheme::Stripe => {
            let body = serde_json::json!({
                "id": format!("evt_test_{id}"),
                "object": "event",
                "type": event_type,
                "created": seconds,
                "livemode": false,
                "data": {"object": json},
            });
            (serde_json::to_vec(&body)?, Vec::new())
        }
        Scheme::Github => {
            let mut headers = header("X-GitHub-Event", event_type.to_owned());
            headers.extend(header("X-GitHub-Delivery", id));
            (data.to_vec(), headers)
        }
        Scheme::Shopify => {
            let mut headers = header("X-Shopify-Topic", event_type.to_owned());
            headers.extend(header("X-Shopify-Webhook-Id", id));
            (data.to_vec(), headers)
        }
        Scheme::HmacSha256Hex { .. } | Scheme::HmacSha256Base64 { .. } => {
            (data.to_vec(), header("X-Event-Type", event_type.to_owned()))
        }
    };
    Ok(TestRequest { body, headers })
}

/// A URL without credentials or query, for error messages.
fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.set_query(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::verify_inbound;

    #[test]
    fn every_scheme_signs_what_the_inbound_verifier_accepts() {
        let now = SystemTime::now();
        let generic = Some("X-Signature");
        for (arg, secret) in [
            (SendScheme::StandardWebhooks, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            (SendScheme::Github, "gh"),
            (SendScheme::Stripe, "whsec_stripe"),
            (SendScheme::Shopify, "shp"),
            (SendScheme::HmacSha256Hex, "hex"),
            (SendScheme::HmacSha256Base64, "b64"),
        ] {
            let header =
                matches!(arg, SendScheme::HmacSha256Hex | SendScheme::HmacSha256Base64).then_some(()).and(generic);
            let scheme = scheme(arg, header).unwrap();
            let request = build(&scheme, "order.created", br#"{"n":1}"#, now).unwrap();
            let headers = sign_outbound_as(&scheme, secret, &request.body, now).unwrap();
            verify_inbound(&scheme, secret, &headers, &request.body, now, Duration::from_secs(300))
                .unwrap_or_else(|e| panic!("{arg:?}: {e}"));
            assert!(verify_inbound(&scheme, "other", &headers, &request.body, now, Duration::from_secs(300)).is_err());
        }
    }

    #[test]
    fn envelopes_carry_the_type_and_data() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = |s: &Scheme| {
            serde_json::from_slice::<serde_json::Value>(&build(s, "t.x", b"[1]", now).unwrap().body).unwrap()
        };
        let sw = body(&Scheme::StandardWebhooks);
        assert_eq!((sw["type"].as_str(), sw["timestamp"].as_str()), (Some("t.x"), Some("2023-11-14T22:13:20Z")));
        assert_eq!(sw["data"], serde_json::json!([1]));
        let stripe = body(&Scheme::Stripe);
        assert_eq!(stripe["data"]["object"], serde_json::json!([1]));
        assert_eq!(stripe["created"], 1_700_000_000);
        let gh = build(&Scheme::Github, "push", b" [1] ", now).unwrap();
        // Sent byte for byte, so what is signed is what the file held.
        assert_eq!(gh.body, b" [1] ");
        assert_eq!(gh.headers[0], ("X-GitHub-Event".to_owned(), "push".to_owned()));
        assert!(build(&Scheme::Github, "push", b"{", now).is_err());
        assert!(scheme(SendScheme::HmacSha256Hex, None).is_err());
        assert!(scheme(SendScheme::Github, Some("X-Sig")).is_err());
    }
}
