package vmtest

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseExitReport(t *testing.T) {
	const nonce = "0123456789abcdef"
	cases := []struct {
		name   string
		data   string
		code   int
		wantOK bool
	}{
		{"plain", "flocker-vm-exit 0123456789abcdef 0\n", 0, true},
		{"serial line ending", "flocker-vm-exit 0123456789abcdef 3\r\n", 3, true},
		{"after noise", "garbage\x00\nflocker-vm-exit 0123456789abcdef 255\n", 255, true},
		{"empty", "", -1, false},
		{"other nonce", "flocker-vm-exit ffffffffffffffff 0\n", -1, false},
		{"no nonce", "flocker-vm-exit 0\n", -1, false},
		{"not a number", "flocker-vm-exit 0123456789abcdef x\n", -1, false},
		{"out of range", "flocker-vm-exit 0123456789abcdef 256\n", -1, false},
		{"extra field", "flocker-vm-exit 0123456789abcdef 0 1\n", -1, false},
		{"cut off", "flocker-vm-exit 0123456789abc", -1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, ok := parseExitReport([]byte(c.data), nonce)
			if code != c.code || ok != c.wantOK {
				t.Errorf("parseExitReport(%q) = %d, %v; want %d, %v", c.data, code, ok, c.code, c.wantOK)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	good := `{"kernel": "/k", "initramfs": "/i", "kernel_release": "6.1.0-56-cloud-amd64",
		"kernel_package": "linux-image-6.1.0-56-cloud-amd64=6.1.192-2", "zfs_version": "2.3.2-2~bpo12+2",
		"flocker_sha256": "ab"}`
	img, err := parseManifest([]byte(good))
	if err != nil {
		t.Fatalf("parseManifest(good): %v", err)
	}
	if img.Kernel != "/k" || img.Initramfs != "/i" || img.ZFSVersion != "2.3.2-2~bpo12+2" {
		t.Errorf("parseManifest(good) = %+v", img)
	}
	for name, bad := range map[string]string{
		"unknown key":   `{"kernel": "/k", "initramfs": "/i", "kernel_release": "r", "zfs_version": "z", "flocker_sha256": "f", "extra": 1}`,
		"missing key":   `{"kernel": "/k", "initramfs": "/i", "kernel_release": "r", "zfs_version": "z"}`,
		"empty value":   `{"kernel": "", "initramfs": "/i", "kernel_release": "r", "zfs_version": "z", "flocker_sha256": "f"}`,
		"not an object": `[]`,
	} {
		if _, err := parseManifest([]byte(bad)); err == nil {
			t.Errorf("parseManifest(%s): no error", name)
		}
	}
}

func TestValidate(t *testing.T) {
	img := &Images{Kernel: "/k", Initramfs: "/i"}
	ok := Spec{Images: img, Script: "true", Guests: []Guest{{Name: "a", Disks: []Disk{{Serial: "pool0"}}}, {Name: "b"}}}
	s, err := ok.validate()
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	a, b := s.Guests[0], s.Guests[1]
	if a.IP != "192.0.2.11/24" || b.IP != "192.0.2.12/24" {
		t.Errorf("default IPs = %q, %q", a.IP, b.IP)
	}
	if a.Disks[0].Size != DefaultDiskSize || a.MemoryMiB != DefaultMemoryMiB || a.CPUs != 1 || s.Timeout != DefaultTimeout {
		t.Errorf("defaults not applied: %+v timeout %v", a, s.Timeout)
	}
	if ok.Guests[0].Disks[0].Size != 0 {
		t.Error("validate changed the caller's spec")
	}
	single, err := Spec{Images: img, Script: "true", Guests: []Guest{{Name: "solo"}}}.validate()
	if err != nil || single.Guests[0].IP != "" {
		t.Errorf("single guest: IP %q, err %v; want no address", single.Guests[0].IP, err)
	}

	bad := map[string]func(*Spec){
		"no images":       func(s *Spec) { s.Images = nil },
		"no guests":       func(s *Spec) { s.Guests = nil },
		"three guests":    func(s *Spec) { s.Guests = append(s.Guests, Guest{Name: "c"}) },
		"empty script":    func(s *Spec) { s.Script = " \n" },
		"bad name":        func(s *Spec) { s.Guests[0].Name = "A b" },
		"duplicate name":  func(s *Spec) { s.Guests[1].Name = "a" },
		"bad ip":          func(s *Spec) { s.Guests[0].IP = "192.0.2.1" },
		"share serial":    func(s *Spec) { s.Guests[0].Disks[0].Serial = "share" },
		"long serial":     func(s *Spec) { s.Guests[0].Disks[0].Serial = strings.Repeat("d", 21) },
		"duplicate disk":  func(s *Spec) { s.Guests[0].Disks = append(s.Guests[0].Disks, Disk{Serial: "pool0"}) },
		"tiny disk":       func(s *Spec) { s.Guests[0].Disks[0].Size = 1 << 20 },
		"file escapes":    func(s *Spec) { s.Files = map[string][]byte{"../x": nil} },
		"file absolute":   func(s *Spec) { s.Files = map[string][]byte{"/x": nil} },
		"file unclean":    func(s *Spec) { s.Files = map[string][]byte{"a//b": nil} },
		"file run.sh":     func(s *Spec) { s.Files = map[string][]byte{"run.sh": nil} },
		"negative time":   func(s *Spec) { s.Timeout = -time.Second },
		"too little ram":  func(s *Spec) { s.Guests[0].MemoryMiB = 64 },
		"negative cpus":   func(s *Spec) { s.Guests[0].CPUs = -1 },
		"empty disk name": func(s *Spec) { s.Guests[0].Disks[0].Serial = "" },
		"one tap of two":  func(s *Spec) { s.Guests[0].TAP = os.Stdin },
	}
	for name, mutate := range bad {
		s := ok
		s.Guests = slices.Clone(ok.Guests)
		s.Guests[0].Disks = slices.Clone(ok.Guests[0].Disks)
		mutate(&s)
		if _, err := s.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, s)
		}
	}
}

func TestArgs(t *testing.T) {
	v := &vm{
		guest: Guest{Name: "b", IP: "192.0.2.12/24", CPUs: 2, MemoryMiB: 512, Out: true,
			Disks: []Disk{{Serial: "pool0", Size: 1 << 30}}},
		index: 1, dir: "/w/b", nonce: "n0", share: "/w/share.img",
		images: &Images{Kernel: "/img/vmlinuz", Initramfs: "/img/initrd"},
	}
	got := strings.Join(v.args(), " ")
	for _, want := range []string{
		"-smp 2 -m 512",
		"-serial file:/w/b/console.log -serial file:/w/b/exit-report",
		"-kernel /img/vmlinuz -initrd /img/initrd",
		"-append console=ttyS0 panic=-1 loglevel=4 no_timer_check flocker.name=b flocker.nonce=n0 flocker.ip=192.0.2.12/24 ",
		"file=/w/share.img,if=none,id=share,format=raw,readonly=on -device virtio-blk-pci,drive=share,serial=share",
		"file=/w/b/disk-pool0.img,if=none,id=disk0,format=raw,cache=unsafe,discard=unmap -device virtio-blk-pci,drive=disk0,serial=pool0",
		"file=/w/b/out.img,if=none,id=out,format=raw -device virtio-blk-pci,drive=out,serial=out",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("qemu args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "-netdev") {
		t.Errorf("guest without a link got a NIC: %s", got)
	}
	v.net, v.tap = os.Stdin, true // any file: args only names fd 3
	if got := strings.Join(v.args(), " "); !strings.Contains(got, "-netdev tap,id=net0,fd=3 -device virtio-net-pci,netdev=net0,mac=52:54:00:f1:0c:02") {
		t.Errorf("guest on a tap: %s", got)
	}
}

func TestNeedsRetry(t *testing.T) {
	r := func(codes ...int) *Result {
		res := &Result{}
		for _, c := range codes {
			res.Guests = append(res.Guests, GuestResult{ExitCode: c})
		}
		return res
	}
	cases := []struct {
		res  *Result
		want bool
	}{
		{r(0, 0), false},
		{r(0, -1), true},  // b hung or crashed
		{r(-1, -1), true}, // timeout
		{r(1, -1), false}, // a failed, b was stopped: a real failure
		{r(-1, 2), false}, // same the other way round
		{r(3), false},     // single guest failed
		{r(-1), true},     // single guest hung
	}
	for _, c := range cases {
		if got := needsRetry(c.res); got != c.want {
			t.Errorf("needsRetry(%+v) = %v, want %v", c.res.Guests, got, c.want)
		}
	}
}

func TestResultErr(t *testing.T) {
	res := &Result{Guests: []GuestResult{
		{Name: "a", ExitCode: 0},
		{Name: "b", ExitCode: 4, Console: "line1\nboom\n"},
		{Name: "c", ExitCode: -1, Note: "no exit report within 1s (killed)"},
	}}
	err := res.Err()
	if err == nil {
		t.Fatal("Err() = nil with failing guests")
	}
	for _, want := range []string{"guest b: exit code 4", "boom", "guest c: no exit report within 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q, lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "guest a") {
		t.Errorf("Err() mentions the passing guest: %v", err)
	}
	if err := (&Result{Guests: []GuestResult{{Name: "a"}}}).Err(); err != nil {
		t.Errorf("Err() = %v for a passing run", err)
	}
}
