// Package vmtest runs test scenarios inside qemu guests of the VM test tier:
// Debian's stock 6.1 kernel with real OpenZFS 2.3 and the flocker binary, in
// software emulation (TCG), booted from the images test/vm/build-images.sh
// builds (`make vm-images`). The guests give tests what the host lacks: kernel
// modules, kprobes, fentry and BPF LSM, and kernel ZFS.
//
// A scenario is a shell script that every guest's /init runs from a read-only
// share disk, branching on its hostname when the guests play different roles.
// Run boots one or two guests (two share an Ethernet link), waits for each to
// report its scenario's exit code, and returns their console output and the
// files they left on their out disk.
package vmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
)

// ManifestEnv names a manifest to use instead of the checkout's own
// bin/vm-images.json.
const ManifestEnv = "FLOCKER_VM_IMAGES"

// Images are the boot files of a guest, as recorded by build-images.sh.
type Images struct {
	Kernel        string `json:"kernel"`         // bzImage
	Initramfs     string `json:"initramfs"`      // base archive + flocker overlay
	KernelRelease string `json:"kernel_release"` // uname -r in the guest
	KernelPackage string `json:"kernel_package"` // Debian package=version
	ZFSVersion    string `json:"zfs_version"`    // Debian version of zfs-dkms
	FlockerSHA256 string `json:"flocker_sha256"` // of /usr/bin/flocker in the guest

	Manifest string `json:"-"` // the file these were read from
}

// tools are the host programs Run executes.
var tools = []string{"qemu-system-x86_64", "mkfs.ext4", "debugfs"}

// FindImages reads the image manifest ($FLOCKER_VM_IMAGES, else
// bin/vm-images.json in the checkout around the working directory) and checks
// that the files it names and the host tools Run needs are there.
func FindImages() (*Images, error) {
	path := os.Getenv(ManifestEnv)
	if path == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(root, "bin", "vm-images.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading image manifest (run make vm-images): %w", err)
	}
	img, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("image manifest %s: %w", path, err)
	}
	img.Manifest = path
	for _, f := range []string{img.Kernel, img.Initramfs} {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("image manifest %s: %w (run make vm-images)", path, err)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return nil, fmt.Errorf("image manifest %s: %s is not a non-empty file", path, f)
		}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("host tool for VM tests: %w (run make setup)", err)
		}
	}
	return img, nil
}

// parseManifest decodes the manifest strictly: unknown keys mean it was
// written by a different build-images.sh than this package expects.
func parseManifest(data []byte) (*Images, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var img Images
	if err := dec.Decode(&img); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	var missing []error
	for key, v := range map[string]string{
		"kernel": img.Kernel, "initramfs": img.Initramfs, "kernel_release": img.KernelRelease,
		"zfs_version": img.ZFSVersion, "flocker_sha256": img.FlockerSHA256,
	} {
		if v == "" {
			missing = append(missing, fmt.Errorf("key %q missing or empty", key))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	return &img, nil
}

// moduleRoot is the nearest directory at or above the working directory that
// holds a go.mod (for tests: the checkout they belong to).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// RequireImages returns the images for a test, or stops it through
// testutil.Require when they are missing (a skip outside CI, a failure in CI,
// where `make test` builds them first). VM tests are slow, so -short skips.
func RequireImages(t testing.TB) *Images {
	t.Helper()
	if testing.Short() {
		t.Skip("VM test: not run with -short")
	}
	img, err := FindImages()
	testutil.RequireNoError(t, "VM test images", err)
	return img
}
