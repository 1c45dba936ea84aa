//go:build linux

package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Fanotify is the userspace tier: one fanotify group per target, marking
// the target's whole filesystem.
//
// Where the filesystem has an fsid the group reports file identifiers (FID
// mode), which adds directory and attribute events: it sees content writes,
// truncation, creation, removal, renames, links and attribute changes. Where
// it has none (FUSE, so zfs-fuse) only fd mode is possible, which reports
// just MODIFY and CLOSE_WRITE, and only events that carry a path (it opens a
// descriptor for each): namespace and attribute changes and truncation are
// missed, and a created file shows only when it is closed. fd mode
// still marks the filesystem rather than the one mount, so writes through a
// bind mount of the dataset (a container's volume) are seen; only a kernel
// that refuses filesystem marks (before 4.20) gets a mount mark.
//
// Blind spots in every mode: stores through a shared mapping (msync or not:
// writeback raises no event) and Linux AIO writes (no event until the file
// is closed). The matrix tests assert these lists.
//
// Coalescing happens here in userspace: after the first event the group's
// queue is drained, the filesystem flushed (syncfs) and drained again, and
// one Change is reported; events that arrive after that start the next
// dirty period. In fd mode every event carries an open descriptor, closed
// at once: an open file on a zfs-fuse dataset keeps its pool from being
// destroyed.
type Fanotify struct {
	log *slog.Logger
	// noFlush leaves the syncfs to the consumer (see EBPFNoFlush).
	noFlush bool

	mu      sync.Mutex
	watches map[string]*fanWatch
	closed  bool
	changes chan Change
}

var _ Notifier = (*Fanotify)(nil)

// Marks a fanotify watch can hold, best first.
const (
	MarkFilesystemFID = "filesystem mark, FID mode"
	MarkFilesystemFD  = "filesystem mark, fd mode"
	MarkMountFD       = "mount mark, fd mode"
)

// Events each mode asks for. fd mode can only have content events; FID
// mode adds the directory and attribute events, on directories too.
const (
	fanFDEvents  = unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE
	fanFIDEvents = fanFDEvents | unix.FAN_ATTRIB | unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVE |
		unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR
)

type fanWatch struct {
	target Target
	mark   string
	why    string // why better marks were refused
	file   *os.File
	stop   chan struct{}
	done   chan struct{}
}

// NewFanotify returns the fanotify tier. It fails when the kernel cannot
// create a fanotify group at all (no CONFIG_FANOTIFY, or not privileged).
func NewFanotify(log *slog.Logger) (*Fanotify, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	unix.Close(fd)
	return &Fanotify{log: log, watches: map[string]*fanWatch{}, changes: make(chan Change, 16)}, nil
}

func (f *Fanotify) Tier() string { return TierFanotify }

func (f *Fanotify) Changes() <-chan Change { return f.changes }

// Add marks t's filesystem. The marking runs aside and is abandoned when ctx
// ends: statfs and fanotify_mark on a FUSE mount whose daemon hangs block.
func (f *Fanotify) Add(ctx context.Context, t Target) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return errors.New("fanotify: notifier closed")
	}
	if _, dup := f.watches[t.Name]; dup {
		f.mu.Unlock()
		return fmt.Errorf("fanotify: target %q is already watched", t.Name)
	}
	f.mu.Unlock()

	done := make(chan *fanWatch, 1)
	errc := make(chan error, 1)
	go func() {
		w, err := markTarget(t)
		if err != nil {
			errc <- err
			return
		}
		done <- w
	}()
	var w *fanWatch
	select {
	case w = <-done:
	case err := <-errc:
		return err
	case <-ctx.Done():
		go func() { // close the group if the marking ever finishes
			if w := <-done; w != nil {
				w.file.Close()
			}
		}()
		return fmt.Errorf("fanotify: marking %s did not finish (is a FUSE daemon behind it answering?): %w", t.Mountpoint, ctx.Err())
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.watches[t.Name]; dup || f.closed {
		w.file.Close()
		return fmt.Errorf("fanotify: target %q was added concurrently or the notifier closed", t.Name)
	}
	f.watches[t.Name] = w
	go f.read(w)
	f.log.Info("fanotify watching", "dataset", t.Name, "mountpoint", t.Mountpoint, "mark", w.mark, "refused", w.why)
	return nil
}

// Mark says how the named target is marked and why better marks were
// refused, for logs and status.
func (f *Fanotify) Mark(name string) (mark, refused string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.watches[name]; w != nil {
		return w.mark, w.why
	}
	return "", ""
}

// markTarget creates a group for t and marks its filesystem with the best
// mark the kernel and the filesystem allow.
func markTarget(t Target) (*fanWatch, error) {
	if err := checkMounted(t.Mountpoint); err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(t.Mountpoint, &st); err != nil {
		return nil, fmt.Errorf("fanotify: statfs %s: %w", t.Mountpoint, err)
	}
	var refused []string
	try := func(name string, initFlags uint, markFlags uint, mask uint64) *fanWatch {
		fd, err := unix.FanotifyInit(initFlags|unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
			unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
		if err != nil {
			refused = append(refused, fmt.Sprintf("%s: fanotify_init: %v", name, err))
			return nil
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|markFlags, mask, unix.AT_FDCWD, t.Mountpoint); err != nil {
			unix.Close(fd)
			refused = append(refused, fmt.Sprintf("%s: fanotify_mark: %v", name, err))
			return nil
		}
		return &fanWatch{target: t, mark: name, file: os.NewFile(uintptr(fd), "fanotify:"+t.Name),
			stop: make(chan struct{}), done: make(chan struct{})}
	}
	if st.Fsid.Val[0] == 0 && st.Fsid.Val[1] == 0 {
		refused = append(refused, MarkFilesystemFID+": the filesystem has no fsid (FUSE)")
	} else if w := try(MarkFilesystemFID, unix.FAN_REPORT_FID, unix.FAN_MARK_FILESYSTEM, fanFIDEvents); w != nil {
		return w, nil
	}
	w := try(MarkFilesystemFD, 0, unix.FAN_MARK_FILESYSTEM, fanFDEvents)
	if w == nil {
		w = try(MarkMountFD, 0, unix.FAN_MARK_MOUNT, fanFDEvents)
	}
	if w == nil {
		return nil, fmt.Errorf("fanotify: cannot mark %s: %s", t.Mountpoint, strings.Join(refused, "; "))
	}
	w.why = strings.Join(refused, "; ")
	return w, nil
}

func (f *Fanotify) Remove(name string) error {
	f.mu.Lock()
	w := f.watches[name]
	delete(f.watches, name)
	f.mu.Unlock()
	if w == nil {
		return fmt.Errorf("fanotify: target %q is not watched", name)
	}
	return w.close()
}

// close stops the reader and closes the group, which drops its mark and
// every queued event (queued fd-mode events hold the mount busy).
func (w *fanWatch) close() error {
	close(w.stop)
	err := w.file.Close() // wakes a Read blocked in the poller
	<-w.done
	if err != nil {
		return fmt.Errorf("fanotify: closing the group of %s: %w", w.target.Name, err)
	}
	return nil
}

func (f *Fanotify) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	watches := f.watches
	f.watches = map[string]*fanWatch{}
	f.mu.Unlock()
	var errs []error
	for _, w := range watches {
		errs = append(errs, w.close())
	}
	close(f.changes)
	return errors.Join(errs...)
}

// read reports one Change per dirty period until the watch is closed.
func (f *Fanotify) read(w *fanWatch) {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf) // blocks in the poller: the group is non-blocking
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				f.log.Error("fanotify: reading events failed; the target is no longer watched", "dataset", w.target.Name, "err", err)
			}
			return
		}
		hook, err := consumeEvents(buf[:n])
		if err != nil {
			f.log.Warn("fanotify: bad event data; counting it as a change", "dataset", w.target.Name, "err", err)
			hook = "malformed"
		}
		// Coalesce what the same burst queued, flush, and take what the
		// flush saw arrive: it is all covered by the report that follows.
		w.drain(buf, f.log)
		if !f.noFlush {
			flushes.flushLogged(f.log, w.target.Mountpoint, w.target.Name, "syncfs failed; reporting the change anyway")
			w.drain(buf, f.log)
		}
		select {
		case f.changes <- Change{Time: time.Now(), Dataset: w.target.Name, Tier: TierFanotify, Hook: "fanotify/" + hook}:
		case <-w.stop:
			return
		}
	}
}

// drain reads and discards whatever events are queued now, without waiting.
func (w *fanWatch) drain(buf []byte, log *slog.Logger) {
	rc, err := w.file.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // never wait for more
		}); err != nil || rerr != nil || n <= 0 {
			return
		}
		if _, err := consumeEvents(buf[:n]); err != nil {
			log.Warn("fanotify: bad event data while draining", "dataset", w.target.Name, "err", err)
		}
	}
}

// Event names, in the order the first one of a burst is named.
var fanEventNames = []struct {
	bit  uint64
	name string
}{
	{unix.FAN_Q_OVERFLOW, "overflow"}, {unix.FAN_MODIFY, "modify"}, {unix.FAN_CLOSE_WRITE, "close_write"},
	{unix.FAN_ATTRIB, "attrib"}, {unix.FAN_CREATE, "create"}, {unix.FAN_DELETE, "delete"},
	{unix.FAN_MOVED_FROM, "moved_from"}, {unix.FAN_MOVED_TO, "moved_to"},
	{unix.FAN_DELETE_SELF, "delete_self"}, {unix.FAN_MOVE_SELF, "move_self"},
}

// fanMetadataLen is sizeof(struct fanotify_event_metadata).
const fanMetadataLen = 24

// consumeEvents walks a buffer of fanotify events, closes every descriptor
// they carry (fd mode), and names the first event. An overflow means events
// were lost: still a change, and the report that follows covers it.
func consumeEvents(b []byte) (string, error) {
	first := ""
	var errs []error
	for len(b) >= fanMetadataLen {
		evLen := binary.NativeEndian.Uint32(b[0:4])
		vers := b[4]
		mask := binary.NativeEndian.Uint64(b[8:16])
		fd := int32(binary.NativeEndian.Uint32(b[16:20]))
		if fd >= 0 {
			unix.Close(int(fd))
		}
		if vers != unix.FANOTIFY_METADATA_VERSION {
			errs = append(errs, fmt.Errorf("event metadata version %d, want %d", vers, unix.FANOTIFY_METADATA_VERSION))
		}
		if first == "" {
			first = fmt.Sprintf("mask-%#x", mask)
			for _, e := range fanEventNames {
				if mask&e.bit != 0 {
					first = e.name
					break
				}
			}
		}
		if evLen < fanMetadataLen || int(evLen) > len(b) {
			errs = append(errs, fmt.Errorf("event length %d with %d bytes left", evLen, len(b)))
			break
		}
		b = b[evLen:]
	}
	if first == "" {
		errs = append(errs, errors.New("no complete event"))
		first = "unknown"
	}
	return first, errors.Join(errs...)
}
