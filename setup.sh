#!/usr/bin/env bash
# Set up netgptd on a fresh Debian machine (root), then run the demo or the tests.
#   ./setup.sh run    install, then replay the embedded demo capture and print a summary
#   ./setup.sh test   install with the test extras, then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-run}
case "$mode" in run|test) ;; *) echo "usage: $0 run|test" >&2; exit 2;; esac

# System packages: capture tools (tshark/dumpcap for pyshark and the fast live
# path), mosquitto and prometheus for the integration tests, ndpiReader for
# the comparisons, the traffic lab's tools, venv support for Python.
missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v dumpcap >/dev/null || missing+=(tshark)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v ndpiReader >/dev/null || missing+=(libndpi-bin)
# the traffic lab's real tools
for tool in nmap hping3 hydra slowhttptest; do command -v $tool >/dev/null || missing+=($tool); done
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v gcc >/dev/null || missing+=(build-essential python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  echo "wireshark-common wireshark-common/install-setuid boolean true" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$mode" = run ]; then
  .venv/bin/python -m pip install -q -e . >/dev/null
  exec .venv/bin/netgptd demo
fi
.venv/bin/python -m pip install -q -e '.[dev,lab,train]' >/dev/null
exec .venv/bin/python -m pytest -p no:cacheprovider "${@:2}"
