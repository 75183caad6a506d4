//! Which side of a new flow is the client: the Rust twin of `netgptd/flow/direction.py`, rule for rule
//! (its docstring explains them). In order, the first that decides wins: the TCP handshake flags, what the
//! first payload says (DNS QR bit, HTTP request or response, TLS ClientHello or ServerHello), the ports'
//! roles (a service port faces a non-service one; else an ephemeral port faces a lower one), and last the
//! first packet's sender. ICMP keeps its first sender.

use crate::decode::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::flow::HTTP_METHODS;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const DNS_PORTS: [u16; 3] = [53, 5353, 5355];
const DNS_OPCODES: [u8; 3] = [0, 4, 5];
/// `direction.py`'s SERVICE_PORTS, sorted.
const SERVICE_PORTS: [u16; 56] = [
    1080, 1194, 1433, 1521, 1701, 1723, 1812, 1813, 1883, 1900, 2049, 2181, 2222, 2375, 2376, 2404, 3128,
    3260, 3268, 3306, 3389, 3478, 3690, 4222, 4500, 4840, 5060, 5061, 5222, 5349, 5353, 5355, 5432, 5671,
    5672, 5683, 5900, 5985, 5986, 6379, 6443, 6653, 6667, 7547, 8008, 8080, 8443, 8883, 9092, 9100, 9200,
    11211, 20000, 27017, 44818, 47808,
];
const EPHEMERAL_MIN: u16 = 32768;
const TLS_HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

pub fn is_service_port(port: u16) -> bool {
    (0 < port && port < 1024) || SERVICE_PORTS.binary_search(&port).is_ok()
}

/// Some(true): the payload is a request (its sender the client); Some(false): a reply; None: it does not say.
fn payload_says(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Option<bool> {
    if DNS_PORTS.contains(&sport) || DNS_PORTS.contains(&dport) {
        let flags = if proto == PROTO_TCP { 4 } else { 2 }; // the flags byte, behind TCP's length prefix
        // A whole 12-byte header that looks like DNS (opcode QUERY, NOTIFY or UPDATE, under 256 questions).
        if payload.len() >= flags + 10 && DNS_OPCODES.contains(&((payload[flags] >> 3) & 0x0F))
            && payload[flags + 2] == 0 {
            return Some(payload[flags] & 0x80 == 0);
        }
    }
    if payload.starts_with(b"HTTP/1.") {
        return Some(false);
    }
    if HTTP_METHODS.iter().any(|m| payload.starts_with(m)) {
        return Some(true);
    }
    if proto == PROTO_TCP && payload.len() >= 6 && payload[0] == TLS_HANDSHAKE && payload[1] == 3 {
        if payload[5] == CLIENT_HELLO {
            return Some(true);
        }
        if payload[5] == SERVER_HELLO {
            return Some(false);
        }
    }
    None
}

/// Some(true): the source port is the client's; Some(false): the destination port is; None: they do not say.
fn ports_say(sport: u16, dport: u16) -> Option<bool> {
    let (src_service, dst_service) = (is_service_port(sport), is_service_port(dport));
    if src_service != dst_service {
        return Some(dst_service);
    }
    if !src_service {
        let (src_ephemeral, dst_ephemeral) = (sport >= EPHEMERAL_MIN, dport >= EPHEMERAL_MIN);
        if src_ephemeral && !dst_ephemeral && dport != 0 {
            return Some(true);
        }
        if dst_ephemeral && !src_ephemeral && sport != 0 {
            return Some(false);
        }
    }
    None
}

/// Whether the first packet's sender is the new flow's client; `payload`: its transport payload.
pub fn client_is_src(proto: u8, tcp_flags: u8, sport: u16, dport: u16, payload: &[u8]) -> bool {
    if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
        return true;
    }
    if proto == PROTO_TCP {
        let handshake = tcp_flags & (TCP_SYN | TCP_ACK);
        if handshake == TCP_SYN {
            return true;
        }
        if handshake == TCP_SYN | TCP_ACK {
            return false;
        }
    }
    if !payload.is_empty() && (proto == PROTO_TCP || proto == PROTO_UDP) {
        if let Some(said) = payload_says(proto, sport, dport, payload) {
            return said;
        }
    }
    ports_say(sport, dport).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ports_are_sorted_for_the_binary_search() {
        assert!(SERVICE_PORTS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_rules_in_order() {
        assert!(client_is_src(PROTO_TCP, TCP_SYN, 443, 50000, b""));
        assert!(!client_is_src(PROTO_TCP, TCP_SYN | TCP_ACK, 50000, 443, b""));
        assert!(!client_is_src(PROTO_UDP, 0, 40000, 53, b"\x12\x34\x81\x80\0\x01\0\x01\0\0\0\0"));
        assert!(client_is_src(PROTO_UDP, 0, 53, 40000, b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0"));
        assert!(!client_is_src(PROTO_TCP, TCP_ACK, 40000, 8081, b"HTTP/1.1 200 OK\r\n"));
        assert!(!client_is_src(PROTO_TCP, TCP_ACK, 443, 50000, b""));
        assert!(client_is_src(PROTO_TCP, TCP_ACK, 50000, 9999, b""));
        assert!(!client_is_src(PROTO_UDP, 0, 12000, 40000, b"x"));
        assert!(client_is_src(PROTO_UDP, 0, 40000, 50000, b"x"));
        assert!(client_is_src(PROTO_ICMP, 0, 0, 8, b""));
    }
}
