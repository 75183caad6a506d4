//! Bidirectional flow table: the Rust twin of `netgptd/flow/table.py`, decision for decision.
//!
//! Same keys (both directions of the 5-tuple), the same lazy timer buckets (one per second, ordered by a
//! heap) and emergency eviction, fragment trains in insertion order, active-timeout continuations, the
//! first-packet buffers, the first-segment choice of a TCP flow's login scanner, and a new flow's orientation
//! (`direction.rs`). A flow lives in a slot; its generation changes when it ends or continues, so stale timer
//! and fragment entries are recognised as Python recognises an ended `Flow` object. What Python needs comes
//! out as events (`Table::out`), in order.

use crate::decode::{Decoded, NO_FRAGMENT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::direction::client_is_src;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

pub const NS: i128 = 1_000_000_000;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
pub const STATE_NEW: u8 = 0;
pub const STATE_ESTABLISHED: u8 = 1;
pub const STATE_CLOSED: u8 = 2;

/// End reasons, in `table.py`'s REASONS order (0 = still live).
pub const REASON_TIMEOUT: u8 = 1;
pub const REASON_ACTIVE: u8 = 2;
pub const REASON_EMERGENCY: u8 = 3;
pub const REASON_REUSE: u8 = 4;
pub const REASON_SHUTDOWN: u8 = 5;

pub const SCAN_SEGMENTS: u32 = 96;
pub const SCAN_BYTES: usize = 1024;

/// A TCP flow's login scanner as far as the table needs it (`logins.py`): none yet, a shared read-only one
/// (`Shared(i)`: 0 = not a login, then ENCRYPTED's services), or a cleartext one (its service, in Python)
/// with the payload segments it still reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logins {
    None,
    Shared(u8),
    Cleartext(u32),
}

/// Services of shared scanners, after "not a login" (index 0): `logins.py`'s ENCRYPTED order.
pub const SHARED: [&str; 7] = ["", "ssh", "rdp", "imaps", "pop3s", "smtps", "ftps"];
/// Services of new cleartext scanners.
pub const CLEARTEXT: [&str; 7] = ["telnet", "http", "smtp", "ftp", "ftp/smtp", "pop3", "imap"];

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub idle: [f64; 3],
    pub emergency: [f64; 3],
    pub active: f64,
}

impl Timeouts {
    fn idle_ns(&self, state: u8, emergency: bool) -> i128 {
        let t = if emergency { self.emergency[state as usize] } else { self.idle[state as usize] };
        (t * 1e9) as i128
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// default, tcp, udp, icmp (as `FlowConfig.timeouts_for` resolves them)
    pub timeouts: [Timeouts; 4],
    pub max_flows: usize,
    pub emergency_recovery: f64,
    pub emergency_evict: f64,
    pub buffer_packets: usize,
    pub buffer_bytes: usize,
    pub payload_only: bool,
    pub max_fragment_trains: usize,
}

impl Config {
    /// Which of `timeouts` a protocol's flows follow.
    fn timeouts_index(proto: u8) -> u8 {
        match proto {
            PROTO_TCP => 1,
            17 => 2,
            PROTO_ICMP | PROTO_ICMPV6 => 3,
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    v6: bool,
}

impl Key {
    /// One of the two directions' keys, the same for both (Python keeps both in its dict; one entry here).
    fn canonical(self) -> Key {
        let reverse = Key { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, ..self };
        if (reverse.src, reverse.sport) < (self.src, self.sport) { reverse } else { self }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct TrainKey {
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    v6: bool,
    frag_id: i64,
}

pub struct Flow {
    pub id: u64,
    pub gen: u32,
    pub proto: u8,
    pub ip_version: u8,
    pub client_ip: [u8; 16],
    pub server_ip: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub start_ns: i128,
    pub last_ns: i128,
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub state: u8,
    pub flags_toserver: u8,
    pub flags_toclient: u8,
    /// The first packets, packed as written out (each i128 ts, u8 toserver, u32 length, bytes): one
    /// allocation per flow, not one per packet.
    pub first_packets: Option<Vec<u8>>,
    pub buffered: u32,
    timer_at: i128,
    timeouts: u8,
    pub end_reason: u8,
    pub logins: Logins,
    /// Python set the flow's verdict: a continuation passes it on instead of the first packets.
    pub verdict: bool,
    order: u64,
}

impl Flow {
    fn idle_deadline(&self, config: &Config, emergency: bool) -> i128 {
        self.last_ns + config.timeouts[self.timeouts as usize].idle_ns(self.state, emergency)
    }
    fn active_deadline(&self, config: &Config) -> Option<i128> {
        let active = config.timeouts[self.timeouts as usize].active;
        if active > 0.0 { Some(self.start_ns + (active * 1e9) as i128) } else { None }
    }
    fn deadline(&self, config: &Config, emergency: bool) -> i128 {
        let idle = self.idle_deadline(config, emergency);
        match self.active_deadline(config) {
            Some(active) => idle.min(active),
            None => idle,
        }
    }

    /// Its key: the same for both directions (the table's one entry per flow).
    fn key(&self) -> Key {
        let icmp = self.proto == PROTO_ICMP || self.proto == PROTO_ICMPV6;
        let (cport, sport) = if icmp { (0, 0) } else { (self.client_port, self.server_port) };
        Key { src: self.client_ip, dst: self.server_ip, sport: cport, dport: sport, proto: self.proto,
              v6: self.ip_version == 6 }.canonical()
    }
}

/// Event kinds written to `Table::out` (little-endian; see `write_flow` for a flow's layout).
pub const EV_BUFFER_FULL: u8 = 1; // flow (live)
pub const EV_ENDED: u8 = 2; // flow (its final record)
pub const EV_LOGIN_NEW: u8 = 3; // u32 slot, u8 cleartext service
pub const EV_LOGIN_SEGMENT: u8 = 4; // u32 slot, u8 toserver, u32 length, bytes
pub const EV_CONTINUED: u8 = 5; // u32 slot: an active timeout, the conversation goes on as a new record

pub struct Table {
    pub config: Config,
    slots: Vec<Option<Flow>>,
    free: Vec<usize>,
    gens: Vec<u32>,
    flows: HashMap<Key, usize>,
    trains: HashMap<TrainKey, (u64, usize, u32)>,
    train_order: BTreeMap<u64, TrainKey>,
    train_seq: u64,
    buckets: HashMap<i128, Vec<(usize, u32)>>,
    heap: BinaryHeap<Reverse<i128>>,
    next_id: u64,
    next_order: u64,
    now_s: i128,
    pub now_ns: i128,
    pub active: usize,
    pub emergency: bool,
    /// Events since the caller last took them, in order.
    pub out: Vec<u8>,
    pub flows_created: u64,
    pub evictions: [u64; 5],
    pub emergency_entered: u64,
    pub fragments_unmatched: u64,
}

fn addr(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..bytes.len()].copy_from_slice(bytes);
    out
}

fn ceil_second(ns: i128) -> i128 {
    -((-ns).div_euclid(NS))
}

impl Table {
    pub fn new(config: Config, first_flow_id: u64) -> Self {
        Table {
            config, slots: Vec::new(), free: Vec::new(), gens: Vec::new(), flows: HashMap::new(),
            trains: HashMap::new(), train_order: BTreeMap::new(), train_seq: 0, buckets: HashMap::new(),
            heap: BinaryHeap::new(), next_id: first_flow_id, next_order: 0, now_s: -1, now_ns: 0, active: 0,
            emergency: false, out: Vec::new(), flows_created: 0, evictions: [0; 5], emergency_entered: 0,
            fragments_unmatched: 0,
        }
    }

    /// Python set the verdict of the flow in `slot` (generation `gen`, as its id tells).
    pub fn set_verdict(&mut self, slot: usize, id: u64) {
        if let Some(Some(f)) = self.slots.get_mut(slot) {
            if f.id == id {
                f.verdict = true;
            }
        }
    }

    pub fn flow(&self, slot: usize) -> &Flow {
        self.slots[slot].as_ref().expect("live slot")
    }

    fn flow_mut(&mut self, slot: usize) -> &mut Flow {
        self.slots[slot].as_mut().expect("live slot")
    }

    fn live(&self, slot: usize, gen: u32) -> bool {
        matches!(&self.slots[slot], Some(f) if f.gen == gen && f.end_reason == 0)
    }

    /// Account one decoded packet (`data`: the frame its offsets refer to).
    pub fn add(&mut self, ts: i128, wire_len: u64, p: &Decoded, data: &[u8]) {
        if ts > self.now_ns {
            self.advance(ts);
        }
        let width = if p.ip_version == 4 { 4 } else { 16 };
        let src = &data[p.addr..p.addr + width];
        let dst = &data[p.addr + width..p.addr + 2 * width];
        if p.l4 < 0 {
            self.add_fragment(ts, wire_len, p, data, src, dst);
            return;
        }
        let icmp = p.proto == PROTO_ICMP || p.proto == PROTO_ICMPV6;
        let (sport, dport) = if icmp { (0, 0) } else { (p.sport, p.dport) };
        let key = Key { src: addr(src), dst: addr(dst), sport, dport, proto: p.proto, v6: width == 16 }.canonical();
        let slot = match self.flows.get(&key) {
            None => self.create(ts, p, data, src, dst, key),
            Some(&slot) => {
                let f = self.flow(slot);
                if p.proto == PROTO_TCP && f.state == STATE_CLOSED && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                    self.end(slot, REASON_REUSE);
                    self.create(ts, p, data, src, dst, key)
                } else {
                    slot
                }
            }
        };
        let f = self.flow(slot);
        let toserver = addr(src) == f.client_ip && (p.sport == f.client_port || icmp);
        self.account(slot, ts, wire_len, p, data, toserver);
        if p.frag_more && p.frag_id != NO_FRAGMENT {
            self.remember_train(p, src, dst, slot);
        }
    }

    /// Move the clock forward: due flows end.
    pub fn advance(&mut self, now_ns: i128) {
        if now_ns <= self.now_ns {
            return;
        }
        self.now_ns = now_ns;
        if now_ns.div_euclid(NS) > self.now_s {
            self.now_s = now_ns.div_euclid(NS);
            self.expire();
        }
    }

    fn account(&mut self, slot: usize, ts: i128, wire_len: u64, p: &Decoded, data: &[u8], toserver: bool) {
        let mut reschedule = false;
        {
            let f = self.slots[slot].as_mut().expect("live slot");
            if ts > f.last_ns {
                f.last_ns = ts;
            }
            if toserver {
                f.pkts_toserver += 1;
                f.bytes_toserver += wire_len;
                f.flags_toserver |= p.tcp_flags;
            } else {
                f.pkts_toclient += 1;
                f.bytes_toclient += wire_len;
                f.flags_toclient |= p.tcp_flags;
            }
            let state = f.state;
            if state != STATE_CLOSED {
                if f.proto == PROTO_TCP {
                    if p.tcp_flags & TCP_RST != 0 || (f.flags_toserver & f.flags_toclient & TCP_FIN) != 0 {
                        f.state = STATE_CLOSED;
                        reschedule = true;
                    } else if state == STATE_NEW && f.pkts_toclient > 0 && f.pkts_toserver > 0
                        && p.tcp_flags & TCP_SYN == 0 {
                        f.state = STATE_ESTABLISHED;
                        reschedule = true;
                    }
                } else if state == STATE_NEW && f.pkts_toclient > 0 && f.pkts_toserver > 0 {
                    f.state = STATE_ESTABLISHED;
                    reschedule = true;
                }
            }
        }
        if reschedule {
            self.reschedule(slot);
        }
        let end = p.end as i64;
        if self.flow(slot).proto == PROTO_TCP && 0 <= p.payload && p.payload < end {
            let logins = self.flow(slot).logins;
            if logins == Logins::None || matches!(logins, Logins::Cleartext(b) if b > 0) {
                self.scan_login(slot, p, data, toserver);
            }
        }
        let (cap, bytes, payload_only) = (self.config.buffer_packets, self.config.buffer_bytes, self.config.payload_only);
        let f = self.slots[slot].as_mut().expect("live slot");
        let mut full = false;
        if let Some(packed) = f.first_packets.as_mut() {
            if (f.buffered as usize) < cap && (p.payload < end || f.buffered == 0 || !payload_only) {
                let stop = p.end.min(p.l3 + bytes);
                let kept = &data[p.l3..stop.max(p.l3)];
                packed.extend_from_slice(&ts.to_le_bytes());
                packed.push(toserver as u8);
                packed.extend_from_slice(&(kept.len() as u32).to_le_bytes());
                packed.extend_from_slice(kept);
                f.buffered += 1;
                full = f.buffered as usize == cap;
            }
        }
        if full {
            self.write_flow(EV_BUFFER_FULL, slot);
        }
    }

    fn scan_login(&mut self, slot: usize, p: &Decoded, data: &[u8], toserver: bool) {
        let start = p.payload as usize;
        let payload = &data[start..p.end.min(start + SCAN_BYTES)];
        let f = self.slots[slot].as_mut().expect("live slot");
        if f.logins == Logins::None {
            f.logins = scanner_for(f.server_port, toserver, payload);
            match f.logins {
                Logins::Cleartext(_) => {
                    let service = cleartext_service(f.server_port, toserver, payload);
                    self.out.push(EV_LOGIN_NEW);
                    self.out.extend_from_slice(&(slot as u32).to_le_bytes());
                    self.out.push(service);
                }
                _ => return,
            }
        }
        let f = self.slots[slot].as_mut().expect("live slot");
        if let Logins::Cleartext(budget) = f.logins {
            f.logins = Logins::Cleartext(budget - 1);
            self.out.push(EV_LOGIN_SEGMENT);
            self.out.extend_from_slice(&(slot as u32).to_le_bytes());
            self.out.push(toserver as u8);
            self.out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.out.extend_from_slice(payload);
        }
    }

    fn create(&mut self, ts: i128, p: &Decoded, data: &[u8], src: &[u8], dst: &[u8], key: Key) -> usize {
        if self.active >= self.config.max_flows {
            self.make_room();
        }
        let payload = if 0 <= p.payload { data.get(p.payload as usize..p.end).unwrap_or(&[]) } else { &[] };
        let src_is_client = client_is_src(p.proto, p.tcp_flags, p.sport, p.dport, payload);
        let (client_ip, client_port, server_ip, server_port) = if src_is_client {
            (addr(src), p.sport, addr(dst), p.dport)
        } else {
            (addr(dst), p.dport, addr(src), p.sport)
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                self.slots.len() - 1
            }
        };
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let id = self.next_id;
        self.next_id += 1;
        let order = self.next_order;
        self.next_order += 1;
        let flow = Flow {
            id, gen: self.gens[slot], proto: p.proto, ip_version: p.ip_version, client_ip,
            server_ip, client_port, server_port, start_ns: ts, last_ns: ts, pkts_toserver: 0, pkts_toclient: 0,
            bytes_toserver: 0, bytes_toclient: 0, state: STATE_NEW, flags_toserver: 0, flags_toclient: 0,
            first_packets: if self.config.buffer_packets > 0 { Some(Vec::new()) } else { None }, buffered: 0,
            timer_at: 0,
            timeouts: Config::timeouts_index(p.proto), end_reason: 0, logins: Logins::None, verdict: false, order,
        };
        let deadline = flow.deadline(&self.config, self.emergency);
        self.slots[slot] = Some(flow);
        self.flows.insert(key, slot);
        self.active += 1;
        self.flows_created += 1;
        self.schedule(slot, deadline);
        slot
    }

    // -- IP fragments ------------------------------------------------------------------------

    fn train_key(p: &Decoded, src: &[u8], dst: &[u8]) -> TrainKey {
        TrainKey { src: addr(src), dst: addr(dst), proto: if p.ip_version == 4 { p.proto } else { 0 },
                   v6: p.ip_version == 6, frag_id: p.frag_id }
    }

    fn remember_train(&mut self, p: &Decoded, src: &[u8], dst: &[u8], slot: usize) {
        let key = Self::train_key(p, src, dst);
        let gen = self.flow(slot).gen;
        match self.trains.get_mut(&key) {
            Some(entry) => {
                entry.1 = slot;
                entry.2 = gen;
            }
            None => {
                let seq = self.train_seq;
                self.train_seq += 1;
                self.trains.insert(key, (seq, slot, gen));
                self.train_order.insert(seq, key);
            }
        }
        if self.trains.len() > self.config.max_fragment_trains {
            let oldest = *self.train_order.keys().next().expect("a train");
            let key = self.train_order.remove(&oldest).expect("a train");
            self.trains.remove(&key);
        }
    }

    fn add_fragment(&mut self, ts: i128, wire_len: u64, p: &Decoded, data: &[u8], src: &[u8], dst: &[u8]) {
        let key = Self::train_key(p, src, dst);
        let (seq, slot, gen) = match self.trains.get(&key) {
            Some(&entry) => entry,
            None => {
                self.fragments_unmatched += 1;
                return;
            }
        };
        if !self.live(slot, gen) {
            self.fragments_unmatched += 1;
            return;
        }
        if !p.frag_more {
            self.trains.remove(&key);
            self.train_order.remove(&seq);
        }
        let toserver = addr(src) == self.flow(slot).client_ip;
        self.account(slot, ts, wire_len, p, data, toserver);
    }

    // -- timers ------------------------------------------------------------------------------

    fn schedule(&mut self, slot: usize, deadline: i128) {
        let second = ceil_second(deadline);
        let f = self.flow_mut(slot);
        f.timer_at = second;
        let gen = f.gen;
        match self.buckets.get_mut(&second) {
            Some(bucket) => bucket.push((slot, gen)),
            None => {
                self.buckets.insert(second, vec![(slot, gen)]);
                self.heap.push(Reverse(second));
            }
        }
    }

    fn reschedule(&mut self, slot: usize) {
        let f = self.flow(slot);
        let deadline = f.deadline(&self.config, self.emergency);
        if ceil_second(deadline) < f.timer_at {
            self.schedule(slot, deadline);
        }
    }

    fn expire(&mut self) {
        while let Some(&Reverse(second)) = self.heap.peek() {
            if second > self.now_s {
                break;
            }
            self.heap.pop();
            let bucket = self.buckets.remove(&second).unwrap_or_default();
            for (slot, gen) in bucket {
                if !self.live(slot, gen) || self.flow(slot).timer_at != second {
                    continue;
                }
                let f = self.flow(slot);
                let active = f.active_deadline(&self.config);
                if f.idle_deadline(&self.config, self.emergency) <= self.now_ns {
                    self.end(slot, REASON_TIMEOUT);
                } else if matches!(active, Some(a) if a <= self.now_ns) {
                    self.restart(slot);
                } else {
                    let deadline = f.deadline(&self.config, self.emergency);
                    self.schedule(slot, deadline);
                }
            }
        }
        if self.emergency && (self.active as f64) < self.config.max_flows as f64 * self.config.emergency_recovery {
            self.emergency = false;
        }
    }

    /// A flow's record: u8 kind, u32 slot, u64 id, u8 proto, ip_version, state, tcp flags to server and to
    /// client, end reason, login kind (0 none, 1 shared, 2 cleartext), shared service; u16 client port, server
    /// port; 16 bytes client and server address; start and last (u64 low, i64 high bits each); u64 packets and bytes to server and to
    /// client; u32 buffered packets (u32::MAX: no buffer), each i128 ts, u8 toserver, u32 length, bytes.
    fn write_flow(&mut self, kind: u8, slot: usize) {
        let f = self.slots[slot].as_ref().expect("live slot");
        let out = &mut self.out;
        out.push(kind);
        out.extend_from_slice(&(slot as u32).to_le_bytes());
        out.extend_from_slice(&f.id.to_le_bytes());
        let (login_kind, login_value) = match f.logins {
            Logins::None => (0, 0),
            Logins::Shared(i) => (1, i),
            Logins::Cleartext(_) => (2, 0),
        };
        out.extend_from_slice(&[f.proto, f.ip_version, f.state, f.flags_toserver, f.flags_toclient, f.end_reason,
                                login_kind, login_value]);
        out.extend_from_slice(&f.client_port.to_le_bytes());
        out.extend_from_slice(&f.server_port.to_le_bytes());
        out.extend_from_slice(&f.client_ip);
        out.extend_from_slice(&f.server_ip);
        for ts in [f.start_ns, f.last_ns] {
            out.extend_from_slice(&(ts as u64).to_le_bytes()); // low 64 bits, then the high ones (signed)
            out.extend_from_slice(&((ts >> 64) as i64).to_le_bytes());
        }
        for v in [f.pkts_toserver, f.pkts_toclient, f.bytes_toserver, f.bytes_toclient] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        match &f.first_packets {
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(packed) => {
                out.extend_from_slice(&f.buffered.to_le_bytes());
                out.extend_from_slice(packed);
            }
        }
    }

    /// Active timeout: report the flow so far, carry on in a new record (same slot, new generation).
    fn restart(&mut self, slot: usize) {
        let (id, now) = (self.next_id, self.now_ns);
        self.next_id += 1;
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let gen = self.gens[slot];
        self.flow_mut(slot).end_reason = REASON_ACTIVE;
        self.evictions[(REASON_ACTIVE - 1) as usize] += 1;
        self.write_flow(EV_ENDED, slot);
        self.out.push(EV_CONTINUED);
        self.out.extend_from_slice(&(slot as u32).to_le_bytes());
        let f = self.flow_mut(slot);
        // A conversation with a verdict passes it on; one still waiting for it keeps its first packets.
        if f.verdict {
            f.first_packets = None;
            f.buffered = 0;
        }
        f.id = id;
        f.gen = gen;
        f.start_ns = now;
        f.last_ns = now;
        f.pkts_toserver = 0;
        f.pkts_toclient = 0;
        f.bytes_toserver = 0;
        f.bytes_toclient = 0;
        f.end_reason = 0;
        for entry in self.trains.values_mut() {
            if entry.1 == slot {
                entry.2 = gen;
            }
        }
        let deadline = self.flow(slot).deadline(&self.config, self.emergency);
        self.schedule(slot, deadline);
    }

    fn make_room(&mut self) {
        if !self.emergency {
            self.emergency = true;
            self.emergency_entered += 1;
        }
        let evict = ((self.config.max_flows as f64 * self.config.emergency_evict) as usize).max(1);
        let target = self.config.max_flows.saturating_sub(evict);
        while self.active > target {
            let second = match self.heap.peek() {
                Some(&Reverse(second)) => second,
                None => break,
            };
            loop {
                if self.active <= target {
                    break;
                }
                let entry = match self.buckets.get_mut(&second).and_then(|b| b.pop()) {
                    Some(entry) => entry,
                    None => break,
                };
                let (slot, gen) = entry;
                if self.live(slot, gen) && self.flow(slot).timer_at == second {
                    self.end(slot, REASON_EMERGENCY);
                }
            }
            if self.buckets.get(&second).map_or(true, |b| b.is_empty()) {
                self.heap.pop();
                self.buckets.remove(&second);
            }
        }
    }

    // -- ending ------------------------------------------------------------------------------

    fn end(&mut self, slot: usize, reason: u8) {
        let key = {
            let f = self.flow_mut(slot);
            f.end_reason = reason;
            f.key()
        };
        if self.flows.get(&key) == Some(&slot) {
            self.flows.remove(&key);
        }
        self.active -= 1;
        self.evictions[(reason - 1) as usize] += 1;
        self.write_flow(EV_ENDED, slot);
        self.slots[slot] = None;
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        self.free.push(slot);
    }

    /// End every tracked flow (end of input, shutdown), in the order Python's table holds them.
    pub fn flush(&mut self) {
        let mut live: Vec<(u64, usize)> =
            self.slots.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| (f.order, i))).collect();
        live.sort_unstable();
        for (_, slot) in live {
            self.end(slot, REASON_SHUTDOWN);
        }
        self.buckets.clear();
        self.heap.clear();
        self.trains.clear();
        self.train_order.clear();
    }
}

// -- the login scanner's first-segment choice (logins.py's scanner_for) ----------------------------

pub(crate) const HTTP_METHODS: [&[u8]; 7] = [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS "];

fn encrypted_port(port: u16) -> u8 {
    match port {
        22 => 1,
        3389 => 2,
        993 => 3,
        995 => 4,
        465 => 5,
        990 => 6,
        _ => 0,
    }
}

fn rdp_connection_request(payload: &[u8]) -> bool {
    if payload.len() < 11 || payload[0] != 3 || payload[1] != 0 || payload[5] & 0xF0 != 0xE0 {
        return false;
    }
    let data = &payload[11..];
    data.is_empty() || data.starts_with(b"Cookie: ")
        || (data.first() == Some(&1) && data.len() >= 4 && &data[2..4] == b"\x08\x00")
}

/// The cleartext service a new scanner gets (index into CLEARTEXT), or None for a shared scanner.
fn choice(server_port: u16, toserver: bool, payload: &[u8]) -> Result<u8, u8> {
    if payload.starts_with(b"SSH-") {
        return Err(1);
    }
    if payload.first() == Some(&0xFF) || server_port == 23 {
        return Ok(0);
    }
    if toserver {
        if HTTP_METHODS.iter().any(|m| payload.starts_with(m)) {
            return Ok(1);
        }
        if rdp_connection_request(payload) {
            return Err(2);
        }
    } else if payload.starts_with(b"220") {
        return Ok(match server_port {
            25 | 587 | 2525 => 2,
            21 => 3,
            _ => 4,
        });
    } else if payload.starts_with(b"+OK") {
        return Ok(5);
    } else if payload.starts_with(b"* OK") || payload.starts_with(b"* PREAUTH") {
        return Ok(6);
    }
    Err(encrypted_port(server_port))
}

fn scanner_for(server_port: u16, toserver: bool, payload: &[u8]) -> Logins {
    match choice(server_port, toserver, payload) {
        Ok(_) => Logins::Cleartext(SCAN_SEGMENTS),
        Err(shared) => Logins::Shared(shared),
    }
}

fn cleartext_service(server_port: u16, toserver: bool, payload: &[u8]) -> u8 {
    choice(server_port, toserver, payload).unwrap_or(0)
}
