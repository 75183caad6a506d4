//! Bench (not shipped): the compiled parser and decoder alone over a capture file, no Python in the loop.
//! `bench/replay_throughput.py` runs it beside the Python engines to show what crossing into Python per
//! packet costs: `cargo run --release --example read_decode -- FILE`.

use _native::{decode, pcap};
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: read_decode FILE");
    let data = std::fs::read(&path).expect("cannot read the capture");
    let mut best = f64::INFINITY;
    let (mut packets, mut decoded) = (0usize, 0usize);
    for _ in 0..5 {
        let start = Instant::now();
        let mut parser = pcap::Parser::new();
        let mut records = Vec::new();
        let _ = parser.feed(&data, &mut records);
        decoded = records
            .iter()
            .filter(|r| decode::decode(r.linktype, &data[r.start..r.start + r.len]).is_ok())
            .count();
        packets = records.len();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("{} {} {:.6}", packets, decoded, best);
}
