"""The fleet in network namespaces: alerts across a central outage, metrics at the centre, a rollout to all.

Each sensor (``--sites`` x ``--sensors``, plus one ``control`` sensor
without the rollout plugin) is a ``netgptd run`` in its own network
namespace with its own site and sensor name, replaying the mining capture
after ``--lead`` seconds of quiet, at ``--speed``; site mosquitto brokers on the sites'
bridges, bridged over TLS to a central mosquitto; a Prometheus per site,
federated by a central one; a signed release (0.2.0) announced at the
centre and fetched over HTTP (tests/fleet_netns.py has the set-up). The
central broker stops for ``--outage`` seconds once the release is served
everywhere. Each row: a sensor's alerts in its EVE file, how many of them it
wrote while the centre was down, how many arrived centrally (at least once)
and the extra copies (QoS 1); what the central Prometheus holds for it
(up, the model version, its alert count, and its EVE file's then; flows
ended at the stop may add alerts after it); the model version it reports at
the centre; its flows, how many of them the central inference service classified
(``--triton-python``: where PyTriton is, default ``.venv-triton``) and how
many each local model version did.
Exit status 1 unless every check holds.

Needs root (``ip netns``), the corpus, mosquitto, Prometheus, openssl and
editcap/mergecap (tests/ is put on the path).

    sudo python bench/fleet_netns.py [--sites 2] [--sensors 5] [--outage 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import corpus_missing_reason, corpus_path  # noqa: E402
from fleet import quiet_then  # noqa: E402
from fleet_netns import CONTROL, RELEASE, held_open, netns_run  # noqa: E402
from machine import cpu_model  # noqa: E402
from test_daemon import MINING  # noqa: E402

MINING_PACKETS = 7163
TRITON_PYTHON = Path(__file__).resolve().parent.parent / ".venv-triton" / "bin" / "python"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--sensors", type=int, default=5, help="rollout sensors per site (and one control)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the central broker is down")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds of quiet before the capture's traffic")
    parser.add_argument("--speed", type=float, default=0.25,
                        help="replay speed (the default stretches the capture's 18 s of traffic over the staggered "
                             "start-up, the rollout and the outage on two cores)")  # fmt: skip
    parser.add_argument("--triton-python", type=Path, default=TRITON_PYTHON,
                        help="the Python with PyTriton, for the central inference service (default %(default)s; "
                             "none there: the run goes without it)")  # fmt: skip
    args = parser.parse_args()
    triton = args.triton_python if args.triton_python.exists() else None
    reason = corpus_missing_reason()
    if reason:
        raise SystemExit(reason)
    sites = {f"site{i}": [f"s{i}{j}" for j in range(1, args.sensors + 1)] for i in range(1, args.sites + 1)}
    total = args.sites * args.sensors + 1
    print(f"machine: {cpu_model()}; {total} sensors in their own network namespaces ({args.sites} sites x "
          f"{args.sensors} with rollout, 1 control), mining capture after {args.lead:.0f} s of quiet at speed "
          f"{args.speed:g}, central broker down {args.outage:.0f} s after the rollout")  # fmt: skip
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netgptd-fleet2-") as tmp:
        lead = quiet_then(corpus_path() / MINING, args.lead, Path(tmp) / "lead.pcapng")
        capture = held_open(lead, MINING_PACKETS + 1, Path(tmp) / "mining.pcapng")
        run = netns_run(Path(tmp), capture, MINING_PACKETS + 1, sites, args.speed, args.outage,
                        log=lambda line: print(f"  [{time.monotonic() - started:5.1f} s] {line}", flush=True),
                        triton_python=triton)  # fmt: skip
    head = (f"{'sensor':<14}{'written':>8}{'outage':>8}{'centre':>8}{'dups':>6}{'prom up':>8}{'prom model':>11}"
            f"{'prom alerts':>12}{'EVE then':>9}{'reports':>9}{'flows':>7}{'central':>8}  by model")  # fmt: skip
    print("\n" + head)
    for d in run.deliveries:
        k = f"{d.site}/{d.sensor}"
        report = run.reports.get(k, {}).get("serving", {}).get("version", "-")
        versions = " ".join(f"{v}:{n}" for v, n in sorted(run.flows_by_version[k].items()))
        print(f"{k:<14}{d.written:>8}{run.written_during_outage[k]:>8}{d.delivered:>8}{d.duplicates:>6}"
              f"{run.central_up.get(k, 0):>8.0f}{run.central_model.get(k, '-'):>11}"
              f"{run.central_alerts.get(k, -1):>12.0f}{run.eve_alerts_then[k]:>9}{report:>9}{run.flows[k]:>7}"
              f"{run.central_verdicts[k]:>8}  {versions}")  # fmt: skip
    written = sum(d.written for d in run.deliveries)
    delivered = sum(d.delivered for d in run.deliveries)
    print(f"{'all':<14}{written:>8}{sum(run.written_during_outage.values()):>8}{delivered:>8}"
          f"{sum(d.duplicates for d in run.deliveries):>6}")  # fmt: skip

    keys = [f"{d.site}/{d.sensor}" for d in run.deliveries]
    rolling = [k for k in keys if not k.endswith(f"/{CONTROL}")]
    control = next(k for k in keys if k.endswith(f"/{CONTROL}"))
    checks = {
        f"{len(keys)} sensors, each in its own namespace": len(keys) == total,
        "every alert of every sensor delivered centrally": all(d.delivered == d.written for d in run.deliveries),
        "no alert centrally that no EVE file has": sum(d.strays for d in run.deliveries) == 0,
        "alerts written during the outage by every sensor": all(v > 0 for v in run.written_during_outage.values()),
        "every sensor up at the central Prometheus": all(run.central_up.get(k) == 1 for k in keys),
        "every sensor's alert count at the central Prometheus equals its EVE file's (before the stop)":
            all(run.central_alerts.get(k) == run.eve_alerts_then[k] for k in keys),
        f"{RELEASE} served by every rollout sensor (its report and the central Prometheus)":
            all(run.reports[k]["serving"]["version"] == RELEASE and run.central_model.get(k) == RELEASE
                for k in rolling),
        "no flow lost by the rollout (flows equal to the control sensor's)":
            all(run.flows[k] == run.flows[control] for k in rolling),
        "every sensor stopped cleanly": all(code == 0 for code in run.exit_codes.values()),
    }  # fmt: skip
    if triton:
        checks["every sensor had verdicts from the central inference service"] = all(
            run.central_verdicts[k] > 0 for k in keys)
    print(f"\nrollout: served everywhere {run.rollout_s:.1f} s after the announcement; central broker down "
          f"{run.outage_s:.1f} s (measured); run took {time.monotonic() - started:.0f} s")  # fmt: skip
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
