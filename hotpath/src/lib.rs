//! netgptd's compiled hot path: capture-record parsing, frame decoding and the flow table, behind a C ABI
//! that `netgptd/hotpath/native.py` loads with ctypes. std only, no crate from outside.
//!
//! Work crosses the boundary in batches (a feed of capture bytes, a chunk of frames), never a call per
//! packet. The `unsafe` here is confined to turning the caller's pointers and lengths into slices; all
//! parsing is safe Rust over those slices.

pub mod decode;
pub mod direction;
pub mod flow;
pub mod pcap;

use decode::Fail;
use pcap::{ParseError, Parser, Record};
use std::panic::AssertUnwindSafe;

/// i64 fields per decoded frame (see `write_decoded`).
pub const DECODED_FIELDS: usize = 15;
/// i64 fields per capture record (see `ngp_parser_feed`).
pub const RECORD_FIELDS: usize = 7;
/// Status of a frame whose link type has no decoder.
pub const STATUS_LINKTYPE: i64 = -1000;
/// Status of a frame the decoder failed on with a bug (a panic caught here): the caller decodes it
/// with the Python reference and counts it, instead of the process dying on hostile bytes.
pub const STATUS_PANIC: i64 = -2000;

unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 || ptr.is_null() { &[] } else { std::slice::from_raw_parts(ptr, len) }
}

unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 || ptr.is_null() { &mut [] } else { std::slice::from_raw_parts_mut(ptr, len) }
}

fn write_decoded(result: Result<decode::Decoded, Fail>, out: &mut [i64]) {
    match result {
        Ok(d) => {
            let fields = [0, d.ip_version as i64, d.addr as i64, d.proto as i64, d.sport as i64, d.dport as i64,
                          d.tcp_flags as i64, d.l3 as i64, d.l4, d.payload, d.end as i64, d.frag_id,
                          d.frag_offset as i64, d.frag_more as i64, d.cut as i64];
            out.copy_from_slice(&fields);
        }
        Err(fail) => {
            out.iter_mut().for_each(|v| *v = 0);
            out[0] = match fail {
                Fail::Error(code) => code as i64 + 1,
                Fail::NotIp(code) => -(code as i64) - 1,
                Fail::Linktype(_) => STATUS_LINKTYPE,
            };
        }
    }
}

/// The frames laid end to end in `frames`, `lens[i]` bytes each; None when a length is negative or
/// overruns `frames` (then nothing is read).
fn split_frames<'a>(frames: &'a [u8], lens: &[i64]) -> Option<Vec<&'a [u8]>> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let len = usize::try_from(len).ok()?;
        let end = at.checked_add(len).filter(|&end| end <= frames.len())?;
        out.push(&frames[at..end]);
        at = end;
    }
    Some(out)
}

/// Decode `n` frames laid end to end in `frames` (`lens[i]` bytes each, link type `linktypes[i]`) into
/// `out` (`n * DECODED_FIELDS` values): status (0 decoded, k > 0 decode error k-1, k < 0 not IP -k-1,
/// `STATUS_LINKTYPE`), then ip_version, source address offset, proto, sport, dport, tcp_flags, l3, l4,
/// payload, end, frag_id, frag_offset, frag_more, cut. Returns 0, or -1 when the lengths overrun `frames`.
///
/// # Safety
/// Each pointer must be valid for its stated number of elements.
#[no_mangle]
pub unsafe extern "C" fn ngp_decode_batch(frames: *const u8, frames_len: usize, lens: *const i64,
                                          linktypes: *const i64, n: usize, out: *mut i64) -> i32 {
    let frames = slice(frames, frames_len);
    let lens = slice(lens, n);
    let linktypes = slice(linktypes, n);
    let out = slice_mut(out, n * DECODED_FIELDS);
    let parts = match split_frames(frames, lens) {
        Some(parts) => parts,
        None => return -1,
    };
    for (i, frame) in parts.into_iter().enumerate() {
        let linktype = u32::try_from(linktypes[i]).unwrap_or(u32::MAX);
        let slot = &mut out[i * DECODED_FIELDS..(i + 1) * DECODED_FIELDS];
        match std::panic::catch_unwind(|| decode::decode(linktype, frame)) {
            Ok(result) => write_decoded(result, slot),
            Err(_) => {
                slot.iter_mut().for_each(|v| *v = 0);
                slot[0] = STATUS_PANIC;
            }
        }
    }
    0
}

/// A capture parser with the records and error of its last feed.
pub struct ParserHandle {
    parser: Parser,
    records: Vec<Record>,
    flat: Vec<i64>,
    error: Option<ParseError>,
}

impl ParserHandle {
    /// Parse `buf` into `records`, keeping the error; the bytes consumed.
    fn parse(&mut self, buf: &[u8]) -> usize {
        self.records.clear();
        let (parser, records) = (&mut self.parser, &mut self.records);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| parser.feed(buf, records)));
        let (taken, error) = match result {
            Ok(Ok(taken)) => (taken, None),
            Ok(Err(e)) => (0, Some(e)),
            Err(_) => (0, Some(ParseError { code: pcap::E_INTERNAL, at: 0, a: 0, b: 0 })),
        };
        self.error = error;
        taken
    }
}

#[no_mangle]
pub extern "C" fn ngp_parser_new() -> *mut ParserHandle {
    Box::into_raw(Box::new(ParserHandle { parser: Parser::new(), records: Vec::new(), flat: Vec::new(), error: None }))
}

/// # Safety
/// `handle` comes from `ngp_parser_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_free(handle: *mut ParserHandle) {
    if !handle.is_null() {
        drop(Box::from_raw(handle));
    }
}

/// Parse the whole records in `buf`; `*consumed` tells how many bytes they took (the caller keeps the
/// rest for the next feed). Returns the number of records; `ngp_parser_records` points at them
/// (`RECORD_FIELDS` values each: ts low 64 bits (unsigned), ts high 64 bits, linktype, start, length,
/// original length, interface). After a corrupt record, `ngp_parser_error` says what; the records before
/// it are still returned.
///
/// # Safety
/// `handle` from `ngp_parser_new`; `buf` valid for `len` bytes; `consumed` writable.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_feed(handle: *mut ParserHandle, buf: *const u8, len: usize,
                                         consumed: *mut usize) -> i64 {
    let h = &mut *handle;
    let buf = slice(buf, len);
    h.flat.clear();
    *consumed = h.parse(buf);
    for r in &h.records {
        let ts = r.ts_ns;
        h.flat.extend_from_slice(&[ts as u64 as i64, (ts >> 64) as i64, r.linktype as i64, r.start as i64,
                                   r.len as i64, r.orig_len as i64, r.interface as i64]);
    }
    h.records.len() as i64
}

/// # Safety
/// `handle` from `ngp_parser_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_records(handle: *const ParserHandle) -> *const i64 {
    (*handle).flat.as_ptr()
}

/// The last feed's error into `out` (code, at, a, b); returns the code (0: none).
///
/// # Safety
/// `handle` from `ngp_parser_new`; `out` writable for 4 values.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_error(handle: *const ParserHandle, out: *mut u64) -> i32 {
    let out = slice_mut(out, 4);
    match (*handle).error {
        Some(e) => {
            out.copy_from_slice(&[e.code as u64, e.at as u64, e.a, e.b]);
            e.code
        }
        None => 0,
    }
}

/// 0 (not known yet), 1 (pcap) or 2 (pcapng).
///
/// # Safety
/// `handle` from `ngp_parser_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_format(handle: *const ParserHandle) -> i32 {
    (*handle).parser.format
}

/// Unknown pcapng blocks skipped so far.
///
/// # Safety
/// `handle` from `ngp_parser_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_blocks_skipped(handle: *const ParserHandle) -> u64 {
    (*handle).parser.blocks_skipped
}

/// Link types seen (up to `cap` into `out`); returns how many there are.
///
/// # Safety
/// `handle` from `ngp_parser_new`; `out` writable for `cap` values.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_linktypes(handle: *const ParserHandle, out: *mut u64, cap: usize) -> usize {
    let all = (*handle).parser.linktypes();
    let out = slice_mut(out, cap);
    for (slot, value) in out.iter_mut().zip(&all) {
        *slot = *value as u64;
    }
    all.len()
}

/// Interface statistics (up to `cap` entries of 5 values: interface, presence bits (1 received,
/// 2 dropped by the interface, 4 dropped by the OS), received, dropped_interface, dropped_os);
/// returns how many there are.
///
/// # Safety
/// `handle` from `ngp_parser_new`; `out` writable for `5 * cap` values.
#[no_mangle]
pub unsafe extern "C" fn ngp_parser_drops(handle: *const ParserHandle, out: *mut u64, cap: usize) -> usize {
    let drops = &(*handle).parser.drops;
    let out = slice_mut(out, 5 * cap);
    for (chunk, d) in out.chunks_mut(5).zip(drops) {
        let bits = d.received.is_some() as u64 | (d.dropped_interface.is_some() as u64) << 1
            | (d.dropped_os.is_some() as u64) << 2;
        chunk.copy_from_slice(&[d.interface as u64, bits, d.received.unwrap_or(0),
                                d.dropped_interface.unwrap_or(0), d.dropped_os.unwrap_or(0)]);
    }
    drops.len()
}

/// Decoder + flow table: frames in, flow records out (`flow.rs`), with the decode counters by reason.
pub struct EngineHandle {
    table: flow::Table,
    decode_errors: [u64; 26],
    not_ip: [u64; 8],
    linktypes: Vec<(u32, u64)>,
    panics: u64,
    taken: Vec<u8>,
}

/// A decoder and flow table. `timeouts`: 4 x 7 values (default, tcp, udp, icmp; each new, established,
/// closed, emergency new, established, closed, active), as `FlowConfig.timeouts_for` resolves them.
///
/// # Safety
/// `timeouts` valid for 28 values.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_new(timeouts: *const f64, max_flows: u64, emergency_recovery: f64,
                                        emergency_evict: f64, buffer_packets: u64, buffer_bytes: u64,
                                        payload_only: i32, max_fragment_trains: u64, first_flow_id: u64)
                                        -> *mut EngineHandle {
    let t = slice(timeouts, 28);
    let mut resolved = [flow::Timeouts { idle: [0.0; 3], emergency: [0.0; 3], active: 0.0 }; 4];
    for (i, slot) in resolved.iter_mut().enumerate() {
        let v = &t[7 * i..7 * i + 7];
        *slot = flow::Timeouts { idle: [v[0], v[1], v[2]], emergency: [v[3], v[4], v[5]], active: v[6] };
    }
    let config = flow::Config {
        timeouts: resolved, max_flows: max_flows as usize, emergency_recovery, emergency_evict,
        buffer_packets: buffer_packets as usize, buffer_bytes: buffer_bytes as usize, payload_only: payload_only != 0,
        max_fragment_trains: max_fragment_trains as usize,
    };
    Box::into_raw(Box::new(EngineHandle {
        table: flow::Table::new(config, first_flow_id), decode_errors: [0; 26], not_ip: [0; 8],
        linktypes: Vec::new(), panics: 0, taken: Vec::new(),
    }))
}

/// # Safety
/// `handle` from `ngp_engine_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_free(handle: *mut EngineHandle) {
    if !handle.is_null() {
        drop(Box::from_raw(handle));
    }
}

fn timestamp(lo: &[u64], hi: &[i64], i: usize) -> i128 {
    match hi.get(i) {
        Some(&h) => ((h as i128) << 64) | lo[i] as i128,
        None => lo[i] as i64 as i128,
    }
}

/// Decode `n` frames (laid end to end in `frames`, `lens[i]` bytes each) and track their flows. `ts_lo`
/// holds each timestamp (signed) where `ts_hi` is null, else their low 64 bits (`ts_hi` the high ones).
/// Returns 0, or -1 (nothing read) when the lengths overrun `frames`. Events wait in the engine (`ngp_engine_events`).
///
/// # Safety
/// Each pointer valid for its number of elements (`ts_hi` may be null).
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_feed(handle: *mut EngineHandle, frames: *const u8, frames_len: usize,
                                         lens: *const i64, linktypes: *const i64, ts_lo: *const u64,
                                         ts_hi: *const i64, wire_lens: *const i64, n: usize) -> i32 {
    let h = &mut *handle;
    let frames = slice(frames, frames_len);
    let (lens, linktypes, wire_lens) = (slice(lens, n), slice(linktypes, n), slice(wire_lens, n));
    let ts_lo = slice(ts_lo, n);
    let ts_hi = if ts_hi.is_null() { &[][..] } else { slice(ts_hi, n) };
    let parts = match split_frames(frames, lens) {
        Some(parts) => parts,
        None => return -1,
    };
    for (i, frame) in parts.into_iter().enumerate() {
        let linktype = u32::try_from(linktypes[i]).unwrap_or(u32::MAX);
        h.track(timestamp(ts_lo, ts_hi, i), linktype, frame, wire_lens[i].max(0) as u64);
    }
    0
}

impl EngineHandle {
    /// Decode one frame and track its flow; count it by reason where it does not decode.
    fn track(&mut self, ts: i128, linktype: u32, frame: &[u8], wire: u64) {
        let table = &mut self.table;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let result = decode::decode(linktype, frame);
            if let Ok(packet) = &result {
                table.add(ts, wire, packet, frame);
            }
            result
        }));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(Fail::Error(code))) => self.decode_errors[code as usize] += 1,
            Ok(Err(Fail::NotIp(code))) => self.not_ip[code as usize] += 1,
            Ok(Err(Fail::Linktype(lt))) => match self.linktypes.iter_mut().find(|(k, _)| *k == lt) {
                Some(entry) => entry.1 += 1,
                None => self.linktypes.push((lt, 1)),
            },
            Err(_) => self.panics += 1,
        }
    }
}

/// Parse the whole records in `buf` with `parser` (as `ngp_parser_feed`) and track each straight away:
/// no record crosses into Python. Returns the number of records, their original lengths' sum in `*wire`.
///
/// # Safety
/// `handle` from `ngp_engine_new`, `parser` from `ngp_parser_new`; `buf` valid for `len` bytes; `consumed`
/// and `wire` writable.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_feed_capture(handle: *mut EngineHandle, parser: *mut ParserHandle,
                                                 buf: *const u8, len: usize, consumed: *mut usize,
                                                 wire: *mut u64) -> i64 {
    let (h, p) = (&mut *handle, &mut *parser);
    let buf = slice(buf, len);
    p.flat.clear();
    *consumed = p.parse(buf);
    let mut total = 0u64;
    for r in &p.records {
        total += r.orig_len as u64;
        h.track(r.ts_ns, r.linktype, &buf[r.start..r.start + r.len], r.orig_len as u64);
    }
    *wire = total;
    p.records.len() as i64
}

/// Move the flow table's clock to `ts` (low and high 64 bits): due flows end.
///
/// # Safety
/// `handle` from `ngp_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_advance(handle: *mut EngineHandle, ts_lo: u64, ts_hi: i64) {
    let h = &mut *handle;
    h.table.advance(((ts_hi as i128) << 64) | ts_lo as i128);
}

/// End every tracked flow (reason shutdown).
///
/// # Safety
/// `handle` from `ngp_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_flush(handle: *mut EngineHandle) {
    (*handle).table.flush();
}

/// What new flows buffer (after a reload).
///
/// # Safety
/// `handle` from `ngp_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_set_buffers(handle: *mut EngineHandle, packets: u64, bytes: u64, payload_only: i32) {
    let c = &mut (*handle).table.config;
    c.buffer_packets = packets as usize;
    c.buffer_bytes = bytes as usize;
    c.payload_only = payload_only != 0;
}

/// The live flow `id` in `slot` got its verdict (ignored if that flow has ended).
///
/// # Safety
/// `handle` from `ngp_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_verdict(handle: *mut EngineHandle, slot: u64, id: u64) {
    (*handle).table.set_verdict(slot as usize, id);
}

/// The events since the last call (`flow.rs`'s EV_* records), valid until the next call into the engine;
/// `*len` is their length in bytes.
///
/// # Safety
/// `handle` from `ngp_engine_new`; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_events(handle: *mut EngineHandle, len: *mut usize) -> *const u8 {
    let h = &mut *handle;
    h.taken.clear();
    std::mem::swap(&mut h.taken, &mut h.table.out);
    *len = h.taken.len();
    h.taken.as_ptr()
}

/// Counters into `out` (48 values): flows created, active, emergency entered, fragments unmatched, the 5
/// evictions by reason, emergency (0/1), clock low and high 64 bits, panics, 26 decode errors, 8 not-IP
/// reasons, then how many unknown link types there are (`ngp_engine_linktypes`).
///
/// # Safety
/// `handle` from `ngp_engine_new`; `out` writable for 48 values.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_stats(handle: *const EngineHandle, out: *mut u64) {
    let h = &*handle;
    let t = &h.table;
    let out = slice_mut(out, 48);
    let mut values = vec![t.flows_created, t.active as u64, t.emergency_entered, t.fragments_unmatched];
    values.extend_from_slice(&t.evictions);
    values.extend_from_slice(&[t.emergency as u64, t.now_ns as u64, (t.now_ns >> 64) as u64, h.panics]);
    values.extend_from_slice(&h.decode_errors);
    values.extend_from_slice(&h.not_ip);
    values.push(h.linktypes.len() as u64);
    out.copy_from_slice(&values);
}

/// Frames of link types without a decoder: up to `cap` (link type, count) pairs into `out`.
///
/// # Safety
/// `handle` from `ngp_engine_new`; `out` writable for `2 * cap` values.
#[no_mangle]
pub unsafe extern "C" fn ngp_engine_linktypes(handle: *const EngineHandle, out: *mut u64, cap: usize) -> usize {
    let h = &*handle;
    let out = slice_mut(out, 2 * cap);
    for (chunk, (lt, count)) in out.chunks_mut(2).zip(&h.linktypes) {
        chunk.copy_from_slice(&[*lt as u64, *count]);
    }
    h.linktypes.len()
}
