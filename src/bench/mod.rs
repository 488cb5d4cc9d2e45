//! `switchboard bench`: a load generator for echo servers, shipped with the daemon as
//! redis ships redis-benchmark.
//!
//! The connections are opened first (a server that is not there fails the command at once
//! with a clear message), then dealt to `--threads` event-loop threads, one `mio::Poll`
//! each. Every thread counts into its own HDR histogram; the main thread prints the
//! progress line from the counters the threads publish, then merges their counts into one
//! [`report::Report`]. The loops follow the reference load generator (`loadgen.c`): one
//! syscall per step, no allocation per message, `TCP_NODELAY`, buffers reused.
//!
//! - [`plan`]: arguments and their validation
//! - [`stream`]: TCP pingpong and bulk
//! - [`udp`]: UDP pingpong
//! - [`connect`]: connect, send, read, close cycles
//! - [`stats`]: counts, the measured window, the published counters
//! - [`report`]: the summary, the JSON object, the progress line

pub mod connect;
pub mod plan;
pub mod report;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod udp;

use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::io::Errno;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use switchboard_handlers::Proto;

pub use plan::{BenchArgs, Mode, Plan};
use report::{Report, SoFar};
use stats::{Published, Stats, Window};
use stream::StreamLoad;

/// How long opening one connection may take before the command gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Shortest measured time the progress line computes a rate over.
const MIN_PROGRESS_SPAN: Duration = Duration::from_millis(250);

/// A connection opened before the run: its socket, and its TLS if the handshake is done.
type Opened = (TcpStream, Option<Box<rustls::ClientConnection>>);

/// The sockets one thread will drive.
#[derive(Debug)]
enum Job {
    Stream(Vec<Opened>),
    Datagram(Vec<UdpSocket>),
    Connect(usize),
}

/// `switchboard bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = args.validate()?;
    let addrs: Vec<SocketAddr> = plan
        .target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{}` (expected HOST:PORT)", plan.target))?
        .collect();
    if addrs.is_empty() {
        bail!("`{}` resolves to no address", plan.target);
    }
    raise_fd_limit();
    let tls = if plan.tls.tls {
        let host = plan
            .target
            .rsplit_once(':')
            .map_or(plan.target.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(tls::Tls {
            config: crate::tls::client_config(&plan.tls, false)?,
            name: crate::tls::server_name(host)?,
        })
    } else {
        None
    };
    let (addr, jobs) = prepare(&plan, &addrs, tls.as_ref())?;

    let window = Window::new(Instant::now(), plan.warmup, plan.duration);
    let published: Arc<Vec<Published>> =
        Arc::new((0..jobs.len()).map(|_| Published::default()).collect());
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(jobs.len());
    for (t, job) in jobs.into_iter().enumerate() {
        let (tx, published, plan) = (tx.clone(), Arc::clone(&published), plan.clone());
        let tls = tls.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                let result = run_job(job, &plan, addr, window, &published[t], tls);
                // The receiver outlives every thread; a failed send only means main is gone.
                let _ = tx.send(result);
            })
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    drop(tx);

    let results = collect(&plan, window, &published, &rx, handles.len());
    for h in handles {
        if h.join().is_err() {
            bail!("a load thread panicked");
        }
    }

    let mut total = Stats::new();
    let mut stopped = window.measure_from;
    for result in results {
        let (stats, at) = result.context("the event loop failed")?;
        total.merge(&stats);
        stopped = stopped.max(at);
    }
    let elapsed = stopped.saturating_duration_since(window.measure_from);
    let report = Report::new(&plan, addr.to_string(), &total, elapsed);
    let mut stdout = io::stdout().lock();
    if plan.json {
        writeln!(stdout, "{}", report.to_json())?;
    } else {
        write!(stdout, "{}", report.text())?;
    }
    stdout.flush()?;
    if report.ops == 0 {
        let why = report
            .first_error
            .as_deref()
            .unwrap_or("the server never answered");
        bail!("nothing completed against {addr} ({why})");
    }
    Ok(ExitCode::SUCCESS)
}

/// Wait for every thread's result, redrawing the progress line once a second when stderr
/// is a terminal.
fn collect(
    plan: &Plan,
    window: Window,
    published: &[Published],
    rx: &mpsc::Receiver<io::Result<(Stats, Instant)>>,
    threads: usize,
) -> Vec<io::Result<(Stats, Instant)>> {
    let mut results = Vec::with_capacity(threads);
    let live = io::stderr().is_terminal();
    let start = window.measure_from - plan.warmup;
    let mut next = start + PROGRESS_EVERY;
    while results.len() < threads {
        let received = if live {
            rx.recv_timeout(next.saturating_duration_since(Instant::now()))
        } else {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        match received {
            Ok(r) => results.push(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                next += PROGRESS_EVERY;
                let over = now.saturating_duration_since(window.measure_from);
                // A rate over the first instants of the run would be noise: until every
                // thread has cleared its warmup counts and some time has passed, say so.
                let so_far = (published.iter().all(Published::measuring)
                    && over >= MIN_PROGRESS_SPAN)
                    .then(|| {
                        let mut c = SoFar {
                            ops: 0,
                            bytes: 0,
                            errors: 0,
                            over,
                        };
                        for p in published {
                            let (ops, bytes, errors) = p.read();
                            (c.ops, c.bytes, c.errors) =
                                (c.ops + ops, c.bytes + bytes, c.errors + errors);
                        }
                        c
                    });
                let line = report::progress_line(plan, now - start, so_far);
                eprint!("\r\x1b[2K{line}");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if live {
        eprint!("\r\x1b[2K");
    }
    results
}

fn run_job(
    job: Job,
    plan: &Plan,
    addr: SocketAddr,
    window: Window,
    published: &Published,
    tls: Option<tls::Tls>,
) -> io::Result<(Stats, Instant)> {
    match job {
        Job::Stream(streams) => {
            let load = StreamLoad {
                size: plan.size,
                in_flight: plan.in_flight,
            };
            stream::run(streams, load, window, published)
        }
        Job::Datagram(sockets) => udp::run(sockets, plan.size, window, published),
        Job::Connect(workers) => connect::run(addr, workers, plan.size, window, published, tls),
    }
}

/// Open what the plan needs, choose the address, and deal the sockets to the threads.
fn prepare(
    plan: &Plan,
    addrs: &[SocketAddr],
    tls: Option<&tls::Tls>,
) -> anyhow::Result<(SocketAddr, Vec<Job>)> {
    let shares = plan::split(plan.connections, plan.threads);
    match (plan.proto, plan.mode) {
        (Proto::Udp, _) => {
            let addr = addrs[0];
            let mut jobs = Vec::with_capacity(shares.len());
            for share in shares {
                let sockets = (0..share)
                    .map(|_| udp_socket(addr))
                    .collect::<io::Result<Vec<_>>>()
                    .with_context(|| format!("cannot open a UDP socket towards {addr}"))?;
                jobs.push(Job::Datagram(sockets));
            }
            Ok((addr, jobs))
        }
        (Proto::Tcp, Mode::Connect) => {
            // One connection first, so that a wrong address fails here with a clear
            // message rather than as a run made only of errors.
            let (addr, _probe) = first_connection(plan, addrs, tls)?;
            Ok((addr, shares.into_iter().map(Job::Connect).collect()))
        }
        (Proto::Tcp, Mode::Pingpong | Mode::Bulk) => {
            let (addr, first) = first_connection(plan, addrs, tls)?;
            let mut opened = vec![first];
            for k in 1..plan.connections {
                let s = tcp_connection(addr, tls).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open connection {} of {} to {addr}: {e}{}",
                        k + 1,
                        plan.connections,
                        hint(&e)
                    )
                })?;
                opened.push(s);
            }
            let mut opened = opened.into_iter();
            let jobs = shares
                .into_iter()
                .map(|share| Job::Stream(opened.by_ref().take(share).collect()))
                .collect();
            Ok((addr, jobs))
        }
    }
}

/// The first address of `addrs` that accepts a connection, and that connection.
fn first_connection(
    plan: &Plan,
    addrs: &[SocketAddr],
    tls: Option<&tls::Tls>,
) -> anyhow::Result<(SocketAddr, Opened)> {
    let mut last = None;
    for &addr in addrs {
        match tcp_connection(addr, tls) {
            Ok(s) => return Ok((addr, s)),
            Err(e) => last = Some((addr, e)),
        }
    }
    let (addr, e) = last.expect("addrs is not empty");
    let target = if plan.target == addr.to_string() {
        plan.target.clone()
    } else {
        format!("{} ({addr})", plan.target)
    };
    bail!("cannot connect to {target}: {e}{}", hint(&e))
}

/// A connected, non-blocking TCP stream with Nagle's algorithm off, its TLS handshake done
/// when `tls` is given.
fn tcp_connection(addr: SocketAddr, tls: Option<&tls::Tls>) -> io::Result<Opened> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    let conn = match tls {
        Some(tls) => {
            let mut conn = tls.connection()?;
            s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
            while conn.is_handshaking() {
                conn.complete_io(&mut s)
                    .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
            }
            Some(Box::new(conn))
        }
        None => None,
    };
    s.set_nonblocking(true)?;
    Ok((s, conn))
}

/// A non-blocking UDP socket on an ephemeral port, connected to `addr` so that only its
/// echoes reach it.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// What to do about a failed connect.
fn hint(e: &io::Error) -> &'static str {
    match (e.kind(), Errno::from_io_error(e)) {
        (io::ErrorKind::ConnectionRefused, _) => "; is a server listening there?",
        (_, Some(Errno::MFILE | Errno::NFILE)) => {
            "; too many open files: raise `ulimit -n` or use fewer --connections"
        }
        (_, Some(Errno::ADDRNOTAVAIL)) => "; no local port left: use fewer --connections",
        (io::ErrorKind::TimedOut, _) => "; the server does not accept connections quickly enough",
        _ => "",
    }
}

/// Raise the soft limit on open files to the hard one, as a load generator with thousands
/// of connections needs (loadgen does the same).
fn raise_fd_limit() {
    let limit = getrlimit(Resource::Nofile);
    // The soft limit is at most the hard one, so unequal means lower (`None` is unlimited).
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}
