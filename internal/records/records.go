// Package records is the layout of the benchmark writers' 64-byte records,
// shared by the host tier's workloads (bench) and the guest-side writer
// (guestexec): the same attribution reads both writers' files.
package records

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// Size of one record.
const Size = 64

// Stamp writes the 12 bytes every record starts with: run id, then seq+1
// (so zero bytes mean "never written").
func Stamp(b []byte, run uint32, seq int) {
	binary.LittleEndian.PutUint32(b[0:4], run)
	binary.LittleEndian.PutUint64(b[4:12], uint64(seq)+1)
}

// Unstamp returns the seq of a record of run: -1 for another run's record
// or one never written.
func Unstamp(b []byte, run uint32) int {
	if len(b) < 12 || binary.LittleEndian.Uint32(b[0:4]) != run {
		return -1
	}
	return int(binary.LittleEndian.Uint64(b[4:12])) - 1
}

// Last returns the seq of the last whole record in the file at path (a
// file of appends: they land in order), -1 when there is none of run.
func Last(path string, run uint32) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < Size {
		return -1, err
	}
	var rec [Size]byte
	n, err := f.ReadAt(rec[:], st.Size()/Size*Size-Size)
	if err != nil && !(errors.Is(err, io.EOF) && n == Size) {
		return -1, err
	}
	return Unstamp(rec[:], run), nil
}
