package vmtest

import (
	"testing"
	"time"

	"github.com/flockerha/flocker/transport/pki"
)

// PairCredentials makes guests a's and b's certificates and keys, as the
// files the guests read (NAME.crt, NAME.key), and their fingerprints.
func PairCredentials(t testing.TB) (files map[string][]byte, prints map[string]string) {
	t.Helper()
	files = map[string][]byte{}
	prints = map[string]string{}
	for _, name := range []string{"a", "b"} {
		cr, err := pki.Generate(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		files[name+".crt"], files[name+".key"], prints[name] = cr.CertPEM, cr.KeyPEM, cr.Fingerprint
	}
	return files, prints
}
