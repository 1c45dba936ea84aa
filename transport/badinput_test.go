package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// rawPeer holds the pinned peer's certificate but speaks raw QUIC, to send
// what a broken or compromised peer would.
type rawPeer struct {
	qc   *quic.Conn
	ctrl *quic.Stream
}

func dialRaw(t *testing.T, p *pair) *rawPeer {
	t.Helper()
	qc, err := rawDial(t, p.b.Addr().String(), rawClientTLS(&p.alpha.cert, ALPN))
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	ctrl, err := qc.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatalf("opening control stream: %v", err)
	}
	return &rawPeer{qc: qc, ctrl: ctrl}
}

func (r *rawPeer) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.ctrl.Write(b); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

func helloFrame(t *testing.T) []byte {
	b, err := AppendFrame(nil, Hello{Node: "alpha", Version: ProtocolVersion, Role: RoleMaster, Epoch: 1, Instance: 5})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hello does the Hello exchange correctly, as alpha.
func (r *rawPeer) hello(t *testing.T) {
	t.Helper()
	r.write(t, helloFrame(t))
	f, err := ReadFrame(r.ctrl)
	if err != nil || f.Type != TypeHello {
		t.Fatalf("reading beta's hello: %v (type %v)", err, f.Type)
	}
}

// closedWith waits for the server to close qc and returns the code.
func closedWith(t *testing.T, qc *quic.Conn) CloseCode {
	t.Helper()
	select {
	case <-qc.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the bad peer's connection was not closed")
	}
	var ce *CloseError
	if err := mapErr(context.Cause(qc.Context())); !errors.As(err, &ce) || !ce.Remote {
		t.Fatalf("bad peer's connection ended with %v, want a close by the server", err)
	}
	return ce.Code
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	truncated := append(header(ProtocolVersion, TypeError, 100), `{"code":"x"`...)
	cases := []struct {
		name      string
		afterHelo bool // sent after a correct Hello, to an established Conn
		send      func(t *testing.T, r *rawPeer)
		want      CloseCode
	}{
		{"oversized length prefix", false, func(t *testing.T, r *rawPeer) {
			r.write(t, header(ProtocolVersion, TypeHello, 1<<31))
		}, CloseFrameTooLarge},
		{"garbage bytes", false, func(t *testing.T, r *rawPeer) {
			r.write(t, []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"))
		}, CloseUnsupportedVersion},
		{"unknown version", false, func(t *testing.T, r *rawPeer) {
			r.write(t, append(header(2, TypeHello, 2), "{}"...))
		}, CloseUnsupportedVersion},
		{"truncated frame", false, func(t *testing.T, r *rawPeer) {
			r.write(t, truncated)
			r.ctrl.Close()
		}, CloseMalformedFrame},
		{"hello from another node", false, func(t *testing.T, r *rawPeer) {
			b, _ := AppendFrame(nil, Hello{Node: "gamma", Version: ProtocolVersion, Role: RoleMaster})
			r.write(t, b)
		}, CloseWrongPeer},
		{"hello with another version", false, func(t *testing.T, r *rawPeer) {
			r.write(t, frameBytes(TypeHello, `{"node":"alpha","version":9,"role":"master"}`))
		}, CloseUnsupportedVersion},
		{"message before hello", false, func(t *testing.T, r *rawPeer) {
			b, _ := AppendFrame(nil, Error{Code: "early"})
			r.write(t, b)
		}, CloseUnexpectedMessage},
		{"silence instead of hello", false, func(t *testing.T, r *rawPeer) {}, CloseHelloTimeout},

		{"oversized length prefix", true, func(t *testing.T, r *rawPeer) {
			r.write(t, header(ProtocolVersion, TypeSnapshotList, 1<<32-1))
		}, CloseFrameTooLarge},
		{"garbage bytes", true, func(t *testing.T, r *rawPeer) {
			r.write(t, []byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3})
		}, CloseUnsupportedVersion},
		{"unknown version", true, func(t *testing.T, r *rawPeer) {
			r.write(t, append(header(0, TypeError, 2), "{}"...))
		}, CloseUnsupportedVersion},
		{"truncated frame", true, func(t *testing.T, r *rawPeer) {
			r.write(t, truncated)
			r.ctrl.Close()
		}, CloseMalformedFrame},
		{"invalid message", true, func(t *testing.T, r *rawPeer) {
			r.write(t, frameBytes(TypeSnapshotList, `{"dataset":"app","snapshots":[{"name":"-x","guid":1,"createtxg":1,"creation":1}]}`))
		}, CloseInvalidMessage},
		{"second hello", true, func(t *testing.T, r *rawPeer) {
			r.write(t, helloFrame(t))
		}, CloseUnexpectedMessage},
		{"garbage transfer header", true, func(t *testing.T, r *rawPeer) {
			s, err := r.qc.OpenUniStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("zfs send stream without a header"))
		}, CloseUnsupportedVersion},
		{"oversized transfer header", true, func(t *testing.T, r *rawPeer) {
			s, err := r.qc.OpenUniStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write(header(ProtocolVersion, TypeTransferBegin, MaxFrameBody+1))
		}, CloseFrameTooLarge},
	}
	for _, tc := range cases {
		name := "before hello/" + tc.name
		if tc.afterHelo {
			name = "after hello/" + tc.name
		}
		t.Run(name, func(t *testing.T) {
			p := newPair(t, func(a, b *Config) { b.HelloTimeout = time.Second })
			// A good connection exists before the bad peer comes.
			good, goodB := connect(t, p.a, p.b)

			accepted := make(chan *Conn, 2)
			ctx := ctxTimeout(t, 20*time.Second)
			go func() {
				for {
					c, err := p.b.Accept(ctx)
					if err != nil {
						return
					}
					accepted <- c
				}
			}()

			r := dialRaw(t, p)
			var bad *Conn
			if tc.afterHelo {
				r.hello(t)
				select {
				case bad = <-accepted:
				case <-time.After(10 * time.Second):
					t.Fatal("beta did not accept the raw peer's hello")
				}
				defer bad.Close()
			}
			tc.send(t, r)
			if got := closedWith(t, r.qc); got != tc.want {
				t.Fatalf("closed with %v, want %v", got, tc.want)
			}
			if bad != nil {
				<-bad.Done()
				var ce *CloseError
				if err := bad.Err(); !errors.As(err, &ce) || ce.Remote || ce.Code != tc.want {
					t.Fatalf("beta's side ended with %v, want a local close with %v", err, tc.want)
				}
			}
			select {
			case c := <-accepted:
				t.Fatalf("beta accepted the bad peer as %s", c.Peer().Node)
			default:
			}

			// Only that connection: the good one still works both ways, and
			// a new one is accepted.
			roundTrip(t, good, goodB, "still_up")
			roundTrip(t, goodB, good, "still_up")
			ab, err := p.a.Dial(ctx, p.b.Addr().String())
			if err != nil {
				t.Fatalf("dial after bad input: %v", err)
			}
			defer ab.Close()
			ba := <-accepted
			defer ba.Close()
			roundTrip(t, ab, ba, "new_conn")
		})
	}
}

// A frame type this node does not know is skipped and counted: a newer peer
// may send advisory messages (see the compatibility rule in frame.go).
func TestUnknownMessageTypeSkipped(t *testing.T) {
	p := newPair(t, nil)
	ab, ba := connect(t, p.a, p.b)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := ab.writeControl(ctx, frameBytes(99, `{"future":true}`)); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ab, ba, "after_unknown")
	if got := ba.Stats().UnknownMessages; got != 1 {
		t.Fatalf("unknown messages counted: %d", got)
	}
}
