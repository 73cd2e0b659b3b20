//! WebSocket fan-out benchmark: starts the release `decentd` on loopback, connects N logged-in
//! sockets (they answer every pingdata), posts messages at a fixed rate over HTTP, and measures
//! for each message the time from the start of its POST to its delivery on the last socket
//! (p50/p99 over messages), the messages lost (deliveries missing on any socket), and the
//! server's RSS per idle socket.
//!
//! Delivery is when a frame reached the client's socket: the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`), so the harness's own reading is not counted. The harness shares the
//! machine's cores with the server, so it is built to cost little and to yield: after a
//! tungstenite handshake, each socket is read raw by one of two threads that run at the lowest
//! CPU priority (nice 19), wake every 2 ms and drain whatever epoll reports ready (frames are
//! parsed with tungstenite's frame header). The p99 as read by the harness (arrival plus its
//! batching, waiting for CPU and processing) is reported alongside.
//!
//! The sockets speak one gateway: the Decent WebSocket at `/` or the SignalR hub at `/hub`
//! (JSON hub protocol, the session as `access_token`, a Ping answered with a Ping as clients
//! keep alive), so the two can be compared on one machine in one session.
//!
//! Run: `cargo bench --bench fanout` (env: FANOUT_SOCKETS, default "1000,10000";
//! FANOUT_GATEWAYS, default "decent,hub"; FANOUT_RATE messages/s, default 10; FANOUT_SECONDS,
//! default 20). Under `cargo test` it only
//! prints how to run it. Needs `ulimit -n` above the socket count (client and server each hold
//! one descriptor per socket).

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};
use std::io::{Cursor, IoSliceMut, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{self, Message};

mod support;

use support::{env_or, post_json, start_server};

/// Users the sockets are spread over (each user's sockets share one session).
const USERS: usize = 100;
/// Reader threads, and how long each sleeps between draining the ready sockets.
const READERS: usize = 2;
const BATCH: Duration = Duration::from_millis(2);
const PINGDATA: &[u8] = br#"{"evt":"pingdata"}"#;
/// The hub's Ping record.
const HUB_PING: &[u8] = b"{\"type\":6}\x1e";

/// Which gateway the sockets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    /// `/`: pingdata answered with pongdata.
    Decent,
    /// `/hub`: SignalR, Pings answered with Pings.
    Hub,
}

impl Gateway {
    fn name(self) -> &'static str {
        match self {
            Gateway::Decent => "/",
            Gateway::Hub => "/hub",
        }
    }

    /// The server's keep-alive frame payload.
    fn keep_alive(self) -> &'static [u8] {
        match self {
            Gateway::Decent => PINGDATA,
            Gateway::Hub => HUB_PING,
        }
    }
}

/// When the harness saw one message: the latest arrival and latest read over the sockets of
/// one reader (ns since the Unix epoch), and on how many sockets.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    arrival_ns: u64,
    read_ns: u64,
    count: usize,
}

/// One socket in raw mode.
struct Sock {
    stream: TcpStream,
    buf: Vec<u8>,
    /// What the socket answers the server's keep-alive with (an encoded frame).
    pong: Vec<u8>,
    keep_alive: &'static [u8],
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The sequence number of a `message/new` frame for a benchmark message (`"text":"seq N"`),
/// as `/` (`"evt":"message/new"`) or the hub (`ReceiveEvent("message/new", ...)`) frames it.
fn seq_of(frame: &str) -> Option<usize> {
    if !frame.contains(r#""evt":"message/new""#) && !frame.contains(r#"["message/new","#) {
        return None;
    }
    let at = frame.find(r#""text":"seq "#)? + r#""text":"seq "#.len();
    let digits: String = frame[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A masked client text frame.
fn client_text(text: &str) -> Vec<u8> {
    let mut frame = Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some([0x37, 0xfa, 0x21, 0x3d]);
    let mut out = Vec::new();
    frame.format(&mut out).expect("format a frame");
    out
}

/// Connects one socket: at `/` it answers its first pingdata, at `/hub` it completes the
/// handshake; then it hands the raw stream over.
fn connect(addr: &str, session: &str, gateway: Gateway) -> Sock {
    let stream = TcpStream::connect(addr).expect("connect");
    let (pong, url) = match gateway {
        Gateway::Decent => (
            json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string(),
            format!("ws://{addr}/"),
        ),
        Gateway::Hub => (
            String::from_utf8(HUB_PING.to_vec()).unwrap(),
            format!("ws://{addr}/hub?access_token={session}"),
        ),
    };
    let (mut ws, _) = tungstenite::client(url, stream).expect("handshake");
    match gateway {
        Gateway::Decent => {
            loop {
                match ws.read().expect("first frames") {
                    Message::Text(text) if text.as_bytes() == PINGDATA => break,
                    _ => continue,
                }
            }
            ws.send(Message::text(pong.clone())).expect("pong");
        }
        Gateway::Hub => {
            ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
                .expect("hub handshake");
            match ws.read().expect("handshake response") {
                Message::Text(text) if text.as_str() == "{}\u{1e}" => {}
                other => panic!("hub handshake refused: {other:?}"),
            }
        }
    }
    let stream = ws.get_ref().try_clone().expect("clone the stream");
    stream.set_nonblocking(true).expect("nonblocking");
    setsockopt(&stream, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    Sock {
        stream,
        buf: Vec::new(),
        pong: client_text(&pong),
        keep_alive: gateway.keep_alive(),
    }
}

/// Reads everything a socket has, recording benchmark messages and answering pingdata.
fn drain(sock: &mut Sock, seen: &mut [Seen]) {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let (bytes, arrival_ns) = match recvmsg::<()>(
            sock.stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(msg) => {
                let arrival = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(ts) => {
                            Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
                        }
                        _ => None,
                    })
                });
                (msg.bytes, arrival)
            }
            Err(_) => return,
        };
        if bytes == 0 {
            return;
        }
        let read_ns = now_ns();
        // The timestamp is the last segment's: an earlier frame in the same read is counted
        // as arriving later than it did, never earlier.
        let arrival_ns = arrival_ns.unwrap_or(read_ns);
        sock.buf.extend_from_slice(&chunk[..bytes]);
        let mut consumed = 0;
        loop {
            let mut cursor = Cursor::new(&sock.buf[consumed..]);
            let Ok(Some((_, len))) = FrameHeader::parse(&mut cursor) else {
                break;
            };
            let start = consumed + cursor.position() as usize;
            let end = start + len as usize;
            if end > sock.buf.len() {
                break;
            }
            let payload = &sock.buf[start..end];
            if payload == sock.keep_alive {
                let _ = sock.stream.write_all(&sock.pong);
            } else if let Some(seq) = std::str::from_utf8(payload).ok().and_then(seq_of) {
                if let Some(s) = seen.get_mut(seq) {
                    s.arrival_ns = s.arrival_ns.max(arrival_ns);
                    s.read_ns = s.read_ns.max(read_ns);
                    s.count += 1;
                }
            }
            consumed = end;
        }
        sock.buf.drain(..consumed);
    }
}

/// Drains its sockets every `BATCH` until `stop`, at the lowest CPU priority: on a shared
/// machine the harness takes only the time the server leaves, as a client on another machine
/// would.
fn reader(mut socks: Vec<Sock>, messages: usize, stop: Arc<AtomicBool>) -> Vec<Seen> {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        eprintln!("cannot lower the reader's priority: {e}");
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    for (i, sock) in socks.iter().enumerate() {
        epoll
            .add(&sock.stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .expect("epoll add");
    }
    let mut seen = vec![Seen::default(); messages];
    let mut events = vec![EpollEvent::empty(); 1024];
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(BATCH);
        loop {
            let n = epoll.wait(&mut events, EpollTimeout::ZERO).unwrap_or(0);
            for event in &events[..n] {
                drain(&mut socks[event.data() as usize], &mut seen);
            }
            if n < events.len() {
                break;
            }
        }
    }
    seen
}

async fn run(sockets: usize, gateway: Gateway, rate: u64, seconds: u64) {
    // Cheap password hashing: the benchmark registers many users; it measures fan-out.
    let max = (sockets + 100).to_string();
    let server = start_server(&[
        "--admin",
        "user0",
        "--scrypt-log-n",
        "10",
        "--max-websockets",
        &max,
    ]);
    let pid = server.child.id();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let mut sessions = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let creds = json!({"username": format!("user{i}"), "password": "benchmark-password"});
        post_json(&http, format!("{base}/api/users"), None, creds.clone()).await;
        let s = post_json(&http, format!("{base}/api/sessions"), None, creds).await;
        sessions.push(s["sessionID"].as_str().unwrap().to_owned());
    }
    let channel = post_json(
        &http,
        format!("{base}/api/channels"),
        Some(&sessions[0]),
        json!({"name": "general"}),
    )
    .await["channelID"]
        .as_str()
        .unwrap()
        .to_owned();

    let messages = (rate * seconds) as usize;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = support::status_kib(pid, "VmRSS:");
    // Blocking handshakes, four at a time, then the sockets go to the reader threads.
    let addr = server.addr.clone();
    let all_sessions = sessions.clone();
    let socks = tokio::task::spawn_blocking(move || {
        let per = sockets.div_ceil(4);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (addr, sessions) = (addr.clone(), all_sessions.clone());
                std::thread::spawn(move || {
                    (t * per..((t + 1) * per).min(sockets))
                        .map(|i| connect(&addr, &sessions[i % USERS], gateway))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("connect thread"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut groups: Vec<Vec<Sock>> = (0..READERS).map(|_| Vec::new()).collect();
    for (i, sock) in socks.into_iter().enumerate() {
        groups[i % READERS].push(sock);
    }
    let readers: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let stop = stop.clone();
            std::thread::spawn(move || reader(group, messages, stop))
        })
        .collect();
    // Wait until every socket is connected and has ponged (all users online), then idle.
    for _ in 0..600 {
        let users: Value = http
            .get(format!("{base}/api/users"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let online = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["online"] == true)
            .count();
        if online == USERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = support::status_kib(pid, "VmRSS:");

    let mut sent_ns = vec![0u64; messages];
    let answered_ns: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..messages).map(|_| Default::default()).collect());
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for (seq, sent) in sent_ns.iter_mut().enumerate() {
        ticker.tick().await;
        *sent = now_ns();
        let body = json!({"channelID": channel, "text": format!("seq {seq}")});
        let http = http.clone();
        let url = format!("{base}/api/messages");
        let session = sessions[seq % USERS].clone();
        let answered_ns = answered_ns.clone();
        tokio::spawn(async move {
            post_json(&http, url, Some(&session), body).await;
            answered_ns[seq].store(now_ns(), Ordering::Relaxed);
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut deliveries = vec![Seen::default(); messages];
    for reader in readers {
        for (total, part) in deliveries.iter_mut().zip(reader.join().expect("reader")) {
            total.arrival_ns = total.arrival_ns.max(part.arrival_ns);
            total.read_ns = total.read_ns.max(part.read_ns);
            total.count += part.count;
        }
    }

    if let Ok(path) = std::env::var("FANOUT_DUMP") {
        // One line per message: seq, sent (ms since the first), arrival, read, answered (ms).
        let first = sent_ns.first().copied().unwrap_or(0);
        let lines: String = deliveries
            .iter()
            .zip(&sent_ns)
            .enumerate()
            .map(|(seq, (seen, sent))| {
                let ms = |t: u64| t.saturating_sub(*sent) as f64 / 1e6;
                format!(
                    "{seq} {:.1} {:.1} {:.1} {:.1} {}\n",
                    (sent - first) as f64 / 1e6,
                    ms(seen.arrival_ns),
                    ms(seen.read_ns),
                    ms(answered_ns[seq].load(Ordering::Relaxed)),
                    seen.count
                )
            })
            .collect();
        let _ = std::fs::write(path, lines);
    }
    let mut arrival_ms = Vec::with_capacity(messages);
    let mut read_ms = Vec::with_capacity(messages);
    let mut answered_ms: Vec<f64> = answered_ns
        .iter()
        .zip(&sent_ns)
        .map(|(a, s)| a.load(Ordering::Relaxed).saturating_sub(*s) as f64 / 1e6)
        .collect();
    let mut lost = 0usize;
    for (seen, sent) in deliveries.iter().zip(&sent_ns) {
        lost += sockets.saturating_sub(seen.count);
        if seen.count == sockets {
            arrival_ms.push(seen.arrival_ns.saturating_sub(*sent) as f64 / 1e6);
            read_ms.push(seen.read_ns.saturating_sub(*sent) as f64 / 1e6);
        }
    }
    let per_socket_kib = (rss_idle.saturating_sub(rss_before)) as f64 / sockets as f64;
    println!(
        "| {} | {sockets} | {rate}/s × {seconds} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} / {:.1} ms | {lost} of {} | {:.1} KiB | {:.1} MiB |",
        gateway.name(),
        percentile(&mut arrival_ms, 0.5),
        percentile(&mut arrival_ms, 0.99),
        percentile(&mut read_ms, 0.99),
        percentile(&mut answered_ms, 0.5),
        percentile(&mut answered_ms, 0.99),
        messages * sockets,
        per_socket_kib,
        support::status_kib(pid, "VmRSS:") as f64 / 1024.0
    );
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(((values.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fan-out benchmark: run it with `cargo bench --bench fanout`");
        return;
    }
    let counts: Vec<usize> = std::env::var("FANOUT_SOCKETS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rate = env_or("FANOUT_RATE", 10).max(1);
    let seconds = env_or("FANOUT_SECONDS", 20).max(1);
    println!("decentd fan-out benchmark: POST start → delivery on the last socket");
    let gateways: Vec<Gateway> = std::env::var("FANOUT_GATEWAYS")
        .unwrap_or_else(|_| "decent,hub".into())
        .split(',')
        .filter_map(|g| match g.trim() {
            "decent" | "/" => Some(Gateway::Decent),
            "hub" | "/hub" => Some(Gateway::Hub),
            _ => None,
        })
        .collect();
    println!("| gateway | sockets | messages | p50 | p99 | p99 as read by the harness | POST answered p50 / p99 | deliveries lost | RSS per idle socket | server RSS at end |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for n in counts {
        for &gateway in &gateways {
            rt.block_on(run(n, gateway, rate, seconds));
        }
    }
}
