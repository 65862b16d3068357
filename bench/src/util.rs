//! Small pieces shared by the harness: request bodies, durations, latency histograms, and what
//! `/proc` tells about a process (RSS, CPU time).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Wall-clock nanoseconds since the Unix epoch: the generator's send time, carried in the body
/// so the receiver (same process, same clock) can compute receive → delivered.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A request body: `{"sent_ns":N,"run":R,"seq":S,"pad":"xxx…"}`, padded to `size` bytes (or a
/// little more when `size` is smaller than the fields). Deterministic, so the receiver can check
/// the delivered body byte for byte by building it again.
pub fn make_body(run: u32, seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(80));
    let _ = write!(v, "{{\"sent_ns\":{sent_ns},\"run\":{run},\"seq\":{seq},\"pad\":\"");
    let pad = size.saturating_sub(v.len() + 2);
    v.resize(v.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// The fields of a body made by [`make_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyFields {
    pub sent_ns: u64,
    pub run: u32,
    pub seq: u64,
}

/// Reads the fields back; `None` when the body is not one of ours.
pub fn parse_body(b: &[u8]) -> Option<BodyFields> {
    fn field<'a>(b: &'a [u8], name: &[u8]) -> Option<(u64, &'a [u8])> {
        let rest = b.strip_prefix(name)?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 20 {
            return None;
        }
        let n = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        Some((n, &rest[digits..]))
    }
    let (sent_ns, rest) = field(b, b"{\"sent_ns\":")?;
    let (run, rest) = field(rest, b",\"run\":")?;
    let (seq, _) = field(rest, b",\"seq\":")?;
    Some(BodyFields { sent_ns, run: u32::try_from(run).ok()?, seq })
}

/// `20s`, `500ms`, `1m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}` (use e.g. 20s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s or m)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A free loopback port (bound, then released: good enough for a harness).
pub fn free_addr() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

/// Latencies in microseconds, 1 µs .. 60 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// A quantile in milliseconds; `None` for an empty histogram.
pub fn q_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

pub fn max_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| h.max() as f64 / 1000.0)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resets the peak RSS (`VmHWM`) of a process to its current RSS (Linux ≥ 4.0), so a scenario's
/// peak is its own. Returns false when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// User + system CPU time of a process (all its threads), from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / clock_ticks()))
}

/// CPU time the whole machine spent busy (every state but idle and iowait), from `/proc/stat`.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return Duration::ZERO };
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let f: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    if f.len() < 8 {
        return Duration::ZERO;
    }
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    Duration::from_secs_f64(busy as f64 / clock_ticks())
}

/// Parent pid of a process.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of a process and all its direct children (the PostgreSQL postmaster and backends).
pub fn tree_cpu_time(root: u32) -> Duration {
    let mut total = cpu_time(&root.to_string()).unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if parent_pid(pid) == Some(root) {
                total += cpu_time(&pid.to_string()).unwrap_or_default();
            }
        }
    }
    total
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Bytes in MB (10^6), the unit of DESIGN §12's memory targets.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_at_the_requested_size() {
        let b = make_body(7, 42, 1_700_000_000_123_456_789, 1024);
        assert_eq!(b.len(), 1024);
        assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
        assert_eq!(parse_body(&b), Some(BodyFields { sent_ns: 1_700_000_000_123_456_789, run: 7, seq: 42 }));
        assert_eq!(parse_body(b"{\"other\":1}"), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h").is_err());
    }
}
