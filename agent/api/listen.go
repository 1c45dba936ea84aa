package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// SocketMode is the admin socket's mode: connecting needs write permission
// on it, so only its owner (root, the agent's user) can.
const SocketMode fs.FileMode = 0o600

// ListenUnix creates the admin socket at path, mode 0600, owned by this
// process's user. The socket is made inside a fresh 0700 directory, given
// its mode there and renamed into place, so it is never reachable with a
// wider mode, and a stale socket of an earlier run is replaced at once. A
// file at path that is not a socket, or a socket another process answers
// on, is refused. Closing the listener
// removes the socket.
func ListenUnix(path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("admin socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("admin socket %s: a %v is in the way (refusing to remove it)", path, fi.Mode().Type())
	default:
		// A socket someone answers on belongs to a running agent: taking
		// it over would leave that agent unreachable.
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s: another agent is serving on it", path)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".admin-sock-")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: staged, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(staged, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(staged, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &unixListener{UnixListener: ln, path: path}, nil
}

// unixListener removes its socket on Close.
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// ListenTCP listens on the [node] status address.
func ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("status listener: %w", err)
	}
	return ln, nil
}
