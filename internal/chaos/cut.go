// Package chaos holds the network faults, the writer and the accounting
// that the fault suite (test/faults) and the soak (test/soak) share: cuts
// between the pair's hosts (a pulled cable, nftables drops both ways or one
// way), a writer that makes acknowledged writes on whichever host serves,
// and the checks after a heal (exactly one master, every acknowledged write
// in the winner or in a stash).
package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/flockerha/flocker/internal/rig"
)

// Cut is a network fault between a host and its peer.
type Cut int

// The cuts. The nftables ones are set in the host's own namespace and match
// the peer's addresses, so both hosts keep reaching the witness (on the
// bridge) and client C: only the pair loses each other.
const (
	// CableOut pulls the host's cable: it reaches nobody, witness included.
	CableOut Cut = iota
	// DropBoth drops every packet between the host and its peer.
	DropBoth
	// DropOut drops what the host sends to its peer; the host still hears
	// the peer.
	DropOut
	// DropIn drops what the peer sends to the host; the peer still hears
	// the host.
	DropIn
)

// Cuts lists every cut.
var Cuts = []Cut{CableOut, DropBoth, DropOut, DropIn}

func (c Cut) String() string {
	switch c {
	case CableOut:
		return "cable-out"
	case DropBoth:
		return "drop-both"
	case DropOut:
		return "drop-out"
	case DropIn:
		return "drop-in"
	}
	return fmt.Sprintf("cut(%d)", int(c))
}

// table is the nftables table the cuts use in a host's namespace (the
// namespace is the rig's own, so the name cannot clash).
const table = "flocker_fault"

// Ruleset is the nftables script for c on a host whose peer has the given
// addresses ("" for CableOut, which is not an nftables cut).
func (c Cut) Ruleset(peer ...netip.Addr) string {
	var in, out bool
	switch c {
	case DropBoth:
		in, out = true, true
	case DropOut:
		out = true
	case DropIn:
		in = true
	default:
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	chain := func(name, hook, dir string) {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n", name, hook)
		for _, a := range peer {
			family := "ip"
			if a.Is6() {
				family = "ip6"
			}
			fmt.Fprintf(&b, "\t\t%s %s %s drop\n", family, dir, a)
		}
		b.WriteString("\t}\n")
	}
	if in {
		chain("from_peer", "input", "saddr")
	}
	if out {
		chain("to_peer", "output", "daddr")
	}
	b.WriteString("}\n")
	return b.String()
}

// Apply makes cut c on host h against peer and returns the function that
// heals it.
func Apply(ctx context.Context, c Cut, h, peer *rig.Host) (heal func() error, err error) {
	if c == CableOut {
		if err := h.LinkDown(); err != nil {
			return nil, err
		}
		return h.LinkUp, nil
	}
	rules := c.Ruleset(peer.IPv4.Addr(), peer.IPv6.Addr())
	if rules == "" {
		return nil, fmt.Errorf("unknown cut %v", c)
	}
	if err := nft(ctx, h, rules, "-f", "-"); err != nil {
		return nil, fmt.Errorf("%v on %v: %w", c, h, err)
	}
	return func() error {
		if err := nft(context.WithoutCancel(ctx), h, "", "delete", "table", "inet", table); err != nil {
			return fmt.Errorf("healing %v on %v: %w", c, h, err)
		}
		return nil
	}, nil
}

// nft runs nft in h's namespace with stdin.
func nft(ctx context.Context, h *rig.Host, stdin string, args ...string) error {
	cmd := h.Command(ctx, "nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
