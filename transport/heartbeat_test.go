package transport

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

func receiveHeartbeat(t *testing.T, c *Conn, seq uint64) Heartbeat {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	for {
		hb, err := c.ReceiveHeartbeat(ctx)
		if err != nil {
			t.Fatalf("waiting for heartbeat %d: %v", seq, err)
		}
		if hb.Seq == seq {
			return hb
		}
		// Datagrams may be lost or reordered; earlier ones are skipped.
	}
}

func TestHeartbeatDatagrams(t *testing.T) {
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 10*time.Second)
	want := Heartbeat{Seq: 1, Role: RoleMaster, Epoch: 7, Datasets: []DatasetHeartbeat{{Dataset: "app", NewestGUID: 99, Healthy: true}},
		SentNS: 123456789, EchoNS: 98765, HeldNS: 4321}
	if err := ab.SendHeartbeat(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := receiveHeartbeat(t, ba, 1)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if st := ba.Stats(); st.DatagramsReceived != 1 {
		t.Fatalf("stats %+v: the heartbeat did not come as a datagram", st)
	}

	// Garbage datagrams from the (pinned, but broken) peer: dropped and
	// counted, nothing closed, heartbeats keep flowing.
	valid, _ := AppendFrame(nil, Heartbeat{Seq: 2, Role: RoleMaster})
	emptyName := base64.RawStdEncoding.EncodeToString(packDatasets([]DatasetHeartbeat{{}}))
	garbage := [][]byte{
		{},
		{0xff, 0xff},
		[]byte("not a frame at all"),
		header(ProtocolVersion, TypeHeartbeat, 1<<31),                               // oversized length
		append(header(ProtocolVersion, TypeHeartbeat, 10), "{}"...),                 // length mismatch
		frameBytes(TypeHeartbeat, `{"seq":3}`),                                      // invalid: no role
		frameBytes(TypeHeartbeat, `{"seq":"three","role":"master"}`),                // bad JSON type
		frameBytes(TypeError, `{"code":"x"}`),                                       // valid frame, wrong carriage
		frameBytes(77, `{}`),                                                        // unknown type
		append(append([]byte{}, valid...), 0),                                       // trailing byte
		append([]byte{2}, valid[1:]...),                                             // other version
		frameBytes(TypeHeartbeat, `{"seq":4,"role":"master","ds":"`+emptyName+`"}`), // invalid dataset
		frameBytes(TypeHeartbeat, `{"seq":4,"role":"master","held_ns":-1}`),         // negative timing
	}
	for _, g := range garbage {
		if err := ab.qc.SendDatagram(g); err != nil {
			t.Fatalf("sending garbage %q: %v", g, err)
		}
	}
	if err := ab.SendHeartbeat(ctx, Heartbeat{Seq: 5, Role: RoleMaster}); err != nil {
		t.Fatal(err)
	}
	receiveHeartbeat(t, ba, 5)
	// Datagrams are unordered: give stragglers a moment, then count.
	deadline := time.Now().Add(5 * time.Second)
	for ba.Stats().DatagramsDropped < uint64(len(garbage)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := ba.Stats(); st.DatagramsDropped != uint64(len(garbage)) {
		t.Fatalf("stats %+v: want %d dropped", st, len(garbage))
	}
	if ba.Err() != nil || ab.Err() != nil {
		t.Fatalf("garbage datagrams closed the connection: %v / %v", ba.Err(), ab.Err())
	}
	roundTrip(t, ab, ba, "alive")
}

func TestHeartbeatFallsBackToControlStream(t *testing.T) {
	t.Run("datagrams not negotiated", func(t *testing.T) {
		p := newPair(t, func(a, b *Config) { b.DisableDatagrams = true })
		ab, ba := connect(t, p.a, p.b)
		if ab.DatagramsEnabled() || ba.DatagramsEnabled() {
			t.Fatal("datagrams negotiated although beta disabled them")
		}
		ctx := ctxTimeout(t, 10*time.Second)
		for seq := uint64(1); seq <= 3; seq++ {
			if err := ab.SendHeartbeat(ctx, Heartbeat{Seq: seq, Role: RoleMaster}); err != nil {
				t.Fatal(err)
			}
			if err := ba.SendHeartbeat(ctx, Heartbeat{Seq: seq, Role: RoleSlave}); err != nil {
				t.Fatal(err)
			}
		}
		// The control stream is ordered and reliable: every one arrives.
		for seq := uint64(1); seq <= 3; seq++ {
			if hb, err := ba.ReceiveHeartbeat(ctx); err != nil || hb.Seq != seq {
				t.Fatalf("beta: %+v, %v; want seq %d", hb, err, seq)
			}
			if hb, err := ab.ReceiveHeartbeat(ctx); err != nil || hb.Seq != seq || hb.Role != RoleSlave {
				t.Fatalf("alpha: %+v, %v; want seq %d", hb, err, seq)
			}
		}
		if ba.Stats().DatagramsReceived != 0 {
			t.Fatal("counted datagrams on a connection without them")
		}
		// Heartbeats do not get in the way of other control messages.
		roundTrip(t, ab, ba, "after_heartbeats")
	})

	t.Run("fifty datasets fit a datagram", func(t *testing.T) {
		// The bench's scale scenario: 50 datasets named s01..s50 on one
		// pair. In plain JSON their heartbeat was 3.3 kB and went over the
		// control stream; packed, it must still be one datagram.
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		hb := Heartbeat{Seq: 1, Role: RoleMaster, Epoch: 1 << 40, SentNS: 1<<63 - 1, EchoNS: 1<<63 - 1, HeldNS: 1<<63 - 1}
		for i := range 50 {
			hb.Datasets = append(hb.Datasets, DatasetHeartbeat{Dataset: fmt.Sprintf("s%02d", i+1), NewestGUID: 1<<64 - 1 - uint64(i), Healthy: i%3 != 0})
		}
		if err := ab.SendHeartbeat(ctxTimeout(t, 10*time.Second), hb); err != nil {
			t.Fatal(err)
		}
		got := receiveHeartbeat(t, ba, 1)
		if fmt.Sprint(got) != fmt.Sprint(hb) {
			t.Fatalf("got %+v, want %+v", got, hb)
		}
		if st := ba.Stats(); st.DatagramsReceived != 1 {
			t.Fatalf("stats %+v: the heartbeat of 50 datasets did not come as a datagram", st)
		}
	})

	t.Run("heartbeat too large for a datagram", func(t *testing.T) {
		p := newPair(t, nil)
		ab, ba := connect(t, p.a, p.b)
		hb := Heartbeat{Seq: 1, Role: RoleMaster}
		for i := range 100 {
			hb.Datasets = append(hb.Datasets, DatasetHeartbeat{Dataset: fmt.Sprintf("dataset-%03d", i), NewestGUID: 1 << 60, Healthy: true})
		}
		if err := ab.SendHeartbeat(ctxTimeout(t, 10*time.Second), hb); err != nil {
			t.Fatal(err)
		}
		if got := receiveHeartbeat(t, ba, 1); len(got.Datasets) != 100 {
			t.Fatalf("got %d datasets", len(got.Datasets))
		}
		if ba.Stats().DatagramsReceived != 0 {
			t.Fatal("a heartbeat this large cannot have come as a datagram")
		}
	})
}

// A consumer that falls behind loses the oldest heartbeats, never the newest.
func TestHeartbeatQueueDropsOldest(t *testing.T) {
	p := newPair(t, func(a, b *Config) { a.DisableDatagrams = true }) // reliable: every one arrives
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 10*time.Second)
	const n = heartbeatQueue + 10
	for seq := uint64(1); seq <= n; seq++ {
		if err := ab.SendHeartbeat(ctx, Heartbeat{Seq: seq, Role: RoleMaster}); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(t, ab, ba, "sync") // every heartbeat before it was routed
	if got := ba.Stats().HeartbeatsDropped; got != n-heartbeatQueue {
		t.Fatalf("dropped %d, want %d", got, n-heartbeatQueue)
	}
	hb, err := ba.ReceiveHeartbeat(ctx)
	if err != nil || hb.Seq != n-heartbeatQueue+1 {
		t.Fatalf("oldest kept: %+v, %v; want seq %d", hb, err, n-heartbeatQueue+1)
	}
}
