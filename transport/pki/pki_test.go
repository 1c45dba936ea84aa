package pki

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func writeCreds(t *testing.T, name string) (certPath, keyPath string, c *Credentials) {
	t.Helper()
	dir := t.TempDir()
	c, err := Generate(name, now)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	if err := c.Write(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, c
}

func TestGenerateWritesUsableCredentials(t *testing.T) {
	certPath, keyPath, c := writeCreds(t, "alpha")
	for path, mode := range map[string]fs.FileMode{certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), mode)
		}
	}
	pair, fp, err := LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fp != c.Fingerprint || fp != Fingerprint(pair.Certificate[0]) {
		t.Fatalf("fingerprint %s, generated %s", fp, c.Fingerprint)
	}
	if _, err := ParseFingerprint(fp); err != nil {
		t.Fatalf("own fingerprint does not parse: %v", err)
	}
	if got, err := ReadCertFingerprint(certPath); err != nil || got != fp {
		t.Fatalf("ReadCertFingerprint = %s, %v; want %s", got, err, fp)
	}
	if _, err := ReadCertFingerprint(keyPath); !errors.Is(err, ErrCertFile) {
		t.Fatalf("ReadCertFingerprint(key file) = %v", err)
	}
	cert := pair.Leaf
	if cert.Subject.CommonName != "alpha" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		t.Errorf("public key is %T, want ed25519", cert.PublicKey)
	}
	if cert.IsCA {
		t.Error("node certificate is a CA")
	}
	if !cert.NotBefore.Before(now) || cert.NotAfter.Year() != 9999 {
		t.Errorf("validity %v .. %v", cert.NotBefore, cert.NotAfter)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	// The certificate, taken as its own root, verifies for both directions of
	// mutual TLS.
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for usage %v: %v", usage, err)
		}
	}
	block, _ := pem.Decode(c.KeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM is not PKCS#8: %q", c.KeyPEM)
	}
}

// TestOpenSSLAgrees checks the files and the fingerprint with an independent
// implementation.
func TestOpenSSLAgrees(t *testing.T) {
	_, err := exec.LookPath("openssl")
	testutil.RequireNoError(t, "openssl command", err)
	certPath, keyPath, c := writeCreds(t, "beta")
	out, err := exec.Command("openssl", "x509", "-in", certPath, "-noout", "-fingerprint", "-sha256", "-subject").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	// openssl prints "sha256 Fingerprint=AB:CD:..." and "subject=CN = beta".
	var hexParts, subject string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if _, v, ok := strings.Cut(line, "Fingerprint="); ok {
			hexParts = v
		}
		if v, ok := strings.CutPrefix(line, "subject="); ok {
			subject = v
		}
	}
	want := FingerprintPrefix + strings.ToLower(strings.ReplaceAll(hexParts, ":", ""))
	if want != c.Fingerprint {
		t.Errorf("openssl fingerprint %s, ours %s", want, c.Fingerprint)
	}
	if strings.ReplaceAll(subject, " ", "") != "CN=beta" {
		t.Errorf("openssl subject %q", subject)
	}
	keyPub, err := exec.Command("openssl", "pkey", "-in", keyPath, "-pubout").Output()
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	certPub, err := exec.Command("openssl", "x509", "-in", certPath, "-noout", "-pubkey").Output()
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v", err)
	}
	if !bytes.Equal(keyPub, certPub) {
		t.Errorf("openssl: key's public half\n%s\ndiffers from the certificate's\n%s", keyPub, certPub)
	}
}

// TestMutualTLSWithPinnedPeers runs a real TLS 1.3 handshake in memory: each
// side presents its loaded pair and accepts only the other's fingerprint.
func TestMutualTLSWithPinnedPeers(t *testing.T) {
	aCert, aKey, a := writeCreds(t, "alpha")
	bCert, bKey, b := writeCreds(t, "beta")
	aPair, _, err := LoadKeyPair(aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	bPair, _, err := LoadKeyPair(bCert, bKey)
	if err != nil {
		t.Fatal(err)
	}
	pin := func(want string) func([][]byte, [][]*x509.Certificate) error {
		return func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || Fingerprint(raw[0]) != want {
				return fmt.Errorf("peer is not %s", want)
			}
			return nil
		}
	}
	server := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{aPair},
		ClientAuth: tls.RequireAnyClientCert, VerifyPeerCertificate: pin(b.Fingerprint),
	}
	client := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{bPair},
		InsecureSkipVerify: true, VerifyPeerCertificate: pin(a.Fingerprint),
	}
	if err := handshake(t, server, client); err != nil {
		t.Fatalf("pinned handshake failed: %v", err)
	}
	// The same client pinned to the wrong server fingerprint is refused.
	client.VerifyPeerCertificate = pin(b.Fingerprint)
	if err := handshake(t, server, client); err == nil || !strings.Contains(err.Error(), "peer is not") {
		t.Fatalf("handshake with a wrong pin: %v", err)
	}
}

// handshake connects over loopback TCP: unlike net.Pipe, the kernel's
// buffers let a side that gives up send its alert without waiting for the
// other to read.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		s := tls.Server(sc, server)
		errc <- s.HandshakeContext(ctx)
		s.Close()
	}()
	var d net.Dialer
	cc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(cc, client)
	cerr := c.HandshakeContext(ctx)
	c.Close()
	serr := <-errc
	if cerr != nil {
		return cerr
	}
	return serr
}

func TestLoadKeyPairRefusesOpenKeyModes(t *testing.T) {
	certPath, keyPath, _ := writeCreds(t, "alpha")
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o620, 0o601} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadKeyPair(certPath, keyPath)
		want := fmt.Sprintf("key file %s: mode %04o lets group or others access the key; want 0600 (chmod 600 %s)", keyPath, mode, keyPath)
		if err == nil || err.Error() != want || !errors.Is(err, ErrKeyFile) {
			t.Errorf("mode %04o: %v\nwant %s", mode, err, want)
		}
	}
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadKeyPair(certPath, keyPath); err != nil {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
}

func TestLoadKeyPairErrorsNameTheFile(t *testing.T) {
	certPath, keyPath, _ := writeCreds(t, "alpha")
	otherCert, otherKey, _ := writeCreds(t, "beta")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		cert, key string
		is        error
		want      string
	}{
		{certPath, otherKey, ErrKeyFile, "key file " + otherKey + ": does not match certificate " + certPath},
		{otherCert, keyPath, ErrKeyFile, "key file " + keyPath + ": does not match certificate " + otherCert},
		{missing, keyPath, ErrCertFile, "certificate file " + missing + ": no such file or directory"},
		{certPath, missing, ErrKeyFile, "key file " + missing + ": no such file or directory"},
		{garbage, keyPath, ErrCertFile, "certificate file " + garbage + ": no PEM CERTIFICATE block"},
		{certPath, garbage, ErrKeyFile, "key file " + garbage + ": no PEM PRIVATE KEY (PKCS#8) block"},
		{keyPath, keyPath, ErrCertFile, "certificate file " + keyPath + ": no PEM CERTIFICATE block"},
		{certPath, certPath, ErrKeyFile, "key file " + certPath + ": mode 0644 lets group or others access the key; want 0600 (chmod 600 " + certPath + ")"},
	}
	for _, c := range cases {
		_, _, err := LoadKeyPair(c.cert, c.key)
		if err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
			t.Errorf("LoadKeyPair(%s, %s) = %v\nwant %s", c.cert, c.key, err, c.want)
		}
	}
	if _, _, err := LoadKeyPair(certPath, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: %v does not match fs.ErrNotExist", err)
	}
}

func TestParseFingerprint(t *testing.T) {
	good := FingerprintPrefix + strings.Repeat("0123456789abcdef", 4)
	if sum, err := ParseFingerprint(good); err != nil || sum[0] != 0x01 || sum[31] != 0xef {
		t.Fatalf("ParseFingerprint(%s) = %x, %v", good, sum, err)
	}
	cases := map[string]string{
		"":                              `invalid fingerprint "": must start with "sha256:"`,
		good[len("sha256:"):]:           `invalid fingerprint "` + good[7:] + `": must start with "sha256:"`,
		"SHA256:" + good[7:]:            `invalid fingerprint "SHA256:` + good[7:] + `": must start with "sha256:"`,
		good[:70]:                       `invalid fingerprint "` + good[:70] + `": want 64 hex digits after "sha256:", got 63`,
		good + "0":                      `invalid fingerprint "` + good + `0": want 64 hex digits after "sha256:", got 65`,
		strings.ToUpper(good[:7]) + "x": `invalid fingerprint "SHA256:x": must start with "sha256:"`,
		good[:69] + "A0":                `invalid fingerprint "` + good[:69] + `A0": 'A' is not a lowercase hex digit`,
		good[:69] + "g0":                `invalid fingerprint "` + good[:69] + `g0": 'g' is not a lowercase hex digit`,
		good[:69] + ":0":                `invalid fingerprint "` + good[:69] + `:0": ':' is not a lowercase hex digit`,
	}
	for in, want := range cases {
		if _, err := ParseFingerprint(in); err == nil || err.Error() != want {
			t.Errorf("ParseFingerprint(%q) = %v\nwant %s", in, err, want)
		}
	}
}
