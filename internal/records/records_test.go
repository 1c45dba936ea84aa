package records

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStampUnstamp(t *testing.T) {
	var rec [Size]byte
	if got := Unstamp(rec[:], 0); got != -1 {
		t.Errorf("never written: got seq %d, want -1", got)
	}
	Stamp(rec[:], 7, 41)
	if got := Unstamp(rec[:], 7); got != 41 {
		t.Errorf("got seq %d, want 41", got)
	}
	if got := Unstamp(rec[:], 8); got != -1 {
		t.Errorf("another run's record: got seq %d, want -1", got)
	}
	if got := Unstamp(rec[:5], 7); got != -1 {
		t.Errorf("short record: got seq %d, want -1", got)
	}
}

func TestLast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "append.log")
	if _, err := Last(path, 1); !os.IsNotExist(err) {
		t.Fatalf("missing file: err %v, want not-exist", err)
	}
	var data []byte
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Last(path, 1); got != -1 || err != nil {
		t.Fatalf("empty file: got %d, %v; want -1, nil", got, err)
	}
	for seq := range 3 {
		var rec [Size]byte
		Stamp(rec[:], 1, seq)
		data = append(data, rec[:]...)
	}
	// A torn last record (a write cut short) is not read: the last whole
	// one is.
	data = append(data, make([]byte, Size/2)...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Last(path, 1); got != 2 || err != nil {
		t.Errorf("got %d, %v; want 2, nil", got, err)
	}
	if got, err := Last(path, 2); got != -1 || err != nil {
		t.Errorf("another run: got %d, %v; want -1, nil", got, err)
	}
}
