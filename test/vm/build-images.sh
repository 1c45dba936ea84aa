#!/bin/bash
# build-images.sh - build (or reuse) the guest images of flocker's VM test tier.
#
# The guest is Debian's stock kernel linux-image-$KVER, booted by qemu in
# software emulation (TCG), with real OpenZFS ($ZFS_SUITE, 2.3.x) and the
# flocker binary in a busybox initramfs. It exists because the dev/CI host can
# load neither kernel modules nor fentry/kprobe/LSM programs; the guest can.
#
# Stages, each cached under $FLOCKER_VM_DIR by a key over its inputs:
#   kernel/KEY     vmlinuz and its BTF (key: kernel package version)
#   zfs/KEY        spl.ko and zfs.ko built here for the guest kernel from the
#                  zfs-dkms source, with module BTF added so fentry can attach
#                  to ZFS functions (key: kernel, zfs version, build recipe)
#   base/KEY       the base initramfs: busybox, OpenZFS userland, iproute2,
#                  bpftool, kmod, a kernel module subset, guest/init
#                  (key: zfs stage, this script, guest/*, host tool versions)
#   initramfs/KEY  base initramfs + a small second cpio archive holding
#                  /usr/bin/flocker (the kernel unpacks concatenated archives);
#                  only this is redone when flocker changes
# The build writes REPO/bin/vm-images.json naming the files this checkout
# tests with, so worktrees sharing $FLOCKER_VM_DIR never test each other's
# binary. Only the most recently used entries of each stage are kept.
#
# Measured on the 2-core dev VM, shared and busy: 4 min from scratch (zfs
# configure + make 3.7 min of it); 1.5 s when nothing changed.
#
# Environment: FLOCKER_VM_DIR (default /var/tmp/flocker-vm),
#   FLOCKER_VM_KVER (default 6.1.0-56-cloud-amd64),
#   FLOCKER_VM_ZFS_SUITE (default bookworm-backports), JOBS (make -j).
# Runs as root (apt, and the shared cache dir); `make vm-images` runs
# scripts/setup-host.sh first for the host tools used here.
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
W=${FLOCKER_VM_DIR:-/var/tmp/flocker-vm}
KVER=${FLOCKER_VM_KVER:-6.1.0-56-cloud-amd64}
ZFS_SUITE=${FLOCKER_VM_ZFS_SUITE:-bookworm-backports}
ZFS_SERIES=2.3 # the tier promises OpenZFS 2.3.x inside the guest
JOBS=${JOBS:-$(($(nproc) + 1))}
export PATH=/usr/local/go/bin:$PATH DEBIAN_FRONTEND=noninteractive LC_ALL=C

t0=$SECONDS
say() { echo "vm-images [+$((SECONDS - t0))s] $*"; }
die() {
	echo "vm-images: $*" >&2
	exit 1
}
key() { sha256sum | cut -c1-16; }

mkdir -p "$W"
# One build at a time per cache dir: worktrees and CI jobs share it.
exec 9>"$W/.lock"
flock 9
# Leftovers of builds that were killed.
rm -rf "$W"/tmp.* "$W"/*/*.part
tmp=$(mktemp -d "$W/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
set -E
trap 'echo "vm-images: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# ------------------------------------------------------------ package versions
# Read from the local apt index (no network). Empty when the index does not
# know the package yet.
pkg_version() { # pkg_version NAME [SUITE]
	apt-cache madison "$1" 2>/dev/null | awk -F'|' -v suite="${2:-}" '
		suite == "" || index($3, " " suite "/") { gsub(/ /, "", $2); print $2; exit }'
}

# The zfs packages are in contrib, which Debian images often leave out. Add it
# for $ZFS_SUITE, with the mirror this machine already uses for Debian.
mirror_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v RS= '{
			uris = ""; suites = ""
			n = split($0, line, "\n")
			for (i = 1; i <= n; i++) {
				if (line[i] ~ /^URIs:/) uris = line[i]
				if (line[i] ~ /^Suites:/) suites = line[i] " "
			}
			if (suites ~ / bookworm /) { split(uris, u, /[ \t]+/); print u[2]; exit }
		}' "$f"
	done
	if [ -r /etc/apt/sources.list ]; then
		awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; i++
			if ($(i + 1) == "bookworm") { print $i; exit } }' /etc/apt/sources.list
	fi
}
apt_ready=0
apt_update() {
	need_root "refresh the apt index"
	local src=/etc/apt/sources.list.d/flocker-vm-contrib.sources uri
	if [ -z "$(pkg_version zfs-dkms "$ZFS_SUITE")" ] && [ ! -e "$src" ]; then
		uri=$(mirror_uri | head -1)
		[ -n "$uri" ] || die "no Debian bookworm mirror in /etc/apt/sources*; cannot add $ZFS_SUITE contrib"
		say "adding $ZFS_SUITE contrib from $uri ($src)"
		printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$uri" "$ZFS_SUITE" >"$src"
	fi
	say "apt-get update"
	apt-get update -qq
	apt_ready=1
}
need_root() {
	[ "$(id -u)" = 0 ] || die "needs root to $1 (run as root, e.g. sudo make vm-images)"
}

kernel_pkg=linux-image-$KVER
kernel_ver=$(pkg_version "$kernel_pkg")
zfs_ver=$(pkg_version zfs-dkms "$ZFS_SUITE")
if [ -z "$kernel_ver" ] || [ -z "$zfs_ver" ]; then
	apt_update
	kernel_ver=$(pkg_version "$kernel_pkg")
	zfs_ver=$(pkg_version zfs-dkms "$ZFS_SUITE")
fi
[ -n "$kernel_ver" ] || die "$kernel_pkg is not in the apt index (set FLOCKER_VM_KVER to an available linux-image-*-cloud-amd64)"
[ -n "$zfs_ver" ] || die "zfs-dkms is not in $ZFS_SUITE of the apt index"
case $zfs_ver in "$ZFS_SERIES".*) ;; *) die "$ZFS_SUITE has zfs $zfs_ver, the tier needs $ZFS_SERIES.x" ;; esac

# dl VAR NAME VERSION: set VAR to the path of NAME's .deb, downloading it into
# the package cache the first time.
dl() {
	local d=$W/debs/$2/$3 f
	f=$(find "$d" -name '*.deb' 2>/dev/null | head -1) || true
	if [ -z "$f" ]; then
		need_root "download $2"
		rm -rf "$d.part" && mkdir -p "$d.part"
		# The index named this version; if the mirror has moved on since, a
		# fresh index says so.
		if ! (cd "$d.part" && apt-get download -qq "$2=$3" 2>/dev/null); then
			[ "$apt_ready" = 1 ] || apt_update
			(cd "$d.part" && apt-get download -qq "$2=$3" 2>&1 | { grep -v unsandboxed || true; } >&2)
		fi
		[ -n "$(find "$d.part" -name '*.deb')" ] || die "download of $2=$3 failed"
		rm -rf "$d" && mv "$d.part" "$d"
		f=$(find "$d" -name '*.deb' | head -1)
	fi
	printf -v "$1" '%s' "$f"
}

# ------------------------------------------------------------ stage recipes
# Each stage function's own text is part of its cache key, so editing a recipe
# rebuilds exactly the stages it feeds.

# kernel DIR: vmlinuz and the kernel's BTF. vmlinuz is a bzImage with an
# LZ4-compressed ELF inside; its .BTF section is the one the guest exposes
# as /sys/kernel/btf/vmlinux, which pahole needs as the base for module BTF.
build_kernel() {
	local out=$1 x=$tmp/kernel off deb
	mkdir -p "$x" "$out"
	dl deb "$kernel_pkg" "$kernel_ver"
	dpkg-deb -x "$deb" "$x"
	cp "$x/boot/vmlinuz-$KVER" "$out/vmlinuz"
	grep -aboP '\x02\x21\x4c\x18' "$out/vmlinuz" | cut -d: -f1 >"$tmp/offsets"
	while read -r off; do
		tail -c +$((off + 1)) "$out/vmlinuz" | lz4 -dc >"$tmp/vmlinux" 2>/dev/null || true
		readelf -h "$tmp/vmlinux" >/dev/null 2>&1 && break
	done <"$tmp/offsets"
	readelf -h "$tmp/vmlinux" >/dev/null 2>&1 || die "no LZ4-compressed ELF found in vmlinuz-$KVER"
	objcopy -O binary --only-section=.BTF "$tmp/vmlinux" "$out/vmlinux.btf"
	[ -s "$out/vmlinux.btf" ] || die "vmlinux-$KVER has no .BTF section"
	rm -f "$tmp/vmlinux"
}

# zfs DIR KERNEL_DIR: spl.ko and zfs.ko for the guest kernel. kbuild leaves
# out module BTF for external modules when the headers ship no vmlinux, so it
# is added the way kbuild's Makefile.modfinal would (pahole -J against the
# kernel's BTF); then DWARF is stripped (about 90 MB -> 10 MB).
build_zfs() {
	local out=$1 kdir=$2 src m deb
	if [ ! -e "/usr/src/linux-headers-$KVER/Makefile" ]; then
		need_root "install linux-headers-$KVER"
		[ "$apt_ready" = 1 ] || apt_update
		say "installing linux-headers-$KVER"
		apt-get install -y -qq --no-install-recommends "linux-headers-$KVER" >/dev/null
	fi
	dl deb zfs-dkms "$zfs_ver"
	dpkg-deb -x "$deb" "$tmp/zfs"
	src=$(echo "$tmp"/zfs/usr/src/zfs-*)
	say "zfs $zfs_ver: configure (about 1 min on 2 cores)"
	(cd "$src" && ./configure --disable-dependency-tracking --prefix=/usr --with-config=kernel \
		--with-linux="/usr/src/linux-headers-${KVER%-*-*}-common" \
		--with-linux-obj="/usr/src/linux-headers-$KVER") >"$tmp/zfs-configure.log" 2>&1 ||
		{ tail -30 "$tmp/zfs-configure.log" >&2; die "zfs configure failed"; }
	say "zfs $zfs_ver: make -C module -j$JOBS (about 2 min on 2 cores)"
	make -C "$src/module" -j"$JOBS" >"$tmp/zfs-make.log" 2>&1 ||
		{ tail -30 "$tmp/zfs-make.log" >&2; die "zfs module build failed"; }
	mkdir -p "$out"
	for m in spl zfs; do
		cp "$src/module/$m.ko" "$out/$m.ko"
		LLVM_OBJCOPY=objcopy pahole -J --btf_gen_floats -j --lang_exclude=rust \
			--btf_base "$kdir/vmlinux.btf" "$out/$m.ko"
		strip --strip-debug "$out/$m.ko"
		readelf -S --wide "$out/$m.ko" | grep -q ' \.BTF ' || die "$m.ko: no .BTF section after pahole"
	done
	rm -rf "$tmp/zfs"
}

# base DIR KERNEL_DIR ZFS_DIR: the initramfs without flocker.
build_base() {
	local out=$1 kdir=$2 zdir=$3 r=$tmp/root u=$tmp/zfs-user k=$tmp/kernel deb lib b a
	mkdir -p "$out" "$u"
	# OpenZFS userland and the libraries its zfsutils-linux package depends on.
	dl deb zfsutils-linux "$zfs_ver"
	dpkg-deb -x "$deb" "$u"
	for lib in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | awk '$1 ~ /^lib(zfs|zpool|nvpair|uutil)/ { print $1 }'); do
		dl deb "$lib" "$zfs_ver"
		dpkg-deb -x "$deb" "$u"
	done

	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,etc/zfs,proc,sys,dev,run,tmp,mnt,root,share,out,var/tmp}
	ln -s ../lib "$r/usr/lib"
	cp /bin/busybox "$r/bin/busybox"
	for a in $("$r/bin/busybox" --list); do
		[ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
	done
	# install_bin SRC DST: a dynamically linked program and its libraries.
	install_bin() {
		install -D -m 0755 "$1" "$r$2"
		LD_LIBRARY_PATH=$u/lib/x86_64-linux-gnu ldd "$1" | awk '
			/not found/ { print "MISSING " $1; next }
			$2 == "=>" && $3 ~ /^\// { print $3 }
			$1 ~ /^\/lib64\// { print $1 }' |
			while read -r lib; do
				case $lib in MISSING) die "$1 needs a library that is not there: $(LD_LIBRARY_PATH=$u/lib/x86_64-linux-gnu ldd "$1" | grep 'not found')" ;; esac
				case $lib in
				/lib64/*) dst=$lib ;;
				*) dst=/lib/x86_64-linux-gnu/${lib##*/} ;;
				esac
				[ -e "$r$dst" ] || cp -L "$lib" "$r$dst"
			done
	}
	for b in zfs zpool zdb zstream mount.zfs zgenhostid zhack zfs_ids_to_path; do
		if [ -e "$u/sbin/$b" ]; then install_bin "$u/sbin/$b" "/sbin/$b"; fi
	done
	[ -x "$r/sbin/zfs" ] || die "zfsutils-linux $zfs_ver has no zfs"
	ln -s zstream "$r/sbin/zstreamdump"
	# The real tools where busybox's applets fall short (netlink details, BPF).
	for b in ip tc bridge; do
		rm -f "$r/bin/$b" "$r/sbin/$b"
		install_bin "/sbin/$b" "/sbin/$b"
	done
	install_bin /usr/sbin/bpftool /usr/sbin/bpftool
	install_bin /bin/kmod /bin/kmod
	for a in modprobe insmod rmmod lsmod modinfo depmod; do
		rm -f "$r/bin/$a" "$r/sbin/$a"
		ln -s ../bin/kmod "$r/sbin/$a"
	done
	cp -a /etc/iproute2 "$r/etc/"
	cp -a "$u/etc/zfs/." "$r/etc/zfs/" 2>/dev/null || true
	# glibc loads libgcc_s for pthread_cancel (zfs send aborts at exit without
	# it) and libnss_files for user and host lookups.
	cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libnss_files.so.2 "$r/lib/x86_64-linux-gnu/"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\n' >"$r/etc/group"
	printf 'passwd: files\ngroup: files\nhosts: files\n' >"$r/etc/nsswitch.conf"
	printf '127.0.0.1 localhost\n' >"$r/etc/hosts"
	printf '/lib/x86_64-linux-gnu\n' >"$r/etc/ld.so.conf"
	ldconfig -r "$r"

	# Kernel modules: the guest's drivers, what later scenarios need for
	# networking faults (netem, veth, bridge, ...), loop devices (the block
	# notifier tier's syscall-less writer), and spl/zfs, with their
	# dependencies as modprobe resolves them.
	mkdir -p "$k"
	dl deb "$kernel_pkg" "$kernel_ver"
	dpkg-deb -x "$deb" "$k"
	mkdir -p "$k/lib/modules/$KVER/updates"
	cp "$zdir/spl.ko" "$zdir/zfs.ko" "$k/lib/modules/$KVER/updates/"
	depmod -b "$k" "$KVER"
	for m in virtio_pci virtio_mmio virtio_blk virtio_net virtio_console virtio_rng \
		veth dummy tun bridge macvlan ipvlan ifb 8021q \
		sch_netem sch_tbf sch_htb sch_ingress cls_bpf act_bpf \
		vmw_vsock_virtio_transport fuse virtiofs crc32c_intel loop spl zfs; do
		modprobe -d "$k" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
	done | sort -u | while read -r f; do
		install -D -m 0644 "$f" "$r${f#"$k"}"
	done
	cp "$k/lib/modules/$KVER"/modules.builtin* "$k/lib/modules/$KVER/modules.order" "$r/lib/modules/$KVER/"
	depmod -b "$r" "$KVER"
	rm -rf "$k"

	install -m 0755 "$here/guest/init" "$r/init"
	install -m 0755 "$here/guest/uevent" "$r/sbin/flocker-uevent"
	(cd "$r" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 -n >"$out/base.cpio.gz"
	ln "$kdir/vmlinuz" "$out/vmlinuz" 2>/dev/null || cp "$kdir/vmlinuz" "$out/vmlinuz"
	rm -rf "$r" "$u"
}

# ------------------------------------------------------------ keys
host_tools=$(dpkg-query -W busybox-static iproute2 bpftool kmod libc6 libgcc-s1 2>/dev/null) ||
	die "host tools missing (busybox-static iproute2 bpftool kmod): run make setup"
kernel_key=$(printf '%s\n' "$KVER" "$kernel_ver" "$(declare -f build_kernel)" | key)
zfs_key=$(printf '%s\n' "$kernel_key" "$zfs_ver" "$(declare -f build_zfs)" | key)
base_key=$({
	printf '%s\n' "$zfs_key" "$host_tools"
	cat "$here/build-images.sh" "$here"/guest/*
} | key)
K=$W/kernel/$kernel_key Z=$W/zfs/$zfs_key B=$W/base/$base_key

# stage DIR FUNCTION ARGS...: run FUNCTION into DIR unless DIR is complete.
stage() {
	local dir=$1 fn=$2
	shift 2
	if [ -e "$dir/.done" ]; then
		touch "$dir"
		return
	fi
	for t in lz4 readelf objcopy strip pahole cpio gzip make gcc depmod; do
		command -v "$t" >/dev/null || die "$t not found: run make setup"
	done
	rm -rf "$dir" "$dir.part"
	"$fn" "$dir.part" "$@"
	touch "$dir.part/.done"
	mv "$dir.part" "$dir"
}

if [ -e "$B/.done" ]; then
	say "base image $base_key is current (kernel $kernel_ver, zfs $zfs_ver)"
	touch -c "$K" "$Z" "$B"
else
	say "kernel $KVER ($kernel_ver)"
	stage "$K" build_kernel
	say "zfs modules $zfs_ver"
	stage "$Z" build_zfs "$K"
	say "zfs modules: $(cd "$Z" && du -h spl.ko zfs.ko | awk '{ printf "%s=%s ", $2, $1 }')"
	say "base initramfs"
	stage "$B" build_base "$K" "$Z"
	say "base initramfs: $(du -h "$B/base.cpio.gz" | cut -f1) gzip"
fi

# ------------------------------------------------------------ flocker
say "go build ./cmd/flocker"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$tmp/flocker" ./cmd/flocker)
flocker_sha=$(sha256sum "$tmp/flocker" | cut -d' ' -f1)
final_key=$(printf '%s\n' "$base_key" "$flocker_sha" | key)
I=$W/initramfs/$final_key.cpio.gz
if [ -e "$I" ]; then
	touch "$I"
	say "initramfs $final_key is current"
else
	mkdir -p "$tmp/overlay/usr/bin" "$W/initramfs"
	install -m 0755 "$tmp/flocker" "$tmp/overlay/usr/bin/flocker"
	(cd "$tmp/overlay" && printf '%s\n' usr usr/bin usr/bin/flocker | cpio -o -H newc -R 0:0 --quiet) |
		gzip -1 -n >"$tmp/overlay.cpio.gz"
	cat "$B/base.cpio.gz" "$tmp/overlay.cpio.gz" >"$I.part"
	mv "$I.part" "$I"
	say "initramfs $final_key with flocker ${flocker_sha:0:12}"
fi

# The manifest vmtest reads (internal/vmtest), written atomically.
mkdir -p "$repo/bin"
cat >"$repo/bin/vm-images.json.part" <<EOF
{
  "kernel": "$B/vmlinuz",
  "initramfs": "$I",
  "kernel_release": "$KVER",
  "kernel_package": "$kernel_pkg=$kernel_ver",
  "zfs_version": "$zfs_ver",
  "flocker_sha256": "$flocker_sha"
}
EOF
mv "$repo/bin/vm-images.json.part" "$repo/bin/vm-images.json"

# Keep the most recently used cache entries of each stage (every use touches
# them): enough for several worktrees and a few build-script versions.
prune() { # prune N PATH...: remove all but the N newest PATHs
	local n=$1
	shift
	[ $# -gt "$n" ] || return 0
	# shellcheck disable=SC2012 # the names are hex keys
	ls -td "$@" | tail -n +$((n + 1)) | while read -r old; do rm -rf "$old"; done
}
prune 2 "$W"/kernel/*/
prune 2 "$W"/zfs/*/
prune 4 "$W"/base/*/
prune 10 "$W"/initramfs/*.cpio.gz
for d in "$W"/debs/*/*; do
	case ${d##*/} in "$kernel_ver" | "$zfs_ver") ;; *) rm -rf "$d" ;; esac
done
say "done: $repo/bin/vm-images.json"
