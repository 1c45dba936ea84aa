package config

import (
	"fmt"
	"net/netip"
)

// Validate checks what no single value shows: required keys and the rules
// between keys. It returns Problems, or nil.
func (c *Config) Validate() error {
	return c.validate().errOrNil()
}

type checker struct {
	c     *Config
	probs Problems
}

func (k *checker) add(section, key, format string, args ...any) {
	k.probs = append(k.probs, Problem{File: k.c.File(), Line: k.c.Line(section, key),
		Section: section, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// bad reports a key whose value was already refused: checks that depend on
// it would only repeat that problem in other words.
func (k *checker) bad(section, key string) bool {
	return k.c.src != nil && k.c.src.bad[section][key]
}

func (k *checker) missing(value bool, section, key, what string) {
	if !value && !k.bad(section, key) {
		k.add(section, key, "missing: %s", what)
	}
}

func (c *Config) validate() Problems {
	k := &checker{c: c}
	k.missing(c.Node.Name != "", "node", "name", "this node's name, e.g. alpha")
	k.missing(c.Peer.Name != "", "peer", "name", "the other node's name, e.g. beta")
	if c.Node.Name != "" && c.Node.Name == c.Peer.Name {
		k.add("peer", "name", "%q is also [node] name: the peer is the other host", c.Peer.Name)
	}
	k.missing(c.Peer.Address.IsValid(), "peer", "address", "the other node's IP:PORT, e.g. 192.0.2.12:7946")
	file := c.File()
	if file == "" {
		file = "PATH"
	}
	k.missing(c.Peer.Fingerprint != "", "peer", "fingerprint",
		fmt.Sprintf("pin the peer's certificate: run 'flocker trust --config %s FINGERPRINT' with the fingerprint 'flocker init' printed on the peer", file))

	if c.TLS.Cert == "" {
		k.add("tls", "cert", "empty: name the certificate file (default %s beside the config)", DefaultCert)
	}
	if c.TLS.Key == "" {
		k.add("tls", "key", "empty: name the key file (default %s beside the config)", DefaultKey)
	}
	if c.TLS.Cert != "" && c.TLS.Cert == c.TLS.Key {
		k.add("tls", "key", "%s is also [tls] cert: the key and the certificate are separate files", c.TLS.Key)
	}

	if len(c.Datasets) == 0 {
		k.add("", "", `no [dataset "NAME"] section: there is nothing to protect`)
	}
	zfsOwner := map[string]string{}
	vipOwner := map[netip.Addr]string{}
	for _, d := range c.Datasets {
		sec := DatasetSection(d.Name)
		k.missing(d.ZFS != "", sec, "zfs", "this host's ZFS dataset, e.g. tank/app")
		if d.VIP.IsValid() && d.Interface == "" && !k.bad(sec, "interface") {
			k.add(sec, "vip", "needs interface: the network interface that carries the address")
		}
		if d.Interface != "" && !d.VIP.IsValid() && !k.bad(sec, "vip") {
			k.add(sec, "interface", "set without vip: it names where the floating address goes")
		}
		if d.ProbePort != 0 && !d.VIP.IsValid() && !k.bad(sec, "vip") {
			k.add(sec, "probe", "set without vip: the service is probed on the floating address")
		}
		if d.ZFS != "" {
			if other, dup := zfsOwner[d.ZFS]; dup {
				k.add(sec, "zfs", "%s is also the dataset of [%s]", d.ZFS, other)
			} else {
				zfsOwner[d.ZFS] = sec
			}
		}
		if d.VIP.IsValid() {
			if other, dup := vipOwner[d.VIP.Addr()]; dup {
				k.add(sec, "vip", "%s is also the floating address of [%s]", d.VIP.Addr(), other)
			} else {
				vipOwner[d.VIP.Addr()] = sec
			}
		}
	}

	hb, to := c.Failover.Heartbeat, c.Failover.Timeout
	// The file's values are positive by the time they get here; this catches
	// a Config built in code.
	if hb <= 0 && !k.bad("failover", "heartbeat") {
		k.add("failover", "heartbeat", "must be positive, not %v", hb)
	}
	if to <= 0 && !k.bad("failover", "timeout") {
		k.add("failover", "timeout", "must be positive, not %v", to)
	}
	if !k.bad("failover", "heartbeat") && !k.bad("failover", "timeout") && hb > 0 &&
		to < MinTimeoutHeartbeats*hb {
		key := "timeout"
		if !c.written("failover", "timeout") {
			key = "heartbeat" // timeout is the default: blame the line that was written
		}
		k.add("failover", key, "timeout %v is less than %d x heartbeat (%v): a single lost heartbeat and some jitter would fail over from a live peer",
			to, MinTimeoutHeartbeats, hb)
	}
	if n := c.Failover.CheckFailures; n < 0 {
		k.add("failover", "check_failures", "must be at least 1, not %d", n)
	}
	if d := c.Failover.Divergence; d != "" && !k.bad("failover", "divergence") {
		if _, err := parseDivergence(d); err != nil {
			k.add("failover", "divergence", "%v", err)
		}
	}
	if w := c.Failover.Witness; w.IsValid() && c.Peer.Address.IsValid() && w == c.Peer.Address.Addr() {
		k.add("failover", "witness", "%s is the peer's address: a witness must be a third host", w)
	}
	return k.probs
}
