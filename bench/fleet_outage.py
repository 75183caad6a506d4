"""A fleet's alerts across an outage of the central broker: written by each sensor vs delivered centrally.

The issue's check of the MQTT path from one sensor to many, with the shipped
configurations (``deploy/mosquitto``: site brokers bridged over TLS to a
central broker) and real processes (tests/fleet.py, also behind
tests/test_fleet_mqtt.py): ``--sites`` site brokers, ``--sensors``
``netgptd run`` per site replaying the mining capture (model alerts, most
in its first seconds) after ``--lead`` seconds of quiet, in which they start
and come online; a persistent collector at the centre. Once every sensor is
online centrally, the central broker stops for ``--outage`` seconds (longer
if some sensor has not written an alert yet). Each row: a sensor's alerts in its EVE file, how
many of them it wrote while the centre was down, how many arrived centrally
(at least once), the extra copies (QoS 1 is at least once), and the ratio
delivered / written. Then what the central tier holds as each sensor's
retained status, before, right after the outage and at the end (one more
sensor is killed with SIGKILL: its will). Exit status 1 unless every ratio
is 1.0 and every status is as expected.

Needs the corpus, mosquitto, openssl and editcap/mergecap (tests/ is put on the path).

    python bench/fleet_outage.py [--sites 2] [--sensors 3] [--outage 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import corpus_missing_reason, corpus_path  # noqa: E402
from fleet import outage_run, quiet_then  # noqa: E402
from machine import cpu_model  # noqa: E402
from test_daemon import MINING  # noqa: E402



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--sensors", type=int, default=3, help="sensors per site")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the central broker is down")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds of quiet before the capture's traffic")
    args = parser.parse_args()
    reason = corpus_missing_reason()
    if reason:
        raise SystemExit(reason)
    sites = {f"site{i}": [f"s{i}{j}" for j in range(1, args.sensors + 1)] for i in range(1, args.sites + 1)}
    print(f"machine: {cpu_model()}; {args.sites} sites x {args.sensors} sensors (+1 killed at the end), "
          f"mining capture after {args.lead:.0f} s of quiet, central broker down {args.outage:.0f} s")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netgptd-fleet-") as tmp:
        capture = quiet_then(corpus_path() / MINING, args.lead, Path(tmp) / "mining.pcapng")
        run = outage_run(Path(tmp), capture, sites, 1.0, args.outage,
                         log=lambda line: print(f"  [{time.monotonic() - started:5.1f} s] {line}", flush=True))
    print(f"\n{'site':<8}{'sensor':<8}{'written':>9}{'in outage':>11}{'delivered':>11}{'duplicates':>12}{'ratio':>8}")
    for d in run.deliveries:
        during = run.written_during_outage[f"{d.site}/{d.sensor}"]
        print(f"{d.site:<8}{d.sensor:<8}{d.written:>9}{during:>11}{d.delivered:>11}{d.duplicates:>12}{d.ratio:>8.3f}")
    written = sum(d.written for d in run.deliveries)
    delivered = sum(d.delivered for d in run.deliveries)
    during = sum(run.written_during_outage[f"{d.site}/{d.sensor}"] for d in run.deliveries)
    duplicates = sum(d.duplicates for d in run.deliveries)
    ratio = delivered / written if written else 1.0
    print(f"{'all':<16}{written:>9}{during:>11}{delivered:>11}{duplicates:>12}{ratio:>8.3f}")
    strays = sum(d.strays for d in run.deliveries)

    everyone = {f"{d.site}/{d.sensor}" for d in run.deliveries} | {run.killed}
    checks = {
        "every alert delivered centrally (ratio 1.0 for every sensor)": all(d.ratio == 1.0 for d in run.deliveries),
        "no alert centrally that no EVE file has": strays == 0,
        "alerts written during the outage": all(run.written_during_outage[f"{d.site}/{d.sensor}"] > 0
                                                for d in run.deliveries),
        "retained online for every sensor before the outage": run.retained_online == dict.fromkeys(everyone, b"online"),
        "... and right after it": run.retained_after_outage == dict.fromkeys(everyone, b"online"),
        f"retained offline for every sensor at the end ({run.killed} by its will)":
            run.retained_at_end == dict.fromkeys(everyone, b"offline") and run.killed_status == -9,
        "every site's bridge connected at the end": run.bridge_states == dict.fromkeys(sites, b"1"),
    }  # fmt: skip
    print(f"\ncentral broker down {run.outage_s:.1f} s (measured); run took {time.monotonic() - started:.0f} s")
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
