"""``netgptd model publish``: pack a bundle, sign its announcement and publish it, retained, for a fleet.

    netgptd model publish BUNDLE --archive /srv/models/v2.tar.gz --url https://models.example/v2.tar.gz \\
        --signing-key rollout.key --site paris --broker mqtts://central:8883 --ca-file ca.pem \\
        --cert-file publisher.pem --key-file publisher.key
    netgptd model publish BUNDLE --archive v2.tar.gz --signing-key rollout.key --print   # the announcement only

The bundle is checked (as ``check-config`` does), packed (:mod:`netgptd.model.archive`),
and its announcement (name, version, url, sha256, size) signed with the Ed25519
key (:mod:`netgptd.model.announce`) and published retained at QoS 1 on
``netgpt/<site>/_models/current`` for each ``--site``, where the sensors'
``[plugins.rollout]`` take it. Serving the archive at ``--url`` is the
operator's (any web server, or a path every sensor can read; the default url is
the archive's absolute path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from netgptd.model.announce import SigningKeyError, check_key, sign
from netgptd.model.archive import pack
from netgptd.model.bundle import BundleError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TOPIC = "netgpt/{site}/_models/current"


def announcement(args: argparse.Namespace) -> dict[str, Any]:
    """The signed announcement of ``args.bundle``, packed to ``args.archive`` (BundleError, SigningKeyError)."""
    key = check_key(args.signing_key, public=False)
    bundle, sha256, size = pack(args.bundle, args.archive)
    url = args.url or str(args.archive.resolve())
    return sign({"name": bundle.name, "version": bundle.version, "url": url, "sha256": sha256, "size": size}, key)


async def publish(link: Any, topics: list[str], payload: bytes) -> None:
    async with link.client("", clean_session=True) as client:
        for topic in topics:
            await client.publish(topic, payload, qos=1, retain=True)


def cmd_model_publish(args: argparse.Namespace) -> int:
    try:
        signed = announcement(args)
    except (BundleError, SigningKeyError, OSError) as exc:
        print(f"netgptd model publish: {exc}", file=sys.stderr)
        return EXIT_USAGE
    payload = json.dumps(signed).encode()
    if not args.print and not args.site:
        print("netgptd model publish: --site: give at least one site to announce to (or --print)", file=sys.stderr)
        return EXIT_USAGE
    if args.print:
        print(payload.decode())
        return EXIT_OK
    from netgptd_plugins.mqtt import Link  # the plugins' own URL, credentials and TLS handling

    try:
        link = Link.checked(args.broker, "netgpt/", args.username, "", args.password_file, args.ca_file,
                            args.cert_file, args.key_file, 30, 0.5, 30.0, 5.0)  # fmt: skip
    except ValueError as exc:
        print(f"netgptd model publish: {exc}", file=sys.stderr)
        return EXIT_USAGE
    topics = [args.topic.format(site=site) for site in args.site]
    try:
        asyncio.run(publish(link, topics, payload))
    except Exception as exc:  # noqa: BLE001 -- aiomqtt.MqttError and OSError: one line, no traceback
        print(f"netgptd model publish: {link}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"netgptd model publish: {signed['name']}@{signed['version']} sha256 {signed['sha256']} announced on "
          f"{', '.join(topics)}")  # fmt: skip
    return EXIT_OK


def add_model_parser(sub: Any) -> None:
    """``netgptd model publish`` on the ``netgptd`` command's subparsers."""
    model = sub.add_parser("model", help="model bundles for a fleet: pack, sign and announce a rollout")
    model_sub = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)
    p = model_sub.add_parser("publish", help="pack a bundle, sign its announcement (Ed25519), publish it retained",
                             description="Check and pack a model bundle into an archive, sign the announcement "
                                         "(name, version, url, sha256, size) with an Ed25519 key and publish it "
                                         "retained on netgpt/<site>/_models/current, where [plugins.rollout] of "
                                         "each sensor of the site fetches, checks and serves it.")  # fmt: skip
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="the model bundle folder (manifest.json, model.onnx, ...)")
    p.add_argument("--archive", type=Path, required=True, metavar="FILE", help="where the archive (.tar.gz) is written")
    p.add_argument("--url", default="", help="where sensors fetch the archive: a path, file://, http(s):// "
                                             "(default: the archive's absolute path)")  # fmt: skip
    p.add_argument("--signing-key", required=True, metavar="FILE", help="the Ed25519 private key (PEM)")
    p.add_argument("--site", action="append", default=[], metavar="SITE", help="a site to announce to (repeatable)")
    p.add_argument("--topic", default=TOPIC, help="the announcement topic (default %(default)s)")
    p.add_argument("--print", action="store_true", help="print the signed announcement and publish nothing")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="the broker (mqtt:// or mqtts://)")
    p.add_argument("--username", default="", help="broker user name")
    p.add_argument("--password-file", default="", metavar="FILE", help="broker password, from a file")
    p.add_argument("--ca-file", default="", metavar="FILE", help="CA certificates for mqtts:// (default: the system's)")
    p.add_argument("--cert-file", default="", metavar="FILE", help="client certificate for mqtts://")
    p.add_argument("--key-file", default="", metavar="FILE", help="the client certificate's key")
    p.set_defaults(func=cmd_model_publish)
