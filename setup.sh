#!/usr/bin/env bash
# Set up netgptd on a fresh Debian machine (root), then run the demo or the tests.
#   ./setup.sh run    Python's venv support, netgptd in .venv, then the embedded demo and its summary
#   ./setup.sh test   also the test suite's tools (capture, brokers, Prometheus, ndpiReader, the
#                     traffic lab's tools) and the dev, lab and train extras, then the whole test suite
#   SETUP_PLAN=1 ./setup.sh MODE   prints what MODE needs (Debian packages, pip extras) and exits
# netgptd lands in .venv/bin, not on the PATH: `. .venv/bin/activate` puts it there.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-run}
case "$mode" in run|test) ;; *) echo "usage: $0 run|test [pytest arguments]" >&2; exit 2;; esac

required=() missing=()
# need CHECK PACKAGE: CHECK is a command on the PATH, an absolute path (sbin tools), or py:MODULES.
need() {
  required+=("$2")
  case $1 in
    py:*) python3 -c "import ${1#py:}" 2>/dev/null ;;
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null ;;
  esac || missing+=("$2")
}

# The demo replays its capture with netgptd's own reader: Python's venv support, and cargo (Rust) to build
# its compiled hot path (without it, pip still installs netgptd, which then parses and decodes in Python).
need py:venv,ensurepip python3-venv
need cargo cargo
if [ "$mode" = test ]; then
  need tshark tshark                      # pyshark, and dumpcap for the fast live path
  need dumpcap tshark
  need /usr/sbin/mosquitto mosquitto      # the MQTT tests start their own broker
  need prometheus prometheus              # the dashboards' queries run against a real Prometheus
  need ndpiReader libndpi-bin             # the nDPI comparisons
  need tcpreplay tcpreplay                # bench/live_veth.py replays the corpus mix over a veth
  need systemd-analyze systemd            # the unit's checks
  need gcc build-essential
  need gcc python3-dev
  need openssl openssl
  for tool in nmap hydra slowhttptest; do need $tool $tool; done   # the traffic lab's real tools
  need /usr/sbin/hping3 hping3
  need /usr/sbin/sshd openssh-server
  need ssh openssh-client
  need redis-server redis-server
  # The lab's application scenarios start servers of their own on lab addresses (their services stay off):
  need pg_ctlcluster postgresql           # postgres and initdb (in /usr/lib/postgresql/N/bin), psql
  need /usr/sbin/mariadbd mariadb-server  # mariadbd, mariadb-install-db
  need mariadb mariadb-client
  need /usr/sbin/nats-server nats-server
  need /usr/sbin/dovecot dovecot-imapd    # IMAP; POP3 below
  need /usr/lib/dovecot/pop3 dovecot-pop3d
  need /usr/sbin/slapd slapd
  need ldapsearch ldap-utils
  need /usr/sbin/smbd samba
  need smbclient smbclient
  need /usr/sbin/chronyd chrony           # replaces systemd-timesyncd as the host's time service
  need /usr/sbin/snmpd snmpd
  need snmpget snmp
  need /usr/sbin/telnetd inetutils-telnetd   # run per connection by the scenario, as inetd would
  need telnet inetutils-telnet
  need /usr/sbin/kamailio kamailio        # SIP registrar; Debian 12 has no sipp
  need sipsak sipsak
  need /usr/lib/rabbitmq/bin/rabbitmq-server rabbitmq-server   # a node of the lab's own, beside any host node
  need amqp-publish amqp-tools
  need rsync rsync
  need memcached memcached
  need /usr/sbin/in.tftpd tftpd-hpa
  need tftp tftp-hpa
  need /usr/sbin/freeradius freeradius
  need radclient freeradius-utils
  need /usr/sbin/ngircd ngircd
  need /usr/sbin/danted dante-server
  need prosody prosody
  need coap-server-notls libcoap3-bin
  need /usr/sbin/openvpn openvpn
  need /usr/sbin/logrotate logrotate     # the shipped logrotate snippet runs against a live daemon
  need curl curl                          # the brute-force test's busy web client
fi
extras=$([ "$mode" = test ] && echo "[dev,lab,train,llm,central]" || true)

uniq_words() { printf '%s\n' "$@" | awk 'NF && !seen[$0]++' | paste -sd' '; }
if [ -n "${SETUP_PLAN:-}" ]; then
  echo "debian: $(uniq_words "${required[@]}")"
  echo "missing: $(uniq_words "${missing[@]+"${missing[@]}"}")"
  echo "pip: -e .$extras"
  exit 0
fi

# Services the test suite starts itself (on free ports); installing their packages must not start
# them on this host (an SSH server above all), nor enable them for the next boot.
# chrony is left enabled: installing it removes systemd-timesyncd, and the host still needs a time service.
units_of() {
  for package in "$@"; do
    case $package in
      openssh-server) echo ssh ;;
      mosquitto|prometheus|redis-server|postgresql|nats-server|slapd|snmpd|kamailio) echo "$package" ;;
      rabbitmq-server|memcached|tftpd-hpa|freeradius|ngircd|prosody|openvpn) echo "$package" ;;
      mariadb-server) echo mariadb ;; dovecot-imapd|dovecot-pop3d) echo dovecot ;; samba) echo smbd nmbd ;;
      dante-server) echo danted ;;
      inetutils-telnetd) echo inetutils-inetd ;;  # the inetd it depends on would serve telnet on port 23
    esac
  done
}

if [ ${#missing[@]} -gt 0 ]; then
  packages=$(uniq_words "${missing[@]}")
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: $packages (run as root, or install them first)" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: $packages (apt-get, a minute or two)" >&2
  # The service runs dumpcap with capabilities of its own: a plain dumpcap (systemd/INSTALL.md).
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  policy=/usr/sbin/policy-rc.d  # "exit 101": invoke-rc.d starts no service (one already there is left alone)
  ours=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod 0755 $policy && ours=1
    trap 'rm -f $policy' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  if [ -n "$ours" ]; then rm -f $policy && trap - EXIT; fi
  # shellcheck disable=SC2046
  for unit in $(units_of $packages); do systemctl disable --quiet "$unit" 2>/dev/null || true; done
fi

# pip runs again only when the packaging or the compiled hot path's sources changed since the last install.
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=$(cat setup.cfg pyproject.toml hotpath/Cargo.toml hotpath/src/*.rs | sha256sum | cut -d' ' -f1)
installed() { [ "$(cat ".venv/.setup-$1" 2>/dev/null)" = "$stamp" ]; }
if ! installed "$mode" && ! { [ "$mode" = run ] && installed test; }; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "$mode" = run ]; then
    echo "setup: installing netgptd into .venv (numpy, onnxruntime: about 100 MB, a minute or so)" >&2
  else
    echo "setup: installing netgptd with the dev, lab and train extras into .venv" \
         "(torch, transformers: about 1.6 GB, several minutes)" >&2
  fi
  pip_status=0  # pip's own status (pipefail); its progress shows, lines about what is already there do not
  .venv/bin/python -m pip install --progress-bar on -e ".$extras" \
    | { grep -v -e '^Requirement already satisfied' -e '^Obtaining file:' || true; } || pip_status=$?
  [ $pip_status -eq 0 ] || { echo "setup: pip install failed (exit status $pip_status)" >&2; exit 1; }
  echo "$stamp" >".venv/.setup-$mode"
fi

if [ "$mode" = test ]; then
  # The central inference tests run a real Triton through PyTriton, in a venv of its own: PyTriton pins numpy
  # below 2, and its Python backend needs Debian's python3 (about 400 MB). Without it those tests skip.
  [ -x .venv-triton/bin/python ] || /usr/bin/python3 -m venv .venv-triton
  if [ "$(cat .venv-triton/.setup 2>/dev/null)" != "$stamp" ]; then
    echo "setup: installing PyTriton (Triton Inference Server) and onnxruntime into .venv-triton" >&2
    if .venv-triton/bin/python -m pip install -q "nvidia-pytriton==0.7.0" "onnxruntime>=1.17"; then
      echo "$stamp" >.venv-triton/.setup
    else
      echo "setup: .venv-triton could not be made: the central inference tests will skip" >&2
    fi
  fi
  exec .venv/bin/python -m pytest -p no:cacheprovider "${@:2}"
fi
status=0
.venv/bin/netgptd demo || status=$?
echo
echo "setup: netgptd is in .venv/bin, not on your PATH: run '. .venv/bin/activate' to put it there" \
     "for this shell (or call .venv/bin/netgptd)"
exit $status
