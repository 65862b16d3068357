//! The two hyper servers living in the harness process: the **receiver** Loft delivers to, and
//! the **baseline**, a bare server answering what Loft would answer without storing anything.
//! Each runs on its own tokio runtime (its own threads), as a separate process would.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::util::{make_body, new_hist, now_ns, parse_body};

type ResBody = BoxBody<Bytes, Infallible>;

/// Accepts connections until the runtime is dropped; each connection speaks HTTP/1.1 or h2c.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<ResBody>, Infallible>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .await;
        });
    }
}

/// Starts a server on `rt`, bound to a free loopback port.
fn start_on<F, Fut>(rt: &tokio::runtime::Runtime, handler: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<ResBody>, Infallible>> + Send + 'static,
{
    // Bound here, served on `rt` (whose context `from_std` needs).
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(l) => serve(l, handler).await,
            Err(e) => eprintln!("loft-bench: cannot serve on {addr}: {e}"),
        }
    });
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// Receiver

/// What the receiver saw for one run tag (one scenario of one backend).
pub struct RunStats {
    /// Requests received, duplicates included.
    pub received: u64,
    /// Distinct `seq`s received.
    pub distinct: u64,
    /// Receive → delivered: the generator's send time (in the body) to the receiver's read.
    pub latency: Histogram<u64>,
    seen: HashSet<u64>,
}

#[derive(Default)]
pub struct ReceiverStats {
    pub total: AtomicU64,
    /// Bodies that are not ours or differ from what was sent (byte for byte).
    pub corrupt: AtomicU64,
    /// Deliveries without `webhook-id` or `x-loft-delivery-id`.
    pub missing_headers: AtomicU64,
    runs: Mutex<HashMap<u32, RunStats>>,
}

impl ReceiverStats {
    /// Distinct deliveries of `run` so far.
    pub fn distinct(&self, run: u32) -> u64 {
        self.runs.lock().unwrap().get(&run).map_or(0, |r| r.distinct)
    }

    /// A copy of `run`'s figures: (received, distinct, latency histogram).
    pub fn snapshot(&self, run: u32) -> (u64, u64, Histogram<u64>) {
        let runs = self.runs.lock().unwrap();
        match runs.get(&run) {
            Some(r) => (r.received, r.distinct, r.latency.clone()),
            None => (0, 0, new_hist()),
        }
    }

    fn record(&self, run: u32, seq: u64, latency_us: u64) {
        let mut runs = self.runs.lock().unwrap();
        let r = runs.entry(run).or_insert_with(|| RunStats {
            received: 0,
            distinct: 0,
            latency: new_hist(),
            seen: HashSet::new(),
        });
        r.received += 1;
        if r.seen.insert(seq) {
            r.distinct += 1;
            // Only a first delivery measures receive → delivered; a redelivery would measure the
            // retry schedule.
            r.latency.saturating_record(latency_us.max(1));
        }
    }
}

/// Starts the receiver: answers 200 at once, counts deliveries and their latency.
pub fn start_receiver(
    rt: &tokio::runtime::Runtime,
    body_bytes: usize,
) -> anyhow::Result<(SocketAddr, Arc<ReceiverStats>)> {
    let stats = Arc::new(ReceiverStats::default());
    let s = stats.clone();
    let addr = start_on(rt, move |req: Request<Incoming>| {
        let s = s.clone();
        async move {
            let has_ids = req.headers().contains_key("webhook-id") && req.headers().contains_key("x-loft-delivery-id");
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let now = now_ns();
            s.total.fetch_add(1, Ordering::Relaxed);
            if !has_ids {
                s.missing_headers.fetch_add(1, Ordering::Relaxed);
            }
            match parse_body(&body) {
                Some(f) if make_body(f.run, f.seq, f.sent_ns, body_bytes) == body => {
                    s.record(f.run, f.seq, now.saturating_sub(f.sent_ns) / 1000);
                }
                _ => {
                    s.corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Response::new(Full::new(Bytes::new()).boxed()))
        }
    })?;
    Ok((addr, stats))
}

// ---------------------------------------------------------------------------------------------
// Baseline

/// What the baseline answers: Loft's own responses, captured from the running server (or built
/// in the same format when a call could not be made), so the generator parses the same bytes.
#[derive(Clone, Default)]
pub struct Canned {
    /// Body of the HTTP ingest answer, `{"event_id":"evt_…"}`.
    pub ingest: Bytes,
    /// Encoded `PublishEventResponse`.
    pub publish: Bytes,
    /// Encoded `GetDestinationResponse`.
    pub get_destination: Bytes,
}

/// A unary gRPC response body: one length-prefixed message, then `grpc-status: 0`.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    Bytes::from(v)
}

fn grpc_response(msg: Option<&Bytes>) -> Response<ResBody> {
    let mut trailers = HeaderMap::new();
    let data = match msg {
        Some(m) => {
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            Some(grpc_frame(m))
        }
        None => {
            trailers.insert("grpc-status", HeaderValue::from_static("12"));
            trailers.insert("grpc-message", HeaderValue::from_static("not in the baseline"));
            None
        }
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(GrpcBody { data, trailers: Some(trailers) }.boxed())
        .expect("valid response")
}

/// Starts the baseline: reads each request body in full and answers at once — HTTP with the
/// ingest answer, gRPC (`PublishEvent`, `GetDestination`) with the canned message.
pub fn start_baseline(rt: &tokio::runtime::Runtime, canned: Canned) -> anyhow::Result<SocketAddr> {
    let canned = Arc::new(canned);
    start_on(rt, move |req: Request<Incoming>| {
        let canned = canned.clone();
        async move {
            let grpc =
                req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let path = req.uri().path().to_owned();
            let _ = req.into_body().collect().await;
            if grpc {
                let msg = if path.ends_with("/PublishEvent") {
                    Some(&canned.publish)
                } else if path.ends_with("/GetDestination") {
                    Some(&canned.get_destination)
                } else {
                    None
                };
                return Ok(grpc_response(msg));
            }
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(canned.ingest.clone()).boxed())
                .expect("valid response"))
        }
    })
}
