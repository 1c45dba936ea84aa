package agent

import (
	"context"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
)

// Two divergences of one dataset at one epoch within a second (seen under
// load in CI) must not collide on the stash's name.
func TestFreeStashNameSkipsTakenSeconds(t *testing.T) {
	p := rigtest.Pool(t, rig.PoolOptions{Size: 128 << 20})
	ctx := context.Background()
	cli := snapshot.NewCLI("", "", rigtest.Logger(t))
	d, err := cli.Detect(ctx)
	testutil.RequireNoError(t, "detecting zfs", err)
	z := snapshot.NewWithDialect(cli, d, rigtest.Logger(t))
	ds := p.Name + "/app"
	at := time.Date(2026, 11, 21, 23, 23, 14, 0, time.UTC)

	first, err := freeStashName(ctx, z, ds, "app", 0, at)
	if err != nil {
		t.Fatal(err)
	}
	if want := stashName(ds, "app", 0, at); first != want {
		t.Fatalf("no stash yet: got %s, want %s", first, want)
	}
	for _, n := range []string{stashParent(ds), first, stashName(ds, "app", 0, at.Add(time.Second))} {
		if err := z.CreateDataset(ctx, n, snapshot.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", n, err)
		}
	}
	next, err := freeStashName(ctx, z, ds, "app", 0, at)
	if err != nil {
		t.Fatal(err)
	}
	if want := stashName(ds, "app", 0, at.Add(2*time.Second)); next != want {
		t.Fatalf("two seconds taken: got %s, want %s", next, want)
	}
	if s := parseStash(next); s.Dataset != "app" || s.Epoch != 0 || !s.Created.Equal(at.Add(2*time.Second)) {
		t.Fatalf("parsed %+v", s)
	}
}
