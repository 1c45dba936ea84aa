package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// loopEnv makes the test binary a helper process that rewrites [state] in
// the named file forever (see TestMain): the process the kill test kills.
const loopEnv = "FLOCKER_TEST_WRITESTATE_LOOP"

func TestMain(m *testing.M) {
	if path := os.Getenv(loopEnv); path != "" {
		writeStateForever(path)
	}
	os.Exit(m.Run())
}

// writeStateForever reads the file's epoch and writes the next one, with
// the role flipping each time, as an agent changing roles would.
func writeStateForever(path string) {
	for {
		c, err := Load(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		next := State{Role: RoleMaster, Epoch: c.State.Epoch + 1}
		if c.State.Role == RoleMaster {
			next.Role = RoleSlave
		}
		if err := WriteState(path, next); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
}

// TestKillDuringWriteState kills a process rewriting [state] in a loop,
// many times at random moments: after every kill the file is exactly the
// original with some role and epoch written into it (every comment, blank
// line and key order kept, no torn or empty file), and the epoch never goes
// back.
func TestKillDuringWriteState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flocker.ini")
	orig, err := os.ReadFile("testdata/valid/full.ini")
	if err != nil {
		t.Fatal(err)
	}
	// full.ini ends at the largest epoch; start the loop lower.
	orig, err = setKeys(orig, "state", []string{"role", "slave", "epoch", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, orig, FileMode); err != nil {
		t.Fatal(err)
	}
	kills := 150
	if testing.Short() {
		kills = 20
	}
	var last uint64
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), loopEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Process start-up takes a few ms; the kill lands from before the
		// first write to deep into the loop.
		time.Sleep(time.Duration(rand.IntN(40_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: the writer ended on its own (%v): %s", i, err, stderr.Bytes())
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Decode(path, got)
		if err != nil {
			t.Fatalf("kill %d: the file does not parse: %v\n%s", i, err, got)
		}
		want, err := setKeys(orig, "state", []string{"role", string(c.State.Role), "epoch", strconv.FormatUint(c.State.Epoch, 10)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("kill %d: the file is not the original with [state] role = %s, epoch = %d:\n%s", i, c.State.Role, c.State.Epoch, got)
		}
		if c.State.Epoch < last {
			t.Fatalf("kill %d: epoch went back from %d to %d", i, last, c.State.Epoch)
		}
		wantRole := RoleSlave
		if c.State.Epoch%2 == 1 {
			wantRole = RoleMaster
		}
		if c.State.Role != wantRole {
			t.Fatalf("kill %d: epoch %d with role %s: role and epoch from different writes", i, c.State.Epoch, c.State.Role)
		}
		last = c.State.Epoch
	}
	// The kills must have hit a writer that was writing: many versions
	// went by.
	if last < uint64(kills) {
		t.Fatalf("only %d rewrites in %d runs: the kills did not land during rewrites", last, kills)
	}
	// A killed write leaves its temporary file: proof a kill landed
	// between staging and rename.
	leftover, _ := filepath.Glob(filepath.Join(dir, ".flocker.ini.tmp-*"))
	if len(leftover) == 0 && !testing.Short() {
		t.Fatalf("no kill of %d landed inside a write (no temporary file left)", kills)
	}
	t.Logf("%d kills, %d rewrites; %d temporary files left by killed writes (a kill between staging and rename; never read)", kills, last, len(leftover))
}
