//go:build linux

package agent

import (
	"slices"
	"testing"
)

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
