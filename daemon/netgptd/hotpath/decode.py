"""Frames to packets in batches through the compiled decoder: the same ``Packet`` tuples, ``DecodeError``
and ``NotIP`` reasons as :func:`netgptd.decode.decoder.decode`, one call into Rust per batch."""

from __future__ import annotations

import struct
from array import array
from typing import Sequence

from netgptd.capture.records import PacketRecord
from netgptd.decode.decoder import decode
from netgptd.decode.packet import DecodeError, NotIP, Packet
from netgptd.hotpath.native import DECODED_FIELDS, STATUS_LINKTYPE, library

# The reason lists of hotpath/src/decode.rs, in its order.
DECODE_ERRORS = (
    "sll_truncated", "sll2_truncated", "chdlc_truncated", "loopback_truncated", "ethernet_truncated",
    "vlan_truncated", "pppoe_truncated", "ieee80211_truncated", "radiotap_truncated", "mpls_truncated",
    "ppp_truncated", "ip_truncated", "ip_bad_version", "ipv4_truncated", "ipv4_bad_version",
    "ipv4_bad_header_length", "ipv4_bad_total_length", "ipv6_truncated", "ipv6_bad_version",
    "ipv6_ext_truncated", "ipv6_too_many_ext", "tcp_truncated", "tcp_bad_header_length", "udp_truncated",
    "sctp_truncated", "icmp_truncated",
)  # fmt: skip
NOT_IP = ("loopback_family", "arp", "lldp", "llc", "other_ethertype", "ieee80211_management",
          "ieee80211_protected", "ppp_control")  # fmt: skip
STATUS_PANIC = -2000

_fields = struct.Struct(f"={DECODED_FIELDS}q").iter_unpack
_new_packet = tuple.__new__

Decoded = Packet | DecodeError | NotIP


class BatchDecoder:
    """Decodes batches of records in Rust; ``panics`` counts frames it failed on, decoded in Python instead."""

    def __init__(self) -> None:
        self._decode = library().ngp_decode_batch
        self.panics = 0

    def decode(self, records: Sequence[PacketRecord]) -> list[Decoded]:
        """Each record's ``Packet``, or the ``DecodeError``/``NotIP`` it would raise (not raised)."""
        n = len(records)
        if not n:
            return []
        stamps, linktypes, frames, wire_lens = list(zip(*records))[:4]
        joined = b"".join(frames)
        lens = array("q", map(len, frames))
        kinds = array("q", linktypes)
        out = array("q", bytes(8 * DECODED_FIELDS * n))
        if self._decode(joined, len(joined), lens.buffer_info()[0], kinds.buffer_info()[0], n, out.buffer_info()[0]):
            raise RuntimeError("compiled decoder: frame lengths overrun the batch")  # cannot happen: lens from frames
        result: list[Decoded] = []
        append = result.append
        for (status, version, addr, proto, sport, dport, flags, l3, l4, payload, end, frag_id, frag_offset,
             frag_more, cut), ts, data, wire_len in zip(_fields(out), stamps, frames, wire_lens):  # fmt: skip
            if status == 0:
                if cut != len(data):
                    data = data[:cut]  # inside a tunnel: the frame up to the outer packet's end, as Python's
                width = 4 if version == 4 else 16
                append(_new_packet(Packet, (ts, version, data[addr : addr + width], data[addr + width : addr + 2 * width],
                                            proto, sport, dport, flags, data, l3, l4, payload, end, wire_len, frag_id,
                                            frag_offset, frag_more == 1)))  # fmt: skip
            elif status > 0:
                append(DecodeError(DECODE_ERRORS[status - 1]))
            elif status == STATUS_LINKTYPE:
                append(NotIP(f"linktype_{linktypes[len(result)]}"))
            elif status == STATUS_PANIC:
                self.panics += 1
                append(_reference(records[len(result)]))
            else:
                append(NotIP(NOT_IP[-status - 1]))
        return result


def _reference(record: PacketRecord) -> Decoded:
    try:
        return decode(record)
    except (DecodeError, NotIP) as exc:
        return exc
