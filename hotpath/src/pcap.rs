//! Sans-I/O pcap/pcapng record parser: the Rust twin of `netgptd/capture/pcap_format.py`.
//!
//! The caller keeps the bytes (what a feed did not consume comes back with the next); the parser keeps
//! the format, byte order and interfaces. Records are reported as offsets into the bytes fed, errors as
//! a code and the numbers the Python side words its message with.

const PCAP_MAGIC_US: u32 = 0xA1B2C3D4;
const PCAP_MAGIC_NS: u32 = 0xA1B23C4D;
const PCAP_MAGIC_KUZNETZOV: u32 = 0xA1B2CD34;
const PCAPNG_SHB: u32 = 0x0A0D0D0A;
const PCAPNG_BOM: u32 = 0x1A2B3C4D;
const BLOCK_IDB: u32 = 1;
const BLOCK_OPB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_ISB: u32 = 5;
const BLOCK_EPB: u32 = 6;
const MAX_RECORD: u64 = 1 << 24;

/// Error codes (the Python wrapper words them as `CaptureParser` does).
pub const E_MAGIC: i32 = 1; // a = big-endian magic
pub const E_PCAP_RECORD: i32 = 2; // at, a = length
pub const E_BLOCK_LENGTH: i32 = 3; // at, a = length
pub const E_BLOCK_SHORT: i32 = 4; // at, a = length, b = block type
pub const E_PACKET_LONG: i32 = 5; // at
pub const E_UNDECLARED: i32 = 6; // at, a = interface
pub const E_NO_BOM: i32 = 7; // at
pub const E_INTERNAL: i32 = 8; // a bug in this parser (a panic caught at the boundary)

pub const FORMAT_NONE: i32 = 0;
pub const FORMAT_PCAP: i32 = 1;
pub const FORMAT_PCAPNG: i32 = 2;

/// One packet record: `ts_ns` may exceed 64 bits with hostile resolutions and offsets, as in Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts_ns: i128,
    pub linktype: u32,
    pub start: usize,
    pub len: usize,
    pub orig_len: u32,
    pub interface: u32,
}

/// An interface statistics block's counters (None: absent or malformed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drops {
    pub interface: u32,
    pub received: Option<u64>,
    pub dropped_interface: Option<u64>,
    pub dropped_os: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub code: i32,
    pub at: usize,
    pub a: u64,
    pub b: u64,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    ts_mul: u128,
    ts_div: Option<u128>, // None: a divisor beyond u128, every timestamp divides to 0
    ts_offset_ns: i128,
}

impl Interface {
    fn new(linktype: u32, snaplen: u32) -> Self {
        Interface { linktype, snaplen, ts_mul: 1000, ts_div: Some(1), ts_offset_ns: 0 }
    }

    fn set_resolution(&mut self, code: u8) {
        if code & 0x80 != 0 {
            self.ts_mul = 1_000_000_000;
            self.ts_div = Some(1u128 << (code & 0x7F));
        } else {
            let exp = 9 - code as i32;
            if exp >= 0 {
                self.ts_mul = 10u128.pow(exp as u32);
                self.ts_div = Some(1);
            } else {
                self.ts_mul = 1;
                self.ts_div = 10u128.checked_pow((-exp) as u32);
            }
        }
    }

    fn to_ns(&self, ticks: u64) -> i128 {
        let scaled = ticks as u128 * self.ts_mul; // < 2^94
        let whole = match self.ts_div {
            Some(div) => scaled / div,
            None => 0,
        };
        whole as i128 + self.ts_offset_ns
    }
}

#[derive(Default)]
pub struct Parser {
    pub format: i32,
    big_endian: bool,
    pcap_ts_mul: i128,
    pcap_extra: usize,
    pcap_linktype: u32,
    pcap_header_done: bool,
    interfaces: Vec<Interface>,
    pub drops: Vec<Drops>,
    pub blocks_skipped: u64,
}

struct Reader<'a> {
    buf: &'a [u8],
    big: bool,
}

impl<'a> Reader<'a> {
    fn u16(&self, at: usize) -> u16 {
        let b = [self.buf[at], self.buf[at + 1]];
        if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }
    fn u32(&self, at: usize) -> u32 {
        let b = [self.buf[at], self.buf[at + 1], self.buf[at + 2], self.buf[at + 3]];
        if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[at..at + 8]);
        if self.big { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) }
    }
}

fn le32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn block_min(block_type: u32) -> u64 {
    match block_type {
        PCAPNG_SHB => 28,
        BLOCK_IDB => 20,
        BLOCK_OPB => 32,
        BLOCK_SPB => 16,
        BLOCK_ISB => 24,
        BLOCK_EPB => 32,
        _ => 12,
    }
}

/// A pcapng option list between `off` and `end`: the first value of each code asked for.
fn option(buf: &[u8], mut off: usize, end: usize, big: bool, want: u16) -> Option<&[u8]> {
    let r = Reader { buf, big };
    while off + 4 <= end {
        let code = r.u16(off);
        let length = r.u16(off + 2) as usize;
        if code == 0 {
            break;
        }
        if code == want {
            let stop = (off + 4 + length).min(end);
            return Some(&buf[off + 4..stop.max(off + 4)]);
        }
        off += 4 + ((length + 3) & !3);
    }
    None
}

impl Parser {
    pub fn new() -> Self {
        Parser { pcap_ts_mul: 1000, ..Default::default() }
    }

    /// Linktypes seen so far (one for pcap, one per interface of the current section for pcapng).
    pub fn linktypes(&self) -> Vec<u32> {
        if self.format == FORMAT_PCAP {
            return vec![self.pcap_linktype];
        }
        self.interfaces.iter().map(|i| i.linktype).collect()
    }

    /// Parse the whole records in `buf`; returns the bytes consumed, or the error after which the
    /// records already in `out` are still good.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<Record>) -> Result<usize, ParseError> {
        if self.format == FORMAT_NONE {
            if buf.len() < 24 {
                return Ok(0);
            }
            self.detect(buf)?;
        }
        if self.format == FORMAT_PCAP { self.feed_pcap(buf, out) } else { self.feed_pcapng(buf, out) }
    }

    fn detect(&mut self, buf: &[u8]) -> Result<(), ParseError> {
        let (le, be) = (le32(buf, 0), be32(buf, 0));
        if le == PCAPNG_SHB {
            self.format = FORMAT_PCAPNG;
            return Ok(());
        }
        for (big, magic) in [(false, le), (true, be)] {
            if magic == PCAP_MAGIC_US || magic == PCAP_MAGIC_NS || magic == PCAP_MAGIC_KUZNETZOV {
                self.format = FORMAT_PCAP;
                self.big_endian = big;
                self.pcap_ts_mul = if magic == PCAP_MAGIC_NS { 1 } else { 1000 };
                self.pcap_extra = if magic == PCAP_MAGIC_KUZNETZOV { 8 } else { 0 };
                return Ok(());
            }
        }
        Err(ParseError { code: E_MAGIC, at: 0, a: be as u64, b: 0 })
    }

    fn feed_pcap(&mut self, buf: &[u8], out: &mut Vec<Record>) -> Result<usize, ParseError> {
        let n = buf.len();
        let r = Reader { buf, big: self.big_endian };
        let mut off = 0;
        if !self.pcap_header_done {
            if n < 24 {
                return Ok(0);
            }
            self.pcap_linktype = r.u32(20) & 0x0FFF_FFFF;
            self.pcap_header_done = true;
            off = 24;
        }
        let hdr_len = 16 + self.pcap_extra;
        while off + hdr_len <= n {
            let (sec, frac, incl, orig) = (r.u32(off), r.u32(off + 4), r.u32(off + 8), r.u32(off + 12));
            let start = off + hdr_len;
            if incl as u64 > MAX_RECORD {
                return Err(ParseError { code: E_PCAP_RECORD, at: off, a: incl as u64, b: 0 });
            }
            let end = start + incl as usize;
            if end > n {
                break;
            }
            out.push(Record {
                ts_ns: sec as i128 * 1_000_000_000 + frac as i128 * self.pcap_ts_mul,
                linktype: self.pcap_linktype, start, len: incl as usize, orig_len: orig, interface: 0,
            });
            off = end;
        }
        Ok(off)
    }

    fn feed_pcapng(&mut self, buf: &[u8], out: &mut Vec<Record>) -> Result<usize, ParseError> {
        let n = buf.len();
        let mut off = 0;
        while off + 12 <= n {
            if le32(buf, off) == PCAPNG_SHB {
                self.section(buf, off)?;
            }
            let r = Reader { buf, big: self.big_endian };
            let (block_type, total) = (r.u32(off), r.u32(off + 4) as u64);
            if total < 12 || total & 3 != 0 || total > MAX_RECORD {
                return Err(ParseError { code: E_BLOCK_LENGTH, at: off, a: total, b: 0 });
            }
            if total < block_min(block_type) {
                return Err(ParseError { code: E_BLOCK_SHORT, at: off, a: total, b: block_type as u64 });
            }
            let end = off + total as usize;
            if end > n {
                break;
            }
            match block_type {
                BLOCK_EPB => {
                    let (if_id, ts_hi, ts_lo) = (r.u32(off + 8), r.u32(off + 12), r.u32(off + 16));
                    let (caplen, origlen) = (r.u32(off + 20) as u64, r.u32(off + 24));
                    if caplen > total - 32 {
                        return Err(ParseError { code: E_PACKET_LONG, at: off, a: 0, b: 0 });
                    }
                    let iface = self.iface(if_id, off)?;
                    out.push(Record {
                        ts_ns: iface.to_ns(((ts_hi as u64) << 32) | ts_lo as u64), linktype: iface.linktype,
                        start: off + 28, len: caplen as usize, orig_len: origlen, interface: if_id,
                    });
                }
                BLOCK_IDB => self.idb(buf, off + 8, end - 4),
                BLOCK_SPB => {
                    let body = off + 8;
                    let origlen = r.u32(body);
                    let iface = self.iface(0, off)?;
                    let mut caplen = (origlen as usize).min(end - 4 - body - 4);
                    if iface.snaplen != 0 {
                        caplen = caplen.min(iface.snaplen as usize);
                    }
                    out.push(Record { ts_ns: 0, linktype: iface.linktype, start: body + 4, len: caplen,
                                      orig_len: origlen, interface: 0 });
                }
                BLOCK_OPB => {
                    let body = off + 8;
                    let if_id = r.u16(body) as u32;
                    let (ts_hi, ts_lo) = (r.u32(body + 4), r.u32(body + 8));
                    let (caplen, origlen) = (r.u32(body + 12) as usize, r.u32(body + 16));
                    if body + 20 + caplen > end - 4 {
                        return Err(ParseError { code: E_PACKET_LONG, at: off, a: 0, b: 0 });
                    }
                    let iface = self.iface(if_id, off)?;
                    out.push(Record {
                        ts_ns: iface.to_ns(((ts_hi as u64) << 32) | ts_lo as u64), linktype: iface.linktype,
                        start: body + 20, len: caplen, orig_len: origlen, interface: if_id,
                    });
                }
                BLOCK_ISB => self.isb(buf, off + 8, end - 4),
                PCAPNG_SHB => {}
                _ => self.blocks_skipped += 1,
            }
            off = end;
        }
        Ok(off)
    }

    fn section(&mut self, buf: &[u8], off: usize) -> Result<(), ParseError> {
        if le32(buf, off + 8) == PCAPNG_BOM {
            self.big_endian = false;
        } else if be32(buf, off + 8) == PCAPNG_BOM {
            self.big_endian = true;
        } else {
            return Err(ParseError { code: E_NO_BOM, at: off, a: 0, b: 0 });
        }
        self.interfaces.clear();
        Ok(())
    }

    fn iface(&self, index: u32, at: usize) -> Result<Interface, ParseError> {
        match self.interfaces.get(index as usize) {
            Some(iface) => Ok(*iface),
            None => Err(ParseError { code: E_UNDECLARED, at, a: index as u64, b: 0 }),
        }
    }

    fn idb(&mut self, buf: &[u8], body: usize, end: usize) {
        let r = Reader { buf, big: self.big_endian };
        let mut iface = Interface::new(r.u16(body) as u32, r.u32(body + 4));
        if let Some(value) = option(buf, body + 8, end, self.big_endian, 9) {
            if let Some(code) = value.first() {
                iface.set_resolution(*code);
            }
        }
        if let Some(value) = option(buf, body + 8, end, self.big_endian, 14) {
            if value.len() == 8 {
                let raw = Reader { buf: value, big: self.big_endian }.u64(0) as i64;
                iface.ts_offset_ns = raw as i128 * 1_000_000_000;
            }
        }
        self.interfaces.push(iface);
    }

    fn isb(&mut self, buf: &[u8], body: usize, end: usize) {
        let r = Reader { buf, big: self.big_endian };
        let interface = r.u32(body);
        let counter = |code: u16| {
            option(buf, body + 12, end, self.big_endian, code)
                .filter(|v| v.len() == 8)
                .map(|v| Reader { buf: v, big: self.big_endian }.u64(0))
        };
        let drops = Drops { interface, received: counter(4), dropped_interface: counter(5), dropped_os: counter(7) };
        match self.drops.iter_mut().find(|d| d.interface == interface) {
            Some(slot) => *slot = drops,
            None => self.drops.push(drops),
        }
    }
}
