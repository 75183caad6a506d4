"""Window aggregator and window history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netgptd.eve import timestamp
from netgptd.trend.history import WindowHistory
from netgptd.trend.windows import Traffic, Window, WindowAggregator

T0 = 1_714_564_800  # 2024-05-01T12:00:00Z, a multiple of 60


def ts(seconds: float) -> str:
    return timestamp(int(seconds * 1_000_000_000))


def flow(start: float, end: float, app: str | None = "TLS", attack: str | None = None,
         bytes_: tuple[int, int] = (100, 200), pkts: tuple[int, int] = (2, 3)) -> dict[str, Any]:  # fmt: skip
    return {
        "timestamp": ts(start), "event_type": "flow", "proto": "TCP", "app_proto": app and app.lower(),
        "flow": {"pkts_toserver": pkts[0], "pkts_toclient": pkts[1], "bytes_toserver": bytes_[0],
                 "bytes_toclient": bytes_[1], "start": ts(start), "end": ts(end)},
        "netgpt": {"app": app, "app_confidence": 0.9, "attack": attack, "attack_confidence": 0.9, "model": "m"},
    }  # fmt: skip


def alert(when: float, category: str) -> dict[str, Any]:
    return {"timestamp": ts(when), "event_type": "alert",
            "alert": {"signature": "x", "category": category, "severity": 2, "source": "model"}}  # fmt: skip


def test_flow_counts_in_the_window_of_its_end_not_its_start() -> None:
    agg = WindowAggregator("hq", "s1", width=60)
    assert agg.feed(flow(T0 - 300, T0 + 10)) == []  # began five minutes earlier, ended in [T0, T0+60)
    (window,) = agg.feed(flow(T0 + 61, T0 + 61))
    assert (window.site, window.sensor, window.start, window.end) == ("hq", "s1", T0, T0 + 60)
    assert window.total == Traffic(flows=1, bytes=300, packets=5)
    assert window.apps == {"TLS": Traffic(1, 300, 5)}
    assert window.late == 0


def test_boundaries_are_aligned_and_an_event_at_the_end_belongs_to_the_next_window() -> None:
    agg = WindowAggregator(width=60)
    agg.feed(flow(T0 + 17, T0 + 17))
    agg.feed(flow(T0 + 59.9, T0 + 59.9))
    (window,) = agg.feed(flow(T0 + 60, T0 + 60))  # exactly the end: closes [T0, T0+60)
    assert window.start == T0 and window.total.flows == 2
    (window,) = agg.flush()
    assert window.start == T0 + 60 and window.total.flows == 1


def test_apps_attacks_alerts_and_rates() -> None:
    agg = WindowAggregator(width=60)
    agg.feed(flow(T0, T0 + 1, app="DNS", bytes_=(50, 50), pkts=(1, 1)))
    agg.feed(flow(T0, T0 + 2, app="TLS", attack="benign", bytes_=(1000, 9000), pkts=(10, 10)))
    agg.feed(flow(T0, T0 + 3, app=None, attack="scan", bytes_=(40, 0), pkts=(1, 0)))
    agg.feed(flow(T0, T0 + 4, app=None, attack="scan", bytes_=(40, 0), pkts=(1, 0)))
    agg.feed(alert(T0 + 5, "scan"))
    agg.feed(alert(T0 + 6, "scan"))
    agg.feed(alert(T0 + 7, "dos"))
    agg.feed({"timestamp": ts(T0 + 8), "event_type": "stats", "stats": {}})
    (window,) = agg.flush()
    assert window.total == Traffic(4, 10180, 24)
    assert window.apps == {"DNS": Traffic(1, 100, 2), "TLS": Traffic(1, 10000, 20), "unclassified": Traffic(2, 80, 2)}
    assert window.attacks == {"benign": Traffic(1, 10000, 20), "scan": Traffic(2, 80, 2)}
    assert window.alerts == {"scan": 2, "dos": 1}
    assert window.new_flow_rate == pytest.approx(4 / 60)
    assert [name for name, _ in window.top_apps(2)] == ["TLS", "DNS"]
    assert [name for name, _ in window.top_apps(1, by="flows")] == ["unclassified"]
    assert window.value("bytes", "app:TLS") == 10000
    assert window.value("flows", "attack:scan") == 2
    assert window.value("alerts") == 3 and window.value("alerts", "dos") == 1
    assert window.value("packets", "app:SSH") == 0
    with pytest.raises(ValueError):
        window.value("bytes", "host:1.2.3.4")


def test_quiet_periods_give_empty_windows_and_close_until_works_without_events() -> None:
    agg = WindowAggregator(width=60)
    agg.feed(flow(T0, T0 + 5))
    assert agg.close_until(T0 + 59) == []
    closed = agg.close_until(T0 + 180)  # three windows end by then: one with traffic, two quiet
    assert [w.start for w in closed] == [T0, T0 + 60, T0 + 120]
    assert [w.total.flows for w in closed] == [1, 0, 0]
    assert [w.start for w in agg.close_until(T0 + 245)] == [T0 + 180]  # a timer keeps quiet windows coming
    closed = agg.feed(flow(T0 + 400, T0 + 400))
    assert [w.start for w in closed] == [T0 + 240, T0 + 300]
    (window,) = agg.flush()
    assert window.start == T0 + 360 and window.total.flows == 1


def test_a_jump_far_ahead_emits_at_most_max_gap_quiet_windows() -> None:
    agg = WindowAggregator(width=60, max_gap=3)
    agg.feed(flow(T0, T0))
    closed = agg.feed(flow(T0 + 86_400, T0 + 86_400))
    assert [w.start for w in closed] == [T0, T0 + 86_400 - 180, T0 + 86_400 - 120, T0 + 86_400 - 60]


def test_a_flow_reported_after_its_window_closed_is_counted_late_in_the_open_one() -> None:
    agg = WindowAggregator(width=60)
    agg.feed(alert(T0 + 70, "scan"))
    agg.feed(flow(T0 - 100, T0 + 30))  # timed out: ended in [T0, T0+60), reported later
    (window,) = agg.flush()
    assert window.start == T0 + 60 and window.total.flows == 1 and window.late == 1


def test_flush_gives_the_partial_window_once_and_nothing_when_idle() -> None:
    agg = WindowAggregator(width=60)
    assert agg.flush() == []
    agg.feed(flow(T0, T0 + 1))
    assert len(agg.flush()) == 1
    assert agg.flush() == []


def test_events_without_a_readable_time_are_ignored() -> None:
    agg = WindowAggregator(width=60)
    assert agg.feed({"event_type": "flow", "flow": {"end": "not a time"}}) == []
    assert agg.flush() == []


def test_window_dict_round_trip_and_merge() -> None:
    agg = WindowAggregator("hq", "s1", width=60)
    agg.feed(flow(T0, T0 + 1, attack="dos"))
    agg.feed(alert(T0 + 2, "dos"))
    (window,) = agg.flush()
    copy = Window.from_dict(window.to_dict())
    assert copy == window
    copy.merge(window)
    assert copy.total == Traffic(2, 600, 10) and copy.alerts == {"dos": 2} and copy.attacks["dos"].flows == 2
    with pytest.raises(ValueError):
        copy.merge(Window("hq", "s2", T0, 60))


def _window(start: float, flows: int, site: str = "default", sensor: str = "sensor") -> Window:
    return Window(site, sensor, start, 60.0, total=Traffic(flows, 10 * flows, flows),
                  apps={"DNS": Traffic(flows, 10 * flows, flows)})  # fmt: skip


def test_history_keeps_the_last_n_per_sensor_and_survives_reopening(tmp_path: Path) -> None:
    with WindowHistory(tmp_path / "state", keep=5) as history:
        for i in range(8):
            history.append(_window(T0 + 60 * i, flows=i))
        history.append(_window(T0, flows=99, sensor="other"))
        assert history.series("flows") == [(T0 + 60 * i, float(i)) for i in range(3, 8)]
    with WindowHistory(tmp_path / "state", keep=5) as history:
        assert history.series("bytes", "app:DNS", last_n=2) == [(T0 + 360, 60.0), (T0 + 420, 70.0)]
        assert history.series("flows", sensor="other") == [(T0, 99.0)]
        assert history.series("flows", site="elsewhere") == []


def test_history_merges_a_window_continued_after_a_restart(tmp_path: Path) -> None:
    with WindowHistory(tmp_path) as history:
        history.append(_window(T0, flows=2))
        history.append(_window(T0, flows=3))
        (window,) = history.windows()
    assert window.total.flows == 5 and window.apps["DNS"].bytes == 50


def test_aggregator_feeds_history_end_to_end(tmp_path: Path) -> None:
    agg = WindowAggregator(width=60)
    with WindowHistory(tmp_path) as history:
        for i in range(5):
            for window in agg.feed(flow(T0 + 60 * i + 1, T0 + 60 * i + 2, app="HTTP")):
                history.append(window)
        for window in agg.flush():
            history.append(window)
        assert history.series("new_flow_rate", "app:HTTP") == [(T0 + 60 * i, 1 / 60) for i in range(5)]
