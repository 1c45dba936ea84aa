#!/bin/sh
# capture.sh BIG1 BIG2 SMALL OUT: make the zfs tools fail in every way the
# adapter parses, and keep what they print.
#
# BIG1 and BIG2 are empty pools of at least 256 MiB, SMALL an empty pool of
# 64 MiB (the minimum vdev size) with under 100 MiB usable; all three are
# changed and left with datasets in them. Each case writes OUT/CASE.txt (the
# command's stderr) and OUT/CASE.rc (its exit code); a few write OUT/CASE.out
# (stdout) too. Run as root on zfs-fuse (stderr_capture_test.go does) and in
# an OpenZFS guest (vm_test.go does); the outputs committed next to this file
# came from those runs, with the pool names replaced by cap1, cap2 and capsmall.
set -u
P1=$1 P2=$2 SMALL=$3 OUT=$4
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# c CASE CMD...: run CMD, keep its stderr and exit code.
c() {
	name=$1
	shift
	"$@" >/dev/null 2>"$OUT/$name.txt"
	echo $? >"$OUT/$name.rc"
}
# cin CASE FILE CMD...: like c, with FILE on stdin.
cin() {
	name=$1 file=$2
	shift 2
	"$@" <"$file" >/dev/null 2>"$OUT/$name.txt"
	echo $? >"$OUT/$name.rc"
}
# cout CASE CMD...: like c, and keep stdout in OUT/CASE.out.
cout() {
	name=$1
	shift
	"$@" >"$OUT/$name.out" 2>"$OUT/$name.txt"
	echo $? >"$OUT/$name.rc"
}
must() {
	"$@" || {
		echo "capture.sh: setup step failed: $*" >&2
		exit 1
	}
}
mnt() { zfs get -H -o value mountpoint "$1"; }
files=0
fill() { # fill DATASET MIB: write MIB MiB of random data into a new file
	files=$((files + 1))
	dd if=/dev/urandom of="$(mnt "$1")/f$files" bs=1M count="$2" 2>/dev/null
}
openzfs=0
if zfs version >/dev/null 2>&1; then openzfs=1; fi

# The usage texts Detect reads.
zfs '-?' >"$OUT/usage.out" 2>&1
zfs get >"$OUT/get-usage.out" 2>&1

# Names and existence.
must zfs create "$P1/app"
c create_exists zfs create "$P1/app"
c create_no_parent zfs create "$P1/nope/app"
c get_missing zfs get -Hp -o value guid "$P1/nosuch"
c get_bad_property zfs get -Hp -o value nosuchprop "$P1/app"
c set_bad_value zfs set readonly=maybe "$P1/app"
must fill "$P1/app" 1
must zfs snapshot "$P1/app@s1"
c snapshot_exists zfs snapshot "$P1/app@s1"
c snapshot_multi_exists zfs snapshot "$P1@s1" "$P1/app@s1"
c snapshot_missing_dataset zfs snapshot "$P1/nosuch@s1"
c destroy_missing_snapshot zfs destroy "$P1/app@nosuch"
must fill "$P1/app" 1
must zfs snapshot "$P1/app@s2"

# Holds.
must zfs hold flocker "$P1/app@s1"
c hold_exists zfs hold flocker "$P1/app@s1"
c hold_missing zfs hold flocker "$P1/app@nosuch"
c destroy_held zfs destroy "$P1/app@s1"
c release_no_tag zfs release nosuch "$P1/app@s1"
cout holds_list zfs holds -H "$P1/app@s1" "$P1/app@s2"
# Several snapshots in one command, on a dataset of their own (the dialects
# leave different states behind).
must zfs create "$P1/h"
must zfs snapshot "$P1/h@a"
must zfs snapshot "$P1/h@b"
must zfs hold flocker "$P1/h@a"
c destroy_list_held zfs destroy "$P1/h@a,b"
c hold_multi_exists zfs hold flocker "$P1/h@b" "$P1/h@a"
c release_multi_no_tag zfs release flocker "$P1/h@a" "$P1/h@b" "$P1/h@a"
c destroy_list_partly_missing zfs destroy "$P1/h@b,nosuch"
zfs list -H -t snapshot -o name -r "$P1/h" >"$OUT/h_snapshots_after.out" 2>&1
zfs destroy "$P1@s1" 2>/dev/null
must zfs release flocker "$P1/app@s1"

# Dependents, rollback, rename, mount.
must zfs clone "$P1/app@s1" "$P1/cl"
c destroy_has_clones zfs destroy "$P1/app@s1"
c destroy_has_children zfs destroy "$P1/app"
c rollback_more_recent zfs rollback "$P1/app@s1"
c rollback_missing zfs rollback "$P1/app@nosuch"
c rename_exists zfs rename "$P1/app@s2" "$P1/app@s1"
c rename_mounted_new_parent zfs rename -p "$P1/cl" "$P1/x/y"
if zfs list "$P1/x/y" >/dev/null 2>&1; then
	# zfs-fuse may refuse to rename a mounted file system ("dataset is busy").
	zfs unmount "$P1/x/y"
	must zfs rename "$P1/x/y" "$P1/cl"
	zfs mount "$P1/cl" 2>/dev/null
fi
must zfs unmount "$P1/cl"
c unmount_not_mounted zfs unmount "$P1/cl"
c rename_no_parent zfs rename "$P1/cl" "$P1/nope/cl"
must zfs mount "$P1/cl"
c mount_already zfs mount "$P1/cl"
must zfs create -o canmount=off "$P1/off"
c mount_canmount_off zfs mount "$P1/off"
# A plain (never forced) unmount of a file system with a file open is refused.
sleep 30 >"$(mnt "$P1/cl")/held" &
holder=$!
sleep 1
c unmount_busy zfs unmount "$P1/cl"
kill "$holder"
wait "$holder" 2>/dev/null

# Sends.
c send_missing_snapshot zfs send "$P1/app@nosuch"
c send_missing_dataset zfs send "$P1/nosuch@s1"
c send_missing_source zfs send -i @nosuch "$P1/app@s2"
c send_not_earlier zfs send -i @s2 "$P1/app@s1"
must zfs send "$P1/app@s1" >"$work/full.s1"
must zfs send -i @s1 "$P1/app@s2" >"$work/inc.s1s2"
must fill "$P1/app" 8
must zfs snapshot "$P1/app@s3"
must zfs send -i @s2 "$P1/app@s3" >"$work/inc.s2s3"
must zfs send "$P1/app@s3" >"$work/full.s3"
# Truncated halfway; corrupted by flipping 512 bytes in the middle.
half() { head -c $(($(wc -c <"$1") / 2)) "$1" >"$2"; }
flip() {
	n=$(($(wc -c <"$1") / 2))
	{
		head -c "$n" "$1"
		head -c 512 /dev/zero | tr '\0' '\377'
		tail -c +$((n + 513)) "$1"
	} >"$2"
}
half "$work/full.s3" "$work/full.trunc"
half "$work/inc.s2s3" "$work/inc.trunc"
flip "$work/full.s3" "$work/full.corrupt"
flip "$work/inc.s2s3" "$work/inc.corrupt"
head -c 4096 /dev/urandom >"$work/garbage"
: >"$work/empty"

# Receives.
cin recv_incremental_no_dest "$work/inc.s1s2" zfs receive "$P2/app"
must zfs receive "$P2/app" <"$work/full.s1"
cin recv_new_exists "$work/full.s1" zfs receive "$P2/app"
cin recv_mismatch "$work/inc.s2s3" zfs receive "$P2/app"
cin recv_truncated_full "$work/full.trunc" zfs receive "$P2/t"
cin recv_corrupt_full "$work/full.corrupt" zfs receive "$P2/t"
cin recv_garbage "$work/garbage" zfs receive "$P2/app"
cin recv_empty "$work/empty" zfs receive "$P2/app"
must zfs receive "$P2/app" <"$work/inc.s1s2"
cin recv_truncated_incremental "$work/inc.trunc" zfs receive "$P2/app"
cin recv_corrupt_incremental "$work/inc.corrupt" zfs receive "$P2/app"
if [ "$openzfs" = 1 ]; then
	cin recv_truncated_incremental_resumable "$work/inc.trunc" zfs receive -s "$P2/app"
	cout resume_token_incremental zfs get -H -o value receive_resume_token "$P2/app"
	cin recv_partial_state_present "$work/inc.s2s3" zfs receive "$P2/app"
	c recv_abort_incremental zfs receive -A "$P2/app"
fi
zfs list -H -r -t all -o name "$P2" >"$OUT/after_bad_receives.out" 2>&1
# A replica written to after its newest snapshot refuses the next incremental.
must fill "$P2/app" 1
cin recv_modified "$work/inc.s2s3" zfs receive "$P2/app"

# A full pool.
must zfs send "$P1/app@s3" >/dev/null
fill "$P1/app" 100
must zfs snapshot "$P1/app@big"
must zfs send "$P1/app@big" >"$work/full.big"
cin recv_out_of_space "$work/full.big" zfs receive "$SMALL/r"
fill "$SMALL" 200
c create_out_of_space zfs create "$SMALL/more"
c set_out_of_space zfs set flocker:epoch=1 "$SMALL"

# Not root.
c permission_denied su nobody -s /bin/sh -c "zfs create $P1/perm"

if [ "$openzfs" = 1 ]; then
	# Resumable receives, bookmarks, estimates: OpenZFS only.
	cin recv_truncated_resumable "$work/full.trunc" zfs receive -s "$P2/r"
	tok=$(zfs get -H -o value receive_resume_token "$P2/r")
	echo "$tok" >"$OUT/resume_token.out"
	cin recv_not_resuming "$work/full.s3" zfs receive -s "$P2/r"
	c send_token_invalid zfs send -t 1-bogus-token
	cout send_estimate_resume zfs send -nP -t "$tok"
	must zfs send -t "$tok" >"$work/resume"
	cin recv_resume_ok "$work/resume" zfs receive -s "$P2/r"
	cin recv_truncated_resumable2 "$work/full.trunc" zfs receive -s "$P2/r2"
	c recv_abort zfs receive -A "$P2/r2"
	c recv_abort_nothing zfs receive -A "$P2/app"
	must zfs bookmark "$P1/app@s2" "$P1/app#b2"
	c bookmark_exists zfs bookmark "$P1/app@s2" "$P1/app#b2"
	c bookmark_missing_snapshot zfs bookmark "$P1/app@nosuch" "$P1/app#b9"
	c destroy_missing_bookmark zfs destroy "$P1/app#nosuch"
	cout send_estimate zfs send -nP -i "$P1/app#b2" "$P1/app@s3"
	cout send_estimate_full zfs send -nP "$P1/app@s3"
	cout list_bookmarks zfs list -Hp -t bookmark -d 1 -o name,guid,createtxg "$P1/app"
	cout written zfs get -Hp -o name,value written "$P1/app" "$P1/app@s2"
fi
exit 0
