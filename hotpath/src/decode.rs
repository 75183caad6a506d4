//! Frame decoder: the Rust twin of `netgptd/decode/decoder.py`, field for field and reason for reason.
//!
//! Every read goes through slice indexing or `get`, so hostile bytes can make a frame fail to decode,
//! never read outside it. A tunnel's inner packet is decoded within the outer packet's end (`cut`), as
//! the Python decoder does with `data[:end]`.

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
const PROTO_IPIP: u8 = 4;
const PROTO_IPV6_IN_IP: u8 = 41;

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_VLAN: u16 = 0x8100;
const ETH_IPV6: u16 = 0x86DD;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_QINQ: u16 = 0x88A8;
const ETH_LLDP: u16 = 0x88CC;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_TEB: u16 = 0x6558;
const GRE_PPP: u16 = 0x880B;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const UDP_VXLAN: u16 = 4789;
const UDP_GTPU: u16 = 2152;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const MAX_IPV6_EXT: usize = 8;
const MAX_TUNNEL_DEPTH: u32 = 3;
pub const NO_FRAGMENT: i64 = -1;

/// Why a frame did not decode. `Error` codes index `DECODE_ERRORS`, `NotIp` codes `NOT_IP`
/// (the Python side keeps the same lists, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    Error(u8),
    NotIp(u8),
    /// No decoder for this link type (Python's `linktype_<N>`).
    Linktype(u32),
}

macro_rules! reasons {
    ($list:ident, $($name:ident = $index:expr),* $(,)?) => {
        $(pub const $name: u8 = $index;)*
    };
}

reasons!(DECODE_ERRORS,
    SLL_TRUNCATED = 0, SLL2_TRUNCATED = 1, CHDLC_TRUNCATED = 2, LOOPBACK_TRUNCATED = 3,
    ETHERNET_TRUNCATED = 4, VLAN_TRUNCATED = 5, PPPOE_TRUNCATED = 6, IEEE80211_TRUNCATED = 7,
    RADIOTAP_TRUNCATED = 8, MPLS_TRUNCATED = 9, PPP_TRUNCATED = 10, IP_TRUNCATED = 11,
    IP_BAD_VERSION = 12, IPV4_TRUNCATED = 13, IPV4_BAD_VERSION = 14, IPV4_BAD_HEADER_LENGTH = 15,
    IPV4_BAD_TOTAL_LENGTH = 16, IPV6_TRUNCATED = 17, IPV6_BAD_VERSION = 18, IPV6_EXT_TRUNCATED = 19,
    IPV6_TOO_MANY_EXT = 20, TCP_TRUNCATED = 21, TCP_BAD_HEADER_LENGTH = 22, UDP_TRUNCATED = 23,
    SCTP_TRUNCATED = 24, ICMP_TRUNCATED = 25,
);
reasons!(NOT_IP,
    LOOPBACK_FAMILY = 0, ARP = 1, LLDP = 2, LLC = 3, OTHER_ETHERTYPE = 4, IEEE80211_MANAGEMENT = 5,
    IEEE80211_PROTECTED = 6, PPP_CONTROL = 7,
);

/// A decoded IP packet: the fields of Python's `Packet` but the timestamp, frame and wire length,
/// which the caller has. `addr` is the offset of the source address (the destination follows it);
/// `cut` the length of the frame the offsets refer to (shorter than the frame inside a tunnel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub ip_version: u8,
    pub addr: usize,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub l3: usize,
    pub l4: i64,
    pub payload: i64,
    pub end: usize,
    pub frag_id: i64,
    pub frag_offset: u32,
    pub frag_more: bool,
    pub cut: usize,
}

type Result = core::result::Result<Decoded, Fail>;

fn u16_at(data: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([data[off], data[off + 1]])
}

fn err(code: u8) -> Result {
    Err(Fail::Error(code))
}

fn not_ip(code: u8) -> Result {
    Err(Fail::NotIp(code))
}

/// Decode one captured frame of `linktype`.
pub fn decode(linktype: u32, data: &[u8]) -> Result {
    match linktype {
        1 => ethernet(data, 0, 0),
        101 | 228 | 229 | 12 | 14 => ip_by_version(data, 0, 0),
        113 => {
            if data.len() < 16 {
                return err(SLL_TRUNCATED);
            }
            ethertype(data, 16, u16_at(data, 14), 0)
        }
        276 => {
            if data.len() < 20 {
                return err(SLL2_TRUNCATED);
            }
            ethertype(data, 20, u16_at(data, 0), 0)
        }
        0 | 108 => loopback(data),
        9 | 50 => ppp(data, 0, 0),
        104 => {
            if data.len() < 4 {
                return err(CHDLC_TRUNCATED);
            }
            ethertype(data, 4, u16_at(data, 2), 0)
        }
        105 => ieee80211(data, 0, 0),
        127 => {
            if data.len() < 4 {
                return err(RADIOTAP_TRUNCATED);
            }
            ieee80211(data, u16::from_le_bytes([data[2], data[3]]) as usize, 0)
        }
        other => Err(Fail::Linktype(other)),
    }
}

fn loopback(data: &[u8]) -> Result {
    if data.len() < 4 {
        return err(LOOPBACK_TRUNCATED);
    }
    let head = [data[0], data[1], data[2], data[3]];
    for family in [u32::from_le_bytes(head), u32::from_be_bytes(head)] {
        if family == 2 {
            return ipv4(data, 4, 0);
        }
        if matches!(family, 10 | 24 | 28 | 30) {
            return ipv6(data, 4, 0);
        }
    }
    not_ip(LOOPBACK_FAMILY)
}

fn ethernet(data: &[u8], off: usize, depth: u32) -> Result {
    if data.len() < off + 14 {
        return err(ETHERNET_TRUNCATED);
    }
    let kind = u16_at(data, off + 12);
    if kind == ETH_IPV4 {
        return ipv4(data, off + 14, depth);
    }
    ethertype(data, off + 14, kind, depth)
}

fn ethertype(data: &[u8], mut off: usize, mut kind: u16, depth: u32) -> Result {
    let n = data.len();
    while kind == ETH_VLAN || kind == ETH_QINQ || kind == ETH_QINQ_OLD {
        if n < off + 4 {
            return err(VLAN_TRUNCATED);
        }
        kind = u16_at(data, off + 2);
        off += 4;
    }
    match kind {
        ETH_IPV4 => ipv4(data, off, depth),
        ETH_IPV6 => ipv6(data, off, depth),
        ETH_MPLS | ETH_MPLS_MC => mpls(data, off, depth),
        ETH_PPPOE_SESSION => {
            if n < off + 6 {
                return err(PPPOE_TRUNCATED);
            }
            ppp(data, off + 6, depth)
        }
        ETH_ARP => not_ip(ARP),
        ETH_LLDP => not_ip(LLDP),
        k if k <= 1500 => not_ip(LLC),
        _ => not_ip(OTHER_ETHERTYPE),
    }
}

fn ieee80211(data: &[u8], off: usize, depth: u32) -> Result {
    if data.len() < off + 24 {
        return err(IEEE80211_TRUNCATED);
    }
    let (frame_control, flags) = (data[off], data[off + 1]);
    if (frame_control >> 2) & 0x03 != 2 {
        return not_ip(IEEE80211_MANAGEMENT);
    }
    if flags & 0x40 != 0 {
        return not_ip(IEEE80211_PROTECTED);
    }
    let mut pos = off + 24;
    if flags & 0x03 == 0x03 {
        pos += 6;
    }
    if frame_control & 0x80 != 0 {
        pos += 2;
    }
    if data.len() < pos + 8 || data[pos] != 0xAA || data[pos + 1] != 0xAA {
        return not_ip(LLC);
    }
    ethertype(data, pos + 8, u16_at(data, pos + 6), depth)
}

fn mpls(data: &[u8], mut off: usize, depth: u32) -> Result {
    loop {
        if data.len() < off + 4 {
            return err(MPLS_TRUNCATED);
        }
        let bottom = data[off + 2] & 1;
        off += 4;
        if bottom != 0 {
            break;
        }
    }
    ip_by_version(data, off, depth)
}

fn ppp(data: &[u8], mut off: usize, depth: u32) -> Result {
    let n = data.len();
    if n >= off + 2 && data[off] == 0xFF && data[off + 1] == 0x03 {
        off += 2;
    }
    if n < off + 1 {
        return err(PPP_TRUNCATED);
    }
    let protocol;
    if data[off] & 1 != 0 {
        protocol = data[off] as u16;
        off += 1;
    } else {
        if n < off + 2 {
            return err(PPP_TRUNCATED);
        }
        protocol = u16_at(data, off);
        off += 2;
    }
    match protocol {
        PPP_IPV4 => ipv4(data, off, depth),
        PPP_IPV6 => ipv6(data, off, depth),
        _ => not_ip(PPP_CONTROL),
    }
}

fn ip_by_version(data: &[u8], off: usize, depth: u32) -> Result {
    if data.len() <= off {
        return err(IP_TRUNCATED);
    }
    match data[off] >> 4 {
        4 => ipv4(data, off, depth),
        6 => ipv6(data, off, depth),
        _ => err(IP_BAD_VERSION),
    }
}

fn fragment(version: u8, addr: usize, proto: u8, l3: usize, end: usize, frag_id: i64, frag_offset: u32,
            frag_more: bool, cut: usize) -> Decoded {
    Decoded {
        ip_version: version, addr, proto, sport: 0, dport: 0, tcp_flags: 0, l3, l4: -1, payload: -1, end,
        frag_id, frag_offset, frag_more, cut,
    }
}

fn ipv4(data: &[u8], off: usize, depth: u32) -> Result {
    let n = data.len();
    if n < off + 20 {
        return err(IPV4_TRUNCATED);
    }
    let h = &data[off..off + 20];
    let vihl = h[0];
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    let ident = u16::from_be_bytes([h[4], h[5]]) as i64;
    let frag_word = u16::from_be_bytes([h[6], h[7]]);
    let proto = h[9];
    if vihl >> 4 != 4 {
        return err(IPV4_BAD_VERSION);
    }
    let hlen = ((vihl & 0x0F) as usize) << 2;
    if hlen < 20 {
        return err(IPV4_BAD_HEADER_LENGTH);
    }
    if n < off + hlen {
        return err(IPV4_TRUNCATED);
    }
    if total < hlen {
        return err(IPV4_BAD_TOTAL_LENGTH);
    }
    let end = (off + total).min(n);
    let frag_offset = ((frag_word & 0x1FFF) as u32) << 3;
    let frag_more = frag_word & 0x2000 != 0;
    let frag_id = if frag_offset != 0 || frag_more { ident } else { NO_FRAGMENT };
    if frag_offset != 0 {
        return Ok(fragment(4, off + 12, proto, off, end, frag_id, frag_offset, frag_more, n));
    }
    transport(4, off + 12, proto, data, off, off + hlen, end, frag_id, frag_more, depth)
}

fn ipv6(data: &[u8], off: usize, depth: u32) -> Result {
    let n = data.len();
    if n < off + 40 {
        return err(IPV6_TRUNCATED);
    }
    if data[off] >> 4 != 6 {
        return err(IPV6_BAD_VERSION);
    }
    let payload_len = u16_at(data, off + 4) as usize;
    let mut proto = data[off + 6];
    let end = if payload_len != 0 { (off + 40 + payload_len).min(n) } else { n };
    let mut pos = off + 40;
    let (mut frag_id, mut frag_offset, mut frag_more) = (NO_FRAGMENT, 0u32, false);
    let mut ended = false;
    for _ in 0..MAX_IPV6_EXT {
        if matches!(proto, 0 | 43 | 60 | 135 | 139 | 140) {
            if end < pos + 8 {
                return err(IPV6_EXT_TRUNCATED);
            }
            let next = data[pos];
            pos += ((data[pos + 1] as usize) + 1) << 3;
            proto = next;
        } else if proto == IPV6_AH {
            if end < pos + 8 {
                return err(IPV6_EXT_TRUNCATED);
            }
            let next = data[pos];
            pos += ((data[pos + 1] as usize) + 2) << 2;
            proto = next;
        } else if proto == IPV6_FRAGMENT {
            if end < pos + 8 {
                return err(IPV6_EXT_TRUNCATED);
            }
            let word = u16_at(data, pos + 2);
            frag_offset = (word & 0xFFF8) as u32;
            frag_more = word & 1 != 0;
            if frag_offset != 0 || frag_more {
                frag_id = u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]) as i64;
            }
            proto = data[pos];
            pos += 8;
            if frag_offset != 0 {
                ended = true;
                break;
            }
        } else {
            ended = true;
            break;
        }
    }
    if !ended {
        return err(IPV6_TOO_MANY_EXT);
    }
    if pos > end {
        return err(IPV6_EXT_TRUNCATED);
    }
    if frag_offset != 0 {
        return Ok(fragment(6, off + 8, proto, off, end, frag_id, frag_offset, frag_more, n));
    }
    transport(6, off + 8, proto, data, off, pos, end, frag_id, frag_more, depth)
}

#[allow(clippy::too_many_arguments)]
fn transport(version: u8, addr: usize, proto: u8, data: &[u8], l3: usize, l4: usize, end: usize, frag_id: i64,
             frag_more: bool, depth: u32) -> Result {
    // l4 <= end always holds here (IPv4: header within the frame; IPv6: checked by the caller).
    let avail = end - l4;
    let mut flags = 0u8;
    let (sport, dport, payload);
    if proto == PROTO_TCP {
        if avail < 20 {
            return err(TCP_TRUNCATED);
        }
        sport = u16_at(data, l4);
        dport = u16_at(data, l4 + 2);
        let doff = ((data[l4 + 12] >> 4) as usize) << 2;
        flags = data[l4 + 13];
        if doff < 20 {
            return err(TCP_BAD_HEADER_LENGTH);
        }
        if doff > avail {
            return err(TCP_TRUNCATED);
        }
        payload = l4 + doff;
    } else if proto == PROTO_UDP {
        if avail < 8 {
            return err(UDP_TRUNCATED);
        }
        sport = u16_at(data, l4);
        dport = u16_at(data, l4 + 2);
        payload = l4 + 8;
        if depth < MAX_TUNNEL_DEPTH && frag_id == NO_FRAGMENT {
            if let Some(inner) = udp_tunnel(data, payload, end, sport, dport, depth + 1) {
                return Ok(inner);
            }
        }
    } else if proto == PROTO_SCTP {
        if avail < 12 {
            return err(SCTP_TRUNCATED);
        }
        sport = u16_at(data, l4);
        dport = u16_at(data, l4 + 2);
        payload = l4 + 12;
    } else if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
        if avail < 4 {
            return err(ICMP_TRUNCATED);
        }
        sport = data[l4] as u16;
        dport = data[l4 + 1] as u16;
        payload = l4 + 4;
    } else {
        if depth < MAX_TUNNEL_DEPTH && frag_id == NO_FRAGMENT {
            if let Some(inner) = ip_tunnel(data, l4, end, proto, depth + 1) {
                return Ok(inner);
            }
        }
        sport = 0;
        dport = 0;
        payload = l4;
    }
    Ok(Decoded {
        ip_version: version, addr, proto, sport, dport, tcp_flags: flags, l3, l4: l4 as i64,
        payload: payload as i64, end, frag_id, frag_offset: 0, frag_more, cut: data.len(),
    })
}

/// The inner packet of VXLAN or GTP-U, or None to keep the outer UDP flow.
fn udp_tunnel(data: &[u8], off: usize, end: usize, sport: u16, dport: u16, depth: u32) -> Option<Decoded> {
    let inner = &data[..end];
    if dport == UDP_VXLAN && end >= off + 8 && data[off] & 0x08 != 0 {
        return ethernet(inner, off + 8, depth).ok();
    }
    if (dport == UDP_GTPU || sport == UDP_GTPU) && end >= off + 8 {
        let (flags, msg_type) = (data[off], data[off + 1]);
        if flags >> 5 != 1 || msg_type != 0xFF {
            return None;
        }
        let mut pos = off + 8;
        if flags & 0x07 != 0 {
            pos += 4;
            let mut next_ext = if pos <= end { data[pos - 1] } else { 0 };
            while next_ext != 0 && pos < end {
                let ext_len = (data[pos] as usize) << 2;
                if ext_len == 0 {
                    return None;
                }
                pos += ext_len;
                next_ext = if pos <= end { data[pos - 1] } else { 0 };
            }
        }
        return ip_by_version(inner, pos, depth).ok();
    }
    None
}

/// The inner packet of GRE or IP-in-IP, or None to keep the outer flow.
fn ip_tunnel(data: &[u8], off: usize, end: usize, proto: u8, depth: u32) -> Option<Decoded> {
    let inner = &data[..end];
    if proto == PROTO_IPIP {
        return ipv4(inner, off, depth).ok();
    }
    if proto == PROTO_IPV6_IN_IP {
        return ipv6(inner, off, depth).ok();
    }
    if proto == PROTO_GRE && end >= off + 4 {
        let flags_version = u16_at(data, off);
        let kind = u16_at(data, off + 2);
        let version = flags_version & 0x07;
        let bit = |mask: u16| if flags_version & mask != 0 { 4 } else { 0 };
        if version == 1 && kind == GRE_PPP {
            return ppp(inner, off + 8 + bit(0x1000) + bit(0x0080), depth).ok();
        }
        if version != 0 {
            return None;
        }
        let pos = off + 4 + bit(0x8000) + bit(0x2000) + bit(0x1000);
        if kind == ETH_TEB {
            return ethernet(inner, pos, depth).ok();
        }
        if kind == ETH_IPV4 || kind == ETH_IPV6 {
            return ethertype(inner, pos, kind, depth).ok();
        }
    }
    None
}
