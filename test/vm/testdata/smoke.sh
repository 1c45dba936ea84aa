#!/bin/sh
# Scenario of the VM smoke test (smoke_test.go), run by both guests.
#   a (192.0.2.11): pool "tank", dataset tank/data; sends @s1 in full, then
#                   @s1..@s2 incrementally, to b over TCP (busybox nc)
#   b (192.0.2.12): pool "backup"; receives into backup/data, read-only like
#                   a flocker replica (a mounted replica that is written to,
#                   even by atime, refuses the next incremental)
# Each guest leaves in /out what the test compares: checksums of the dataset's
# files at s1 and s2, the snapshots' GUIDs, and `flocker probe --json`. The
# exit code covers the ZFS part only; the test judges the probe from its files.
set -eu
# shellcheck disable=SC3040 # busybox ash has pipefail
set -o pipefail
B=192.0.2.12
say() { echo "smoke: $(hostname): $*"; }

# retry CMD...: repeat until it succeeds, for at most 60 s (the peer may not
# be listening yet).
retry() {
	n=0
	until "$@"; do
		n=$((n + 1))
		[ "$n" -lt 120 ] || return 1
		sleep 0.5
	done
}
send() { # send PORT ZFS-SEND-ARGS...
	port=$1
	shift
	zfs send "$@" | nc "$B" "$port"
}
sums() { # sums DIR: "sha256  ./path" for every file, sorted by path
	(cd "$1" && find . -type f | sort | xargs -r sha256sum)
}
guids() { # guids DATASET: "SNAPSHOT GUID" for s1 and s2
	for s in s1 s2; do
		echo "$s $(zfs get -Hp -o value guid "$1@$s")"
	done
}
probe() {
	rc=0
	flocker probe --json >/out/probe.json 2>/out/probe.err || rc=$?
	echo "$rc" >/out/probe.rc
	say "flocker probe exit $rc"
}

sha256sum /usr/bin/flocker >/out/flocker.sha256
uname -r >/out/uname
modprobe zfs
say "zfs $(cat /sys/module/zfs/version)"

case $(hostname) in
a)
	zpool create -f tank /dev/disk/by-id/virtio-pool0
	zfs create tank/data
	probe
	dd if=/dev/urandom of=/tank/data/f0 bs=1k count=64 2>/dev/null
	dd if=/dev/urandom of=/tank/data/f1 bs=1M count=16 2>/dev/null
	zfs snapshot tank/data@s1
	sums /tank/data >/out/s1.sums
	retry send 9000 tank/data@s1
	say "full send done"

	rm /tank/data/f0
	dd if=/dev/urandom of=/tank/data/f2 bs=1M count=4 2>/dev/null
	dd if=/dev/urandom of=/tank/data/f1 bs=1M count=2 seek=5 conv=notrunc 2>/dev/null
	zfs snapshot tank/data@s2
	sums /tank/data >/out/s2.sums
	retry send 9001 -i @s1 tank/data@s2
	say "incremental send done"
	guids tank/data >/out/guids
	;;
b)
	zpool create -f backup /dev/disk/by-id/virtio-pool0
	probe
	nc -l -p 9000 | zfs recv -o readonly=on backup/data
	sums /backup/data >/out/s1.sums
	say "full receive done"
	nc -l -p 9001 | zfs recv backup/data
	sums /backup/data >/out/s2.sums
	say "incremental receive done"
	guids backup/data >/out/guids
	zfs list -H -t snapshot -o name -r backup >/out/snapshots
	;;
*)
	say "unknown role"
	exit 2
	;;
esac
