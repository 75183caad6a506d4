//! netgptd's compiled hot path: capture-record parsing and frame decoding, behind a C ABI that
//! `netgptd/hotpath/native.py` loads with ctypes. std only, no crate from outside.
//!
//! Work crosses the boundary in batches (a feed of capture bytes, a chunk of frames), never a call per
//! packet. The `unsafe` here is confined to turning the caller's pointers and lengths into slices; all
//! parsing is safe Rust over those slices.

pub mod decode;
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
    let mut at = 0usize;
    for i in 0..n {
        let len = lens[i];
        if len < 0 || at + len as usize > frames.len() {
            return -1;
        }
        let frame = &frames[at..at + len as usize];
        at += len as usize;
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
    h.records.clear();
    h.flat.clear();
    let (parser, records) = (&mut h.parser, &mut h.records);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| parser.feed(buf, records)));
    let (taken, error) = match result {
        Ok(Ok(taken)) => (taken, None),
        Ok(Err(e)) => (0, Some(e)),
        Err(_) => (0, Some(ParseError { code: pcap::E_INTERNAL, at: 0, a: 0, b: 0 })),
    };
    h.error = error;
    *consumed = taken;
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
