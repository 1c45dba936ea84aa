#!/bin/sh
# Scenario of the VM clock-jump test (clockjump_vm_test.go), run by both
# guests: a (master of tank/app) replicates to b while a writer on a makes
# a synced file every half second. a's wall clock jumps a day forward,
# then two days back, then a day forward again (15 s apart); then b's does
# the same. The guests' clocks are theirs to step: the host's is never
# touched. Each guest leaves its agent's log, its snapshot list, its final
# config and its dataset's file listing in /out.
set -eu
# shellcheck disable=SC3040 # busybox ash has pipefail
set -o pipefail
say() { echo "clockjump: $(hostname): $*"; }

# retry CMD...: repeat until it succeeds, for at most 300 s.
retry() {
	n=0
	until "$@"; do
		n=$((n + 1))
		[ "$n" -lt 600 ] || return 1
		sleep 0.5
	done
}
start_agent() {
	flocker agent --config /tmp/flocker/flocker.ini --log-format json 2>>/out/agent.log &
	echo $! >/tmp/agent.pid
}
stop_agent() {
	pid=$(cat /tmp/agent.pid)
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	echo "$rc" >/out/agent.rc
	say "agent stopped, exit $rc"
}
# jump SECONDS: step the wall clock.
jump() {
	date -s "@$(($(date +%s) + $1))" >/dev/null
	say "wall clock stepped by $1 s: now $(date -u '+%Y-%m-%d %H:%M:%S')"
	echo "$1 $(date +%s)" >>/out/jumps
}
jumps() {
	jump 86400
	sleep 15
	jump -172800
	sleep 15
	jump 86400
	sleep 15
}
record() {
	zfs list -H -p -t snapshot -o name,createtxg,creation -s createtxg -r "$1" >/out/snaps
	zfs list -H -t snapshot -o name -r "$1" | while read -r s; do zfs holds -H "$s"; done >/out/holds || true
	cp /tmp/flocker/flocker.ini /out/final.ini
}
modprobe zfs
me=$(hostname)
mkdir -p /tmp/flocker
cp "/share/$me.ini" /tmp/flocker/flocker.ini
cp "/share/$me.crt" /tmp/flocker/node.crt
cp "/share/$me.key" /tmp/flocker/node.key
chmod 600 /tmp/flocker/*
: >/out/agent.log
: >/out/jumps

case $me in
a)
	zpool create -f tank /dev/disk/by-id/virtio-pool0
	zfs create tank/app
	echo "before the jumps" >/tank/app/first.txt
	start_agent
	retry grep -q '"msg":"replicated"' /out/agent.log
	say "replicated; writing"
	(
		i=0
		while [ ! -f /tmp/stop ]; do
			i=$((i + 1))
			echo "write $i" >"/tank/app/w-$i"
			sync
			sleep 0.5
		done
	) &
	writer=$!
	sleep 5
	jumps
	retry sh -c 'echo jump | nc 192.0.2.12 9101'
	timeout 300 nc -l -p 9102 >/dev/null
	say "b has jumped too"
	sleep 5
	touch /tmp/stop
	wait "$writer"
	echo "after the jumps" >/tank/app/final.txt
	sync
	ls /tank/app | sort >/out/listing
	# Once b has final.txt nothing changes on a any more: its newest
	# snapshot then is the last, and the agent sends it (intermediate
	# snapshots are skipped by an incremental from the base to the newest).
	timeout 300 nc -l -p 9103 >/dev/null
	sleep 5
	newest=$(zfs list -H -t snapshot -o name -s createtxg -r tank/app | tail -1 | cut -d@ -f2)
	say "b has final.txt; newest snapshot $newest"
	retry sh -c "echo $newest | nc 192.0.2.12 9105"
	timeout 300 nc -l -p 9104 >/dev/null
	say "b has everything"
	record tank/app
	stop_agent
	;;
b)
	zpool create -f backup /dev/disk/by-id/virtio-pool0
	start_agent
	timeout 300 nc -l -p 9101 >/dev/null
	jumps
	retry sh -c 'echo jumped | nc 192.0.2.11 9102'
	retry test -f /backup/app/final.txt
	ls /backup/app | sort >/out/listing
	retry sh -c 'echo final | nc 192.0.2.11 9103'
	newest=$(timeout 300 nc -l -p 9105)
	retry zfs list -H -o name "backup/app@$newest" >/dev/null
	record backup/app
	retry sh -c 'echo done | nc 192.0.2.11 9104'
	stop_agent
	;;
*)
	say "unknown role"
	exit 2
	;;
esac
