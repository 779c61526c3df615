#!/usr/bin/env bash
# Installs the system tools tranproxy's tests, demo and benchmarks use, if missing.
# Idempotent: checks each tool by its binary; runs apt-get only when something is missing.
# Never starts the packages' system services (policy-rc.d answers 101 during the install).
set -euo pipefail

# binary:debian-package pairs. The binary proves the package is usable.
PAIRS=(
  ip:iproute2
  nft:nftables
  iptables:iptables
  sysctl:procps
  unshare:util-linux
  nsenter:util-linux
  setpriv:util-linux
  ps:procps
  ss:iproute2
  ping:iputils-ping
  curl:curl
  python3:python3
  nc:netcat-openbsd
  iperf3:iperf3
  nginx:nginx-light
  haproxy:haproxy
  wrk:wrk
  microsocks:microsocks
  danted:dante-server
  ss-server:shadowsocks-libev
  redsocks:redsocks
  tinyproxy:tinyproxy
  v2ray:v2ray
  trojan:trojan
  ss-v2ray-plugin:shadowsocks-v2ray-plugin
  obfs-local:simple-obfs
  obfs-server:simple-obfs
  openssl:openssl
  chromium:chromium
  dnsperf:dnsperf
  dnsmasq:dnsmasq-base
)

# Service daemons live in sbin dirs, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for pair in "${PAIRS[@]}"; do
  bin=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$bin" >/dev/null 2>&1; then
    case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
  fi
done

# file:debian-package pairs, for packages without a binary (a CJK font, so the console's
# Chinese screenshots show characters, not boxes).
for pair in /usr/share/fonts/truetype/wqy/wqy-microhei.ttc:fonts-wqy-microhei; do
  file=${pair%%:*} pkg=${pair#*:}
  [ -e "$file" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all dependencies present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-deps: missing ${missing[*]}; run as root:" >&2
  echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# Keep services from starting; only remove our policy file, never a pre-existing one.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

# apt's chatter goes to a log, shown only if it fails.
LOG=$(mktemp)
trap 'cleanup; rm -f "$LOG"' EXIT
apt_quiet() { "$@" >>"$LOG" 2>&1 || { cat "$LOG" >&2; echo "setup-deps: failed: $*" >&2; exit 1; }; }

apt_quiet apt-get update -q
# nginx-light is gone in newer Debian releases: fall back to nginx.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
  missing=("${missing[@]/nginx-light/nginx}")
fi
apt_quiet apt-get install "${APT_OPTS[@]}" "${missing[@]}"

# policy-rc.d stops services from starting, not from being enabled at boot: on a systemd
# host, disable (and stop) the services of the packages installed just now.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for pkg in "${missing[@]}"; do
    case $pkg in
      nginx*) svc=nginx ;; haproxy) svc=haproxy ;; dante-server) svc=danted ;;
      tinyproxy) svc=tinyproxy ;; shadowsocks-libev) svc=shadowsocks-libev ;; iperf3) svc=iperf3 ;;
      redsocks) svc=redsocks ;;
      *) continue ;;
    esac
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

echo "setup-deps: installed ${missing[*]}"
