package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// MinTokenLen is the shortest token accepted: 128 bits of base64.
const MinTokenLen = 22

// GenerateToken returns a new admin token: 32 random bytes, base64url.
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ReadToken reads the admin token from path: a regular file no one but its
// owner may read or write (mode 0600 or 0400), holding one token of at least
// MinTokenLen printable characters without spaces (a trailing newline is
// allowed).
func ReadToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("admin token %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("admin token %s: mode %#o lets others read or write it: chmod 600 it", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	tok := bytes.TrimRight(data, "\r\n")
	if err := checkToken(tok); err != nil {
		return nil, fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, nil
}

func checkToken(tok []byte) error {
	if len(tok) < MinTokenLen {
		return fmt.Errorf("%d characters, at least %d needed (head -c 32 /dev/urandom | base64 makes a good one)", len(tok), MinTokenLen)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return errors.New("holds a space, a line break or a non-printable character")
		}
	}
	return nil
}

// tokenMatches compares in constant time: both sides are hashed first, so
// neither the content nor the length of the real token leaks through the
// time a wrong guess takes.
func tokenMatches(want, got []byte) bool {
	if len(want) == 0 {
		return false
	}
	w, g := sha256.Sum256(want), sha256.Sum256(got)
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1
}
