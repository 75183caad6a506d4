"""Prompt completion (the edge's template over its events) and address redaction."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest

from netgptd.cloud.context import SensorState, SiteProfile, app_name, complete_prompt, local_summary
from netgptd.cloud.redact import Redactor
from netgptd.eve import app_proto, stats_event

NOW = datetime(2024, 5, 7, 14, 3, tzinfo=timezone.utc)  # a Tuesday


def flow(app: str | None, src: str = "10.0.0.5", dst: str = "192.0.2.10", port: int = 443, size: int = 1000) -> dict[str, Any]:
    return {"timestamp": "2024-05-07T14:00:00.000000+0000", "event_type": "flow", "src_ip": src, "src_port": 50000,
            "dest_ip": dst, "dest_port": port, "proto": "TCP", **({"app_proto": app_proto({"app": app})} if app else {}),
            "flow": {"bytes_toserver": size // 2, "bytes_toclient": size - size // 2, "pkts_toserver": 3,
                     "pkts_toclient": 3, "reason": "shutdown"},
            "netgpt": {"app": app, "attack": None}}  # fmt: skip


def alert(category: str, src: str = "10.0.0.66", dst: str = "10.0.0.5", n: int = 0) -> dict[str, Any]:
    return {"timestamp": f"2024-05-07T14:01:{n:02d}.000000+0000", "event_type": "alert", "src_ip": src,
            "src_port": 40000 + n, "dest_ip": dst, "dest_port": 22, "proto": "TCP",
            "alert": {"signature": f"{category} detected", "category": category, "severity": 2},
            "netgpt": {"detector": "bruteforce", "confidence": 1.0}}  # fmt: skip


def stats(active: int = 42) -> dict[str, Any]:
    return stats_event(int(datetime(2024, 5, 7, 14, 2, tzinfo=timezone.utc).timestamp() * 1e9),
                       {"uptime": 3600.5, "packets": 123456, "bytes": 98765432, "flows": 2000, "active_flows": active,
                        "classified": 1900, "alerts": 3, "plugins": {"mqtt": {"connected": 1}}})  # fmt: skip


def fed(events: list[dict[str, Any]], **limits: int) -> SensorState:
    state = SensorState(**limits)
    for event in events:
        state.feed(event)
    return state


PROFILE = SiteProfile("campus-a", "edge-1", "Building 3, 2nd floor", "university lab network", "Mon-Fri 08:00-18:00")


def test_the_question_is_completed_with_profile_state_and_recent_alerts() -> None:
    events = [stats(), *(flow("HTTP") for _ in range(5)), *(flow("DNS", port=53, size=100) for _ in range(3)),
              flow(None, port=8443), alert("brute-force", n=1), alert("port-scan", n=2),
              {"event_type": "intent", "timestamp": "2024-05-07T14:02:30.000000+0000",
               "intent": {"host": "10.0.0.5", "intent": "software update"}}]  # fmt: skip
    prompt = complete_prompt("  Is anything wrong on 10.0.0.5? ", PROFILE, fed(events), NOW)
    lines = prompt.splitlines()
    assert lines[:6] == [
        "Site profile:",
        "- site: campus-a (sensor edge-1)",
        "- location: Building 3, 2nd floor",
        "- role: university lab network",
        "- working hours: Mon-Fri 08:00-18:00",
        "- local time at the sensor now: Tuesday 2024-05-07 14:03 UTC",
    ]
    assert "- active flows now: 42" in lines
    assert any(l.startswith("- sensor counters at 2024-05-07T14:02:00") and "packets 123,456" in l for l in lines)
    assert ("- top applications of the last 9 ended flows: http 5 flows / 5.0 kB, dns 3 flows / 300 B, "
            "tcp/8443 1 flows / 1.0 kB") in lines  # fmt: skip
    assert "- alerts by category, last 2: brute-force 1, port-scan 1; since start: brute-force 1, port-scan 1" in lines
    recent = lines.index("Recent alerts (newest first, up to 10):")
    assert "[port-scan] port-scan detected" in lines[recent + 1] and "10.0.0.66:40002 -> 10.0.0.5:22/TCP" in lines[recent + 1]
    assert any("software update" in l for l in lines[lines.index("Intents inferred by the edge model (newest first, up to 5):"):])
    assert lines[-1] == "Operator question: Is anything wrong on 10.0.0.5?"


def trend(series: str, start: str, actual: int) -> dict[str, Any]:
    return {"timestamp": "2024-05-07T14:01:00.000000+0000", "event_type": "trend",
            "trend": {"series": series, "metric": "bytes", "window_s": 60, "window_start": start, "actual": actual,
                      "forecaster": "holt_winters", "history": 30,
                      "forecast": [{"timestamp": "t", "value": actual * 1.1}, {"timestamp": "t", "value": actual * 1.2}]}}  # fmt: skip


def test_the_trends_plugins_latest_window_is_part_of_the_state() -> None:
    old, new = "2024-05-07T13:59:00.000000+0000", "2024-05-07T14:00:00.000000+0000"
    state = fed([trend("total", old, 1), trend("total", new, 50000), trend("http", new, 40000), trend("dns", old, 9)])
    lines = complete_prompt("trend?", PROFILE, state, NOW).splitlines()
    at = lines.index(f"Traffic trend (trends plugin: window of 60 s from {new}, bytes, forecasts by holt_winters):")
    assert lines[at + 1:at + 3] == ["- total: 50,000 in that window; next windows forecast: 55,000, 60,000",
                                    "- http: 40,000 in that window; next windows forecast: 44,000, 48,000"]  # fmt: skip
    assert not lines[at + 3].startswith("- dns"), "an older window's trend does not mix in"


def test_an_empty_sensor_says_what_it_has_not_seen() -> None:
    prompt = complete_prompt("hello", SiteProfile(), SensorState(), NOW)
    assert "- location: not configured" in prompt and "- no stats event seen yet" in prompt
    assert "- no ended flow seen yet" in prompt and "- no alerts since start" in prompt
    assert "Recent alerts" not in prompt
    assert local_summary(SensorState()) == "no alerts."


def test_the_state_is_bounded_and_its_counts_follow_the_window() -> None:
    state = fed([flow("HTTP") for _ in range(3)] + [flow("DNS", size=10) for _ in range(4)], recent_flows=4)
    assert [(name, t.flows, t.bytes) for name, t in state.top_apps()] == [("dns", 4, 40)], "the HTTP flows left"
    state = fed([alert("scan", n=i) for i in range(30)], recent_alerts=5)
    assert len(state.alerts) == 5 and state.alerts_total == {"scan": 30}
    assert app_name({"proto": "ICMP"}) == "icmp" and app_name({"proto": "UDP", "dest_port": 53}) == "udp/53"
    with pytest.raises(ValueError):
        SensorState(recent_flows=0)


def test_addresses_become_stable_placeholders_and_come_back() -> None:
    text = ("10.0.0.5 talked to 2001:db8::1 and fe80::1%eth0 (mac aa:bb:cc:dd:ee:ff, also AA-BB-CC-DD-EE-FF); "
            "10.0.0.5:443 again; 2001:DB8:0:0:0:0:0:1 is the same host; net 10.1.0.0/16; ::ffff:192.0.2.1.")  # fmt: skip
    redactor = Redactor()
    sent = redactor.redact(text)
    assert sent == ("HOST-1 talked to HOST-2 and HOST-3%eth0 (mac MAC-1, also MAC-1); HOST-1:443 again; "
                    "HOST-2 is the same host; net HOST-4/16; HOST-5.")  # fmt: skip
    assert redactor.restore("Block HOST-1, check HOST-2 and MAC-1; HOST-9 is made up.") == \
        "Block 10.0.0.5, check 2001:db8::1 and aa:bb:cc:dd:ee:ff; HOST-9 is made up."
    assert len(redactor) == 6


@pytest.mark.parametrize("text", ["at 12:30:45 today", "2024-05-07T14:01:02.000000+0000", "999.1.1.1",
                                  "version 1.2.3", "port 8080", "aa:bb:cc:dd:ee:ff:00 is not a MAC", "HOST-1"])
def test_what_is_not_an_address_stays(text: str) -> None:
    assert Redactor().redact(text) == text


def test_a_completed_prompt_leaves_no_address_once_redacted() -> None:
    events = [stats(), flow("HTTP"), flow("SSH", src="fd00::7", port=22), alert("brute-force", n=3)]
    redactor = Redactor()
    sent = redactor.redact(complete_prompt("Who attacks 10.0.0.5?", PROFILE, fed(events), NOW))
    assert not re.search(r"\b10\.0\.0\.\d+\b|fd00::7|192\.0\.2\.10", sent)
    assert "Operator question: Who attacks HOST-" in sent
    assert "2024-05-07T14:01:03" in sent and "-> HOST-" in sent, "times stay, addresses go"
