// Package pki makes and loads a node's credentials: an ed25519 key and a
// self-signed certificate. There is no CA: each node pins its peer's
// certificate by fingerprint (sha256 over the DER), which `flocker init`
// prints and `flocker trust` records.
package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/atomicfile"
)

// File modes: the key is the node's identity, the certificate is public.
const (
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
)

// FingerprintPrefix starts every fingerprint; it names the hash so that
// another one could be introduced without ambiguity.
const FingerprintPrefix = "sha256:"

// Errors from LoadKeyPair name the file at fault through these, so a caller
// (flocker check) can tell which config key to blame.
var (
	ErrCertFile = errors.New("certificate file")
	ErrKeyFile  = errors.New("key file")
)

// notAfter is RFC 5280's "no well-defined expiration date" (section
// 4.1.2.5): a pinned certificate is replaced by re-pinning, not by expiry,
// and an HA pair must not fail over because a date passed.
var notAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Credentials are a freshly generated key and certificate.
type Credentials struct {
	CertPEM     []byte
	KeyPEM      []byte // PKCS#8
	Fingerprint string
}

// Generate makes an ed25519 key and a self-signed certificate for the node
// called name, usable for both TLS server and client authentication.
func Generate(name string, now time.Time) (*Credentials, error) {
	if name == "" {
		return nil, errors.New("generating credentials: empty node name")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		// An hour back absorbs clock skew between the two hosts.
		NotBefore:             now.Add(-time.Hour).UTC(),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return &Credentials{
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Fingerprint: Fingerprint(der),
	}, nil
}

// Stage writes the key (mode 0600) and the certificate (0644) beside their
// destinations; nothing is in place until the caller commits both. On error
// nothing is left behind.
func (c *Credentials) Stage(certPath, keyPath string) ([]*atomicfile.Pending, error) {
	key, err := atomicfile.Stage(keyPath, c.KeyPEM, KeyMode)
	if err != nil {
		return nil, err
	}
	cert, err := atomicfile.Stage(certPath, c.CertPEM, CertMode)
	if err != nil {
		key.Discard()
		return nil, err
	}
	return []*atomicfile.Pending{key, cert}, nil
}

// Write puts the key and the certificate in place.
func (c *Credentials) Write(certPath, keyPath string) error {
	staged, err := c.Stage(certPath, keyPath)
	if err != nil {
		return err
	}
	for _, p := range staged {
		if err := p.Commit(); err != nil {
			for _, q := range staged {
				q.Discard()
			}
			return err
		}
	}
	return nil
}

// Fingerprint identifies a certificate: "sha256:" and the lowercase hex of
// the SHA-256 of its DER encoding.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return FingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint checks the form Fingerprint produces and returns the
// digest.
func ParseFingerprint(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(s, FingerprintPrefix)
	if !ok {
		return sum, fmt.Errorf("invalid fingerprint %q: must start with %q", s, FingerprintPrefix)
	}
	if len(hexPart) != 2*sha256.Size {
		return sum, fmt.Errorf("invalid fingerprint %q: want %d hex digits after %q, got %d",
			s, 2*sha256.Size, FingerprintPrefix, len(hexPart))
	}
	for _, r := range hexPart {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return sum, fmt.Errorf("invalid fingerprint %q: %q is not a lowercase hex digit", s, r)
		}
	}
	if _, err := hex.Decode(sum[:], []byte(hexPart)); err != nil {
		return sum, fmt.Errorf("invalid fingerprint %q: %w", s, err)
	}
	return sum, nil
}

// LoadKeyPair reads a node's certificate and key, refuses a key file that
// group or others may access and a key that does not belong to the
// certificate, and returns the pair with the certificate's fingerprint.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, string, error) {
	cert, err := readCert(certPath)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, "", fmt.Errorf("%w %s: does not match certificate %s", ErrKeyFile, keyPath, certPath)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, Fingerprint(cert.Raw), nil
}

// ReadCertFingerprint returns the fingerprint of the certificate in the PEM
// file at path.
func ReadCertFingerprint(path string) (string, error) {
	cert, err := readCert(path)
	if err != nil {
		return "", err
	}
	return Fingerprint(cert.Raw), nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCertFile, path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w %s: no PEM CERTIFICATE block", ErrCertFile, path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCertFile, path, err)
	}
	return cert, nil
}

func readKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, pathErr(err))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %04o lets group or others access the key; want %04o (chmod %o %s)",
			ErrKeyFile, path, perm, KeyMode, KeyMode, path)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w %s: no PEM PRIVATE KEY (PKCS#8) block", ErrKeyFile, path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w %s: %T cannot sign", ErrKeyFile, path, key)
	}
	return signer, nil
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	return data, pathErr(err)
}

// pathErr drops the operation and path from an *fs.PathError: the caller
// names the file already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
