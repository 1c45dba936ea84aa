#!/bin/bash
# setup-host.sh - make this Debian 12 host ready to build, test and demo flocker.
# Idempotent and quick when everything is already in place (no apt run then).
#   - installs the Debian packages the build, tests and demo use
#   - starts the zfs-fuse daemon when it is not running
#   - mounts tracefs and bpffs when missing (not mounted at boot on these hosts)
# Needs root. Never stops anything.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "setup-host: needs root" >&2; exit 1; }

# Package -> a file it installs; apt runs only when one of these is missing.
declare -A want=(
  [zfs-fuse]=/usr/sbin/zfs-fuse
  [clang-14]=/usr/bin/clang-14
  [llvm-14]=/usr/bin/llvm-strip-14
  [libbpf-dev]=/usr/include/bpf/bpf_helpers.h
  [bpftool]=/usr/sbin/bpftool
  [iproute2]=/usr/sbin/ip
  [nftables]=/usr/sbin/nft
  [util-linux]=/usr/bin/nsenter
  [psmisc]=/usr/bin/fuser
  [kmod]=/usr/bin/kmod
  [cpio]=/usr/bin/cpio
  [busybox-static]=/bin/busybox
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [e2fsprogs]=/usr/sbin/mkfs.ext4
  [lz4]=/usr/bin/lz4
  [dwarves]=/usr/bin/pahole
  [binutils]=/usr/bin/objcopy
  [file]=/usr/bin/file
  [bc]=/usr/bin/bc
  [make]=/usr/bin/make
  [gcc]=/usr/bin/gcc
  [iputils-ping]=/usr/bin/ping
  [netcat-openbsd]=/usr/bin/nc.openbsd
  [arping]=/usr/sbin/arping
  [curl]=/usr/bin/curl
  [openssl]=/usr/bin/openssl
)
missing=()
for p in "${!want[@]}"; do [ -e "${want[$p]}" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go lives in /usr/local/go on these machines.
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "setup-host: Go not found (expected /usr/local/go)" >&2; exit 1; }

# zfs-fuse: one daemon serves every pool on the host, from any network namespace.
# Ask the daemon itself (its socket), not pgrep: a zfs-fuse in another mount
# namespace (a test's private one) matches a name search but serves nobody here.
# Every zpool call is bounded: a wedged daemon (an upstream deadlock) never
# answers. One this script started (its pid file) is restarted, as the test
# rig does (internal/rig/wedge.go); anyone else's is left alone.
answers() { timeout 30 zpool list >/dev/null 2>&1; }
# zfs-fuse processes in this mount namespace (tests run private daemons in
# namespaces of their own).
daemons_here() {
  local p
  for p in $(pgrep -x zfs-fuse); do
    [ "$(readlink "/proc/$p/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ] && echo "$p"
  done
  return 0
}
if ! answers; then
  pidfile=/run/zfs-fuse.pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = zfs-fuse ]; then
    echo "setup-host: zfs-fuse (pid $pid, started here) does not answer within 30 s: wedged; restarting it"
    kill -9 "$pid"
    for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    # Its mounts are dead: detach them, deepest first.
    awk '$3 == "fuse.zfs" || $2 == "/zfs-kstat" { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
  elif [ -n "$(daemons_here)" ]; then
    echo "setup-host: a zfs-fuse this script did not start runs but does not answer; restart it by hand" >&2
    exit 1
  fi
  # zfs-fuse refuses to start over a pid file whose process is gone.
  if [ -e "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then rm -f "$pidfile"; fi
  echo "setup-host: starting zfs-fuse"
  zfs-fuse --pidfile "$pidfile"
  for _ in $(seq 100); do answers && break; sleep 0.1; done
fi
answers || { echo "setup-host: zfs-fuse does not answer" >&2; exit 1; }

mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
echo "setup-host: ready (zfs-fuse answers, tracefs and bpffs mounted)"
