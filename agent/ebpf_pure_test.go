//go:build linux

package agent

import (
	"slices"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	text := `22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
36 35 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:53 / /tank/app rw,relatime - fuse.zfs tank/app rw,user_id=0
41 22 0:53 /sub /srv/bind rw - fuse.zfs tank/app rw
`
	got, err := parseMountinfo(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{dev: 21, root: "/", point: "/proc", fstype: "proc"},
		{dev: 98 << 20, root: "/mnt1", point: "/mnt with space", fstype: "ext3"},
		{dev: 53, root: "/", point: "/tank/app", fstype: "fuse.zfs"},
		{dev: 53, root: "/sub", point: "/srv/bind", fstype: "fuse.zfs"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// A minor above 255 keeps its bits apart from the major: the kernel's
	// encoding, not glibc's.
	got, err = parseMountinfo("1 1 259:300 / /x rw - ext4 /dev/nvme0n1p1 rw\n")
	if err != nil || got[0].dev != 259<<20|300 {
		t.Errorf("259:300: %+v %v", got, err)
	}
	for _, bad := range []string{
		"1 1 x:1 / /x rw - ext4 src rw",
		"1 1 0:1 / /x rw ext4 src rw",
		"1 1 0:1",
	} {
		if _, err := parseMountinfo(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestKernelDev(t *testing.T) {
	// glibc's st_dev for 259:300 (major 259, minor 300)
	const glibc = uint64(300&0xff) | uint64(259&0xfff)<<8 | uint64(300&^0xff)<<12
	if got := kernelDev(glibc); got != 259<<20|300 {
		t.Errorf("kernelDev(%#x) = %#x, want %#x", glibc, got, 259<<20|300)
	}
}

func TestVdevPaths(t *testing.T) {
	out := "tank\t960M\t1M\t959M\t-\t-\t0%\t0%\t1.00x\tONLINE\t-\n" +
		"\tmirror-0\t960M\t1M\t959M\t-\t-\t0%\t0%\t-\tONLINE\n" +
		"\t/dev/disk/by-id/virtio-a-part1\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n" +
		"\t/dev/disk/by-id/virtio-b-part1\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n" +
		"logs\t-\t-\t-\t-\t-\t-\t-\t-\t-\n" +
		"\t/dev/vdc\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n"
	want := []string{"/dev/disk/by-id/virtio-a-part1", "/dev/disk/by-id/virtio-b-part1", "/dev/vdc"}
	if got := vdevPaths(out); !slices.Equal(got, want) {
		t.Errorf("vdevPaths = %q, want %q", got, want)
	}
}
