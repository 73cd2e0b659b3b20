//! Message search at 1,000,000 messages: `cargo bench --bench search`.
//!
//! Builds a search index of `SEARCH_MESSAGES` (default 1,000,000) generated messages in 200
//! channels (4 to 20 words each from a 20,000-word vocabulary with Zipf frequencies, so a few
//! words are in a large share of messages), through the same `SearchIndex` the server uses,
//! then times 2,000 searches of four kinds, newest first and by relevance, with every channel
//! readable (the widest scope) and with 20 readable channels. Reports p50, p99 and max.

use std::time::{Duration, Instant};

use decentd::search::{Doc, SearchIndex, SearchQuery};

/// A small deterministic generator, so every run measures the same index.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

/// Makes one query text of a kind.
type QueryMaker<'a> = Box<dyn Fn(&mut Lcg) -> String + 'a>;

const VOCABULARY: usize = 20_000;
const CHANNELS: u64 = 200;

fn vocabulary(rng: &mut Lcg) -> Vec<String> {
    (0..VOCABULARY)
        .map(|i| {
            let len = 3 + (rng.next() % 8) as usize;
            let mut w: String = (0..len)
                .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                .collect();
            w.push_str(&format!("{}", i % 7)); // keeps words distinct enough
            w
        })
        .collect()
}

/// A word index with Zipf(1) frequencies: rank r is drawn with probability ∝ 1/r.
fn zipf(rng: &mut Lcg, cumulative: &[f64]) -> usize {
    let x = rng.unit() * cumulative[cumulative.len() - 1];
    cumulative
        .partition_point(|c| *c < x)
        .min(cumulative.len() - 1)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: building a million-message
    // index in a debug build would take minutes, so it only says how to run it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("search benchmark: run it with `cargo bench --bench search`");
        return;
    }
    let messages: u64 = std::env::var("SEARCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Lcg(42);
    let words = vocabulary(&mut rng);
    let mut cumulative = Vec::with_capacity(VOCABULARY);
    let mut total = 0.0;
    for rank in 1..=VOCABULARY {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = SearchIndex::open(dir.path()).unwrap();
    let started = Instant::now();
    for id in 1..=messages {
        let n = 4 + (rng.next() % 17) as usize;
        let text: Vec<&str> = (0..n)
            .map(|_| words[zipf(&mut rng, &cumulative)].as_str())
            .collect();
        index.put_wait(Doc {
            id,
            text: text.join(" "),
            author: 1 + rng.next() % 5_000,
            channel: 1 + id % CHANNELS,
            parties: None,
            created_ms: 1_700_000_000_000 + id,
        });
    }
    index.flush();
    let build = started.elapsed();
    println!(
        "search index: {messages} messages built in {:.1} s ({:.0} messages/s)",
        build.as_secs_f64(),
        messages as f64 / build.as_secs_f64()
    );

    let kinds: [(&str, QueryMaker); 4] = [
        (
            "a frequent word (rank 10-100)",
            Box::new(|r: &mut Lcg| words[10 + (r.next() % 90) as usize].clone()),
        ),
        (
            "a rare word (rank 5,000-20,000)",
            Box::new(|r: &mut Lcg| words[5_000 + (r.next() % 15_000) as usize].clone()),
        ),
        (
            "two words (frequent + middling)",
            Box::new(|r: &mut Lcg| {
                format!(
                    "{} {}",
                    words[10 + (r.next() % 90) as usize],
                    words[200 + (r.next() % 800) as usize]
                )
            }),
        ),
        (
            "a 3-letter prefix of a frequent word",
            Box::new(|r: &mut Lcg| words[10 + (r.next() % 90) as usize][..3].to_owned()),
        ),
    ];
    let all: Vec<u64> = (1..=CHANNELS).collect();
    let some: Vec<u64> = (1..=20).collect();
    for (scope, channels) in [("all 200 channels", &all), ("20 channels", &some)] {
        for by_relevance in [false, true] {
            for (kind, make) in &kinds {
                let mut times = Vec::new();
                let mut hits = 0;
                for _ in 0..500 {
                    let q = SearchQuery {
                        text: make(&mut rng),
                        channels: channels.clone(),
                        by_relevance,
                        limit: 20,
                        ..Default::default()
                    };
                    let t = Instant::now();
                    hits += index.search(&q).unwrap().len();
                    times.push(t.elapsed());
                }
                times.sort();
                println!(
                    "{scope}, {}, {kind}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.1} hits per page)",
                    if by_relevance { "by relevance" } else { "newest first" },
                    percentile(&times, 0.5).as_secs_f64() * 1e3,
                    percentile(&times, 0.99).as_secs_f64() * 1e3,
                    times.last().unwrap().as_secs_f64() * 1e3,
                    hits as f64 / 500.0
                );
            }
        }
    }
    index.close();
}
