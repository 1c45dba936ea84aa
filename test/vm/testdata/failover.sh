#!/bin/sh
# Scenario of the VM failover test (failover_test.go), run by both guests:
# flocker agents on OpenZFS with a service (busybox httpd, started by the
# dataset's start hook) on the floating address 192.0.2.100. a (master)
# replicates to b, then "loses power": its agent is SIGKILLed, its service
# killed, its link taken down; it writes a file that b will never see. b
# takes over and writes too. a's link comes back and its agent restarts:
# it demotes, its divergent write is stashed, and b's writes replicate to
# it. Each guest leaves its agent's JSON log and what the test judges in
# /out.
set -eu
# shellcheck disable=SC3040 # busybox ash has pipefail
set -o pipefail
say() { echo "failover: $(hostname): $*"; }

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
role_is() { grep -q "^role = $1\$" /tmp/flocker/flocker.ini; }
modprobe zfs
me=$(hostname)
mkdir -p /tmp/flocker
cp "/share/$me.ini" /tmp/flocker/flocker.ini
cp "/share/$me.crt" /tmp/flocker/node.crt
cp "/share/$me.key" /tmp/flocker/node.key
chmod 600 /tmp/flocker/*
: >/out/agent.log

case $me in
a)
	zpool create -f tank /dev/disk/by-id/virtio-pool0
	zfs create tank/app
	echo ok >/tank/app/flocker-check.txt
	echo "replicated before the failure" >/tank/app/data.txt
	start_agent
	retry timeout 2 wget -q -O /out/served-a http://192.0.2.100:8080/data.txt
	say "serving"
	retry grep -q '"msg":"replicated"' /out/agent.log
	retry sh -c 'echo synced | nc 192.0.2.12 9101'
	say "b holds the data; losing power"
	kill -KILL "$(cat /tmp/agent.pid)"
	wait "$(cat /tmp/agent.pid)" || true
	kill "$(cat /tmp/httpd.pid)" 2>/dev/null || true
	ip link set eth0 down
	echo "written by a alone" >/tank/app/a-only.txt
	sync
	# b takes over meanwhile; OpenZFS syncs the write into `written`.
	sleep 25
	ip link set eth0 up
	say "back"
	start_agent
	retry role_is slave
	say "demoted"
	retry test -f /tank/app/b-only.txt
	say "b's write replicated"
	zfs list -H -o name -r tank >/out/datasets
	stash=$(zfs list -H -o name -r -d 1 tank/flocker-stash | grep -v '^tank/flocker-stash$' | head -1)
	cat "$(zfs get -H -o value mountpoint "$stash")/a-only.txt" >/out/stash-a-only || true
	cat /tank/app/b-only.txt >/out/b-only
	cp /tmp/flocker/flocker.ini /out/final.ini
	retry sh -c 'echo done | nc 192.0.2.12 9100'
	stop_agent
	;;
b)
	zpool create -f backup /dev/disk/by-id/virtio-pool0
	start_agent
	timeout 300 nc -l -p 9101 >/dev/null
	retry test -f /backup/app/data.txt
	retry role_is master
	say "promoted"
	retry timeout 2 wget -q -O /out/served-b http://192.0.2.100:8080/data.txt
	say "serving"
	echo "written by b after the failover" >/backup/app/b-only.txt
	timeout 300 nc -l -p 9100 >/dev/null
	say "a has b's write"
	cp /tmp/flocker/flocker.ini /out/final.ini
	stop_agent
	kill "$(cat /tmp/httpd.pid)" 2>/dev/null || true
	;;
*)
	say "unknown role"
	exit 2
	;;
esac
