package agent

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

// holdRecorder records the hold and bookmark calls of a master; every
// other ZFS call would panic on the nil interface.
type holdRecorder struct {
	masterZFS
	calls []string
}

func (r *holdRecorder) Hold(_ context.Context, tag string, snaps ...string) error {
	r.calls = append(r.calls, "hold "+tag+" "+strings.Join(snaps, ","))
	return nil
}

func (r *holdRecorder) Release(_ context.Context, tag string, snaps ...string) error {
	r.calls = append(r.calls, "release "+tag+" "+strings.Join(snaps, ","))
	return nil
}

func (r *holdRecorder) CreateBookmark(_ context.Context, source, mark string) error {
	r.calls = append(r.calls, "bookmark "+source+" "+mark)
	return nil
}

func (r *holdRecorder) ListBookmarks(context.Context, string) ([]snapshot.Bookmark, error) {
	return nil, nil
}

// TestHoldMovesWhenThePeerLeaves: the hold trails acks by holdQuiet, and
// a peer that leaves within it (a slave stopped right after a receive)
// must not leave the hold and the bookmark on an older base: they move
// to the newest snapshot the peer held as the connection goes down. A
// peer whose list never came moves nothing.
func TestHoldMovesWhenThePeerLeaves(t *testing.T) {
	local := []snapshot.Snapshot{
		{Name: "p/d@flocker-0-1", GUID: 11, CreateTXG: 10},
		{Name: "p/d@flocker-0-2", GUID: 12, CreateTXG: 20},
		{Name: "p/d@flocker-0-3", GUID: 13, CreateTXG: 30},
	}
	peer := []snapshot.Snapshot{{Name: "q/d@flocker-0-1", GUID: 11, CreateTXG: 100}, {Name: "q/d@flocker-0-2", GUID: 12, CreateTXG: 101}}
	for _, tt := range []struct {
		name      string
		peerKnown bool
		want      []string
		held      []string
	}{
		{"peer known", true, []string{
			"hold flocker-base p/d@flocker-0-2",
			"release flocker-base p/d@flocker-0-1",
			"bookmark p/d@flocker-0-2 p/d#flocker-0-2",
		}, []string{"p/d@flocker-0-2"}},
		{"no list from the peer yet", false, nil, []string{"p/d@flocker-0-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			z := &holdRecorder{}
			m := &master{log: slog.New(slog.DiscardHandler), z: z, local: local, peer: peer, peerKnown: tt.peerKnown,
				held: []string{"p/d@flocker-0-1"}, covers: map[uint64]time.Time{},
				cfg: datasetConfig{zfs: "p/d", observer: nopObserver{}, features: snapshot.Features{Holds: true, Bookmarks: true}}}
			now := time.Now()
			m.busyAt = now // an ack a moment ago: holdQuiet has not passed
			m.handle(context.Background(), evConnDown{}, now)
			if !slices.Equal(z.calls, tt.want) {
				t.Errorf("zfs calls %q, want %q", z.calls, tt.want)
			}
			if !slices.Equal(m.held, tt.held) || m.peerKnown {
				t.Errorf("held %v, peer known %v; want %v, false", m.held, m.peerKnown, tt.held)
			}
		})
	}
}
