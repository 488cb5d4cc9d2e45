//! The figures of a finished run: the human summary, the JSON object, the progress line.
//! Pure functions of the counts, so their shape is unit-tested.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use switchboard_handlers::Proto;

use super::plan::{Mode, Plan};
use super::stats::Stats;
use super::udp::LOSS_TIMEOUT;

/// Latency percentiles of a run (all zero when nothing completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Slowest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: Duration::from_nanos(h.max()),
            mean: Duration::from_secs_f64(h.mean() / 1e9),
        }
    }
}

/// Everything the summary and the JSON object say.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub plan: Plan,
    /// The address that was loaded.
    pub target: String,
    /// Measured time (shorter than asked when every connection failed).
    pub elapsed: Duration,
    /// Completed operations.
    pub ops: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Failures.
    pub errors: u64,
    /// UDP datagrams never echoed.
    pub lost: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Percentiles.
    pub latency: Latency,
}

impl Report {
    /// The report of `stats` measured over `elapsed`.
    pub fn new(plan: &Plan, target: String, stats: &Stats, elapsed: Duration) -> Self {
        Report {
            plan: plan.clone(),
            target,
            elapsed,
            ops: stats.ops,
            bytes: stats.bytes,
            errors: stats.errors,
            lost: stats.lost,
            first_error: stats.first_error.clone(),
            latency: Latency::from_histogram(&stats.hist),
        }
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        per_sec(self.ops as f64, self.elapsed)
    }

    /// Megabytes (10^6 bytes, as loadgen) echoed per second.
    pub fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.elapsed)
    }

    /// One JSON object. Its rate key is loadgen's for the same scenario (`msgs_per_s`,
    /// `dgrams_per_s`, `MBps`, `conns_per_s`), so scripts written for one read the other;
    /// `ops_per_s` is there in every mode.
    pub fn to_json(&self) -> Value {
        let p = &self.plan;
        let mut o = Map::new();
        o.insert("mode".into(), json!(p.mode.name()));
        o.insert("proto".into(), json!(p.proto.as_str()));
        o.insert("tls".into(), json!(p.tls.tls));
        o.insert("target".into(), json!(self.target));
        o.insert("connections".into(), json!(p.connections));
        o.insert("size".into(), json!(p.size));
        if p.mode == Mode::Bulk {
            o.insert("in_flight".into(), json!(p.in_flight));
        }
        o.insert("threads".into(), json!(p.threads));
        o.insert(
            "warmup_secs".into(),
            json!(round(p.warmup.as_secs_f64(), 3)),
        );
        o.insert("secs".into(), json!(round(self.elapsed.as_secs_f64(), 3)));
        o.insert("ops".into(), json!(self.ops));
        o.insert("ops_per_s".into(), json!(round(self.ops_per_sec(), 1)));
        match (p.mode, p.proto) {
            (Mode::Pingpong, Proto::Tcp) => {
                o.insert("msgs_per_s".into(), json!(round(self.ops_per_sec(), 1)));
            }
            (Mode::Pingpong, Proto::Udp) => {
                o.insert("dgrams_per_s".into(), json!(round(self.ops_per_sec(), 1)));
            }
            (Mode::Connect, _) => {
                o.insert("conns_per_s".into(), json!(round(self.ops_per_sec(), 1)));
            }
            (Mode::Bulk, _) => {}
        }
        o.insert("bytes".into(), json!(self.bytes));
        o.insert("MBps".into(), json!(round(self.mb_per_sec(), 2)));
        o.insert("errors".into(), json!(self.errors));
        if p.proto == Proto::Udp {
            o.insert("lost".into(), json!(self.lost));
        }
        if let Some(e) = &self.first_error {
            o.insert("first_error".into(), json!(e));
        }
        let l = &self.latency;
        for (key, d) in [
            ("p50_us", l.p50),
            ("p90_us", l.p90),
            ("p99_us", l.p99),
            ("p999_us", l.p999),
            ("max_us", l.max),
            ("mean_us", l.mean),
        ] {
            o.insert(key.into(), json!(round(d.as_secs_f64() * 1e6, 2)));
        }
        Value::Object(o)
    }

    /// The summary for a person, several lines ending with a newline.
    pub fn text(&self) -> String {
        let p = &self.plan;
        let mut s = String::new();
        let (peer, unit) = match (p.mode, p.proto) {
            (Mode::Connect, _) => ("concurrent cycle", "messages"),
            (_, Proto::Udp) => ("socket", "datagrams"),
            (Mode::Bulk, _) => ("connection", "blocks"),
            (Mode::Pingpong, _) => ("connection", "messages"),
        };
        let peers = plural(p.connections, peer);
        let _ = write!(
            s,
            "{} over {} to {}: {peers}, {}-byte {unit}",
            p.mode.name(),
            p.proto.as_str().to_uppercase(),
            self.target,
            p.size,
        );
        if p.mode == Mode::Bulk {
            let _ = write!(s, ", {} in flight", p.in_flight);
        }
        let _ = writeln!(s, ", {}", plural(p.threads, "thread"));

        let _ = write!(s, "  measured    {:.2} s", self.elapsed.as_secs_f64());
        if !p.warmup.is_zero() {
            let _ = write!(s, " after {:.2} s of warmup", p.warmup.as_secs_f64());
        }
        s.push('\n');
        let rate = fmt_rate(self.ops_per_sec());
        let mbps = self.mb_per_sec();
        let _ = match p.mode {
            Mode::Bulk => writeln!(s, "  throughput  {mbps:.1} MB/s echoed ({rate} blocks/s)"),
            Mode::Pingpong | Mode::Connect => writeln!(
                s,
                "  throughput  {rate} {} ({mbps:.1} MB/s echoed)",
                rate_unit(p.mode, p.proto)
            ),
        };
        let done = match (p.mode, p.proto) {
            (Mode::Bulk, _) => "blocks echoed",
            (Mode::Connect, _) => "connect cycles",
            (Mode::Pingpong, _) => "round trips",
        };
        let _ = writeln!(s, "  completed   {} {done}", fmt_count(self.ops));
        let l = &self.latency;
        let _ = writeln!(
            s,
            "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            fmt_latency(l.p50),
            fmt_latency(l.p90),
            fmt_latency(l.p99),
            fmt_latency(l.p999),
            fmt_latency(l.max),
        );
        if p.proto == Proto::Udp {
            let _ = writeln!(
                s,
                "  lost        {} (no echo within {} ms; sent again)",
                fmt_count(self.lost),
                LOSS_TIMEOUT.as_millis()
            );
        }
        let _ = write!(s, "  errors      {}", fmt_count(self.errors));
        if let Some(e) = &self.first_error {
            let _ = write!(s, " (first: {e})");
        }
        s.push('\n');
        s
    }
}

/// What one operation per second is called in `mode`.
pub fn rate_unit(mode: Mode, proto: Proto) -> &'static str {
    match (mode, proto) {
        (Mode::Connect, _) => "conns/s",
        (Mode::Bulk, _) => "blocks/s",
        (Mode::Pingpong, Proto::Udp) => "datagrams/s",
        (Mode::Pingpong, Proto::Tcp) => "msgs/s",
    }
}

/// Counts of the measured part of a run so far, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoFar {
    /// Completed operations.
    pub ops: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Failures.
    pub errors: u64,
    /// Time they were counted over.
    pub over: Duration,
}

/// The live line: seconds since the start, then the rate and errors so far, or that the
/// warmup is still running (`None`).
pub fn progress_line(plan: &Plan, since_start: Duration, so_far: Option<SoFar>) -> String {
    let secs = since_start.as_secs();
    let Some(c) = so_far else {
        return format!("[{secs:>3}s] warming up");
    };
    let rate = match plan.mode {
        Mode::Bulk => format!("{:.1} MB/s", per_sec(c.bytes as f64 / 1e6, c.over)),
        Mode::Pingpong | Mode::Connect => format!(
            "{} {}",
            fmt_rate(per_sec(c.ops as f64, c.over)),
            rate_unit(plan.mode, plan.proto)
        ),
    };
    format!("[{secs:>3}s] {rate}, {} errors", fmt_count(c.errors))
}

/// `1 thread`, `2 threads`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", fmt_count(n as u64))
    }
}

fn per_sec(amount: f64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { amount / secs } else { 0.0 }
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// 1234567 as `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate: whole numbers with separators, one decimal below 100.
pub fn fmt_rate(r: f64) -> String {
    if r < 100.0 {
        format!("{r:.1}")
    } else {
        fmt_count(r.round() as u64)
    }
}

/// A latency with three significant digits in the unit that suits it.
pub fn fmt_latency(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (v, unit) = if ns < 1e3 {
        return format!("{ns:.0} ns");
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if v < 10.0 {
        format!("{v:.2} {unit}")
    } else if v < 100.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode, proto: Proto) -> Plan {
        Plan {
            target: "127.0.0.1:9000".into(),
            proto,
            mode,
            connections: 50,
            size: 64,
            in_flight: 1,
            threads: 1,
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            json: true,
            tls: Default::default(),
        }
    }

    fn stats_of(latencies_us: &[u64]) -> Stats {
        let mut s = Stats::new();
        for &us in latencies_us {
            s.complete(Duration::from_micros(us));
            s.bytes += 64;
        }
        s
    }

    fn report(mode: Mode, proto: Proto, stats: &Stats) -> Report {
        Report::new(
            &plan(mode, proto),
            "127.0.0.1:9000".into(),
            stats,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let lat: Vec<u64> = (1..=1000).collect();
        let l = Latency::from_histogram(&stats_of(&lat).hist);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        assert!((us(l.p50) - 500.0).abs() < 1.0, "{l:?}");
        assert!((us(l.p90) - 900.0).abs() < 1.0, "{l:?}");
        assert!((us(l.p99) - 990.0).abs() < 1.0, "{l:?}");
        assert!((us(l.p999) - 999.0).abs() < 1.0, "{l:?}");
        assert!((us(l.max) - 1000.0).abs() < 1.0, "{l:?}");
        assert!((us(l.mean) - 500.5).abs() < 1.0, "{l:?}");
        assert_eq!(
            Latency::from_histogram(&Stats::new().hist),
            Latency::default()
        );
    }

    #[test]
    fn latencies_read_in_a_fitting_unit() {
        assert_eq!(fmt_latency(Duration::from_nanos(850)), "850 ns");
        assert_eq!(fmt_latency(Duration::from_nanos(2_345)), "2.35 µs");
        assert_eq!(fmt_latency(Duration::from_nanos(23_450)), "23.4 µs");
        assert_eq!(fmt_latency(Duration::from_micros(195)), "195 µs");
        assert_eq!(fmt_latency(Duration::from_micros(1_020)), "1.02 ms");
        assert_eq!(fmt_latency(Duration::from_millis(1_500)), "1.50 s");
    }

    #[test]
    fn counts_and_rates_are_grouped() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_000), "1,000");
        assert_eq!(fmt_count(2_458_120), "2,458,120");
        assert_eq!(fmt_rate(12.34), "12.3");
        assert_eq!(fmt_rate(245_812.4), "245,812");
    }

    #[test]
    fn json_has_loadgens_keys_for_each_scenario() {
        let s = stats_of(&[10, 20, 30, 40]);
        let tcp = report(Mode::Pingpong, Proto::Tcp, &s).to_json();
        assert_eq!(tcp["mode"], "pingpong");
        assert_eq!(tcp["proto"], "tcp");
        assert_eq!(tcp["connections"], 50);
        assert_eq!(tcp["ops"], 4);
        assert_eq!(tcp["msgs_per_s"], 2.0);
        assert_eq!(tcp["ops_per_s"], 2.0);
        assert_eq!(tcp["bytes"], 256);
        assert_eq!(tcp["errors"], 0);
        assert_eq!(tcp["secs"], 2.0);
        assert_eq!(tcp["warmup_secs"], 1.0);
        assert!(tcp.get("lost").is_none() && tcp.get("in_flight").is_none());
        assert!(tcp.get("first_error").is_none());
        for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
            assert!(tcp[key].as_f64().unwrap() > 0.0, "{key} in {tcp}");
        }
        let udp = report(Mode::Pingpong, Proto::Udp, &s).to_json();
        assert!(udp.get("dgrams_per_s").is_some() && udp["lost"] == 0);
        let bulk = report(Mode::Bulk, Proto::Tcp, &s).to_json();
        assert!(bulk.get("MBps").is_some() && bulk["in_flight"] == 1);
        assert!(bulk.get("msgs_per_s").is_none());
        let conn = report(Mode::Connect, Proto::Tcp, &s).to_json();
        assert_eq!(conn["conns_per_s"], 2.0);
    }

    #[test]
    fn json_names_the_first_error() {
        let mut s = stats_of(&[10]);
        s.error(
            "read",
            &std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        );
        let j = report(Mode::Pingpong, Proto::Tcp, &s).to_json();
        assert_eq!(j["errors"], 1);
        assert!(j["first_error"].as_str().unwrap().starts_with("read: "));
    }

    #[test]
    fn summary_lists_throughput_percentiles_and_errors() {
        let s = stats_of(&[100, 200, 300]);
        let text = report(Mode::Pingpong, Proto::Tcp, &s).text();
        assert!(
            text.starts_with(
                "pingpong over TCP to 127.0.0.1:9000: 50 connections, 64-byte messages, 1 thread\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("measured    2.00 s after 1.00 s of warmup"),
            "{text}"
        );
        assert!(text.contains("throughput  1.5 msgs/s"), "{text}");
        assert!(text.contains("completed   3 round trips"), "{text}");
        assert!(
            text.contains("p50 200 µs  p90 300 µs  p99 300 µs  p99.9 300 µs  max 300 µs"),
            "{text}"
        );
        assert!(text.ends_with("errors      0\n"), "{text}");
        let mut one = plan(Mode::Connect, Proto::Tcp);
        (one.connections, one.threads) = (1, 1);
        let r = Report::new(&one, "[::1]:7".into(), &s, Duration::from_secs(1));
        assert!(r.text().starts_with(
            "connect over TCP to [::1]:7: 1 concurrent cycle, 64-byte messages, 1 thread\n"
        ));
        let udp = report(Mode::Pingpong, Proto::Udp, &s).text();
        assert!(udp.contains("50 sockets, 64-byte datagrams") && udp.contains("lost        0"));
        let bulk = report(Mode::Bulk, Proto::Tcp, &s).text();
        assert!(bulk.contains("MB/s echoed (1.5 blocks/s)") && bulk.contains("1 in flight"));
    }

    #[test]
    fn progress_shows_the_rate_so_far() {
        let p = plan(Mode::Pingpong, Proto::Tcp);
        let so_far = SoFar {
            ops: 500_000,
            bytes: 0,
            errors: 2,
            over: Duration::from_secs(2),
        };
        let line = progress_line(&p, Duration::from_secs(3), Some(so_far));
        assert_eq!(line, "[  3s] 250,000 msgs/s, 2 errors");
        let warm = progress_line(&p, Duration::from_secs(1), None);
        assert_eq!(warm, "[  1s] warming up");
        let b = plan(Mode::Bulk, Proto::Tcp);
        let so_far = SoFar {
            ops: 0,
            bytes: 3_000_000,
            errors: 0,
            over: Duration::from_secs(2),
        };
        let line = progress_line(&b, Duration::from_secs(2), Some(so_far));
        assert_eq!(line, "[  2s] 1.5 MB/s, 0 errors");
    }
}
