package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SendOptions configures Send and EstimateSend.
type SendOptions struct {
	// From is the incremental source: a snapshot (dataset@snap) or, where
	// the dialect has bookmarks, a bookmark (dataset#mark). Empty: a full
	// stream.
	From string
	// Intermediates sends every snapshot between From and the target too
	// (-I instead of -i); From must then be a snapshot.
	Intermediates bool
	// Compressed (-c) and LargeBlocks (-L) send blocks as they are stored;
	// ErrUnsupported where the dialect lacks them.
	Compressed  bool
	LargeBlocks bool
}

// sendArgs validates a send and returns its flags before the snapshot.
func (z *ZFS) sendArgs(op, snapshot string, o SendOptions) ([]string, error) {
	checks := []error{ValidateSnapshot(snapshot)}
	bookmark := strings.Contains(o.From, "#")
	switch {
	case o.From == "":
		if o.Intermediates {
			checks = append(checks, errors.New("-I (intermediates) needs an incremental source"))
		}
	case bookmark:
		checks = append(checks, ValidateBookmark(o.From))
		if o.Intermediates {
			checks = append(checks, fmt.Errorf("-I cannot start from bookmark %s", o.From))
		}
	default:
		checks = append(checks, ValidateSnapshot(o.From))
	}
	if err := validate(op, checks...); err != nil {
		return nil, err
	}
	f := z.dialect.Features
	if err := errors.Join(
		z.requireIf(op, bookmark, f.Bookmarks, "bookmarks"),
		z.requireIf(op, o.Compressed, f.SendCompressed, "send -c"),
		z.requireIf(op, o.LargeBlocks, f.SendLargeBlocks, "send -L"),
	); err != nil {
		return nil, err
	}
	var args []string
	if o.Compressed {
		args = append(args, "-c")
	}
	if o.LargeBlocks {
		args = append(args, "-L")
	}
	if o.From != "" {
		flag := "-i"
		if o.Intermediates {
			flag = "-I"
		}
		args = append(args, flag, o.From)
	}
	return args, nil
}

func (z *ZFS) requireIf(op string, wanted, ok bool, feature string) error {
	if !wanted {
		return nil
	}
	return z.require(op, ok, feature)
}

// Send writes the stream of snapshot (full, or incremental from opts.From)
// to w as zfs produces it, with back-pressure: zfs waits while w does. It
// returns the bytes written to w. zfs's stderr becomes typed errors; a w
// that fails stops zfs (EPIPE) and its error is returned. Cancelling ctx
// stops zfs (see CLI.stream): w then holds a truncated stream, which a
// receiver refuses with ErrBadStream.
func (z *ZFS) Send(ctx context.Context, snapshot string, w io.Writer, opts SendOptions) (int64, error) {
	const op = "send"
	flags, err := z.sendArgs(op, snapshot, opts)
	if err != nil {
		return 0, err
	}
	args := append(append([]string{"send"}, flags...), snapshot)
	return z.runStream(ctx, op, snapshot, args, nil, w)
}

// SendResume continues an interrupted send from the receiver's
// receive_resume_token (`zfs send -t`), writing the rest of the stream to w.
func (z *ZFS) SendResume(ctx context.Context, token string, w io.Writer) (int64, error) {
	const op = "send resume"
	if err := validate(op, ValidateResumeToken(token)); err != nil {
		return 0, err
	}
	if err := z.require(op, z.dialect.Features.ResumableReceive, "resumable send/receive"); err != nil {
		return 0, err
	}
	return z.runStream(ctx, op, "token "+shortToken(token), []string{"send", "-t", token}, nil, w)
}

// EstimateSend returns the size in bytes zfs expects the stream to have
// (`zfs send -nP`), for progress reports; ErrUnsupported where the dialect
// has no parsable dry run (zfs-fuse).
func (z *ZFS) EstimateSend(ctx context.Context, snapshot string, opts SendOptions) (int64, error) {
	const op = "estimate send"
	flags, err := z.sendArgs(op, snapshot, opts)
	if err != nil {
		return 0, err
	}
	if err := z.require(op, z.dialect.Features.SendDryRunParsable, "send -nP"); err != nil {
		return 0, err
	}
	out, err := z.zfs(ctx, op, snapshot, append(append([]string{"send", "-nP"}, flags...), snapshot)...)
	if err != nil {
		return 0, err
	}
	return parseEstimate(op, snapshot, string(out))
}

// EstimateResume returns the bytes a SendResume of token would still send.
func (z *ZFS) EstimateResume(ctx context.Context, token string) (int64, error) {
	r, err := z.ResumeInfo(ctx, token)
	return r.Remaining, err
}

// Resume is what a receive_resume_token says about the interrupted stream,
// read on the sending side.
type Resume struct {
	ToGUID   uint64 // the target snapshot's GUID
	ToName   string // the target snapshot as the sender named it (dataset@snap)
	FromGUID uint64 // the incremental source's GUID; 0 for a full stream
	// Bytes the receiver already holds, and Remaining the bytes a
	// SendResume of the token still sends.
	Bytes, Remaining int64
}

// ResumeInfo reads a receive_resume_token on the sending side with one
// `zfs send -nP -t` (nothing is sent): which snapshot the interrupted
// stream carried and what is left of it. A sender that can no longer
// continue the stream (the target or source was destroyed since, or the
// token is corrupt) gets ErrResumeTokenInvalid or ErrNotFound.
func (z *ZFS) ResumeInfo(ctx context.Context, token string) (Resume, error) {
	const op = "read resume token"
	if err := validate(op, ValidateResumeToken(token)); err != nil {
		return Resume{}, err
	}
	if err := z.require(op, z.dialect.Features.SendDryRunParsable && z.dialect.Features.ResumableReceive, "send -nP -t"); err != nil {
		return Resume{}, err
	}
	target := "token " + shortToken(token)
	out, err := z.zfs(ctx, op, target, "send", "-nP", "-t", token)
	if err != nil {
		return Resume{}, err
	}
	return parseResume(op, target, string(out))
}

// parseResume reads `zfs send -nP -t` output: the token's nvlist as
// "\tname = value" lines after "resume token contents:", then the stream
// lines ending in "size\tN".
func parseResume(op, target, out string) (Resume, error) {
	var r Resume
	var err error
	if r.Remaining, err = parseEstimate(op, target, out); err != nil {
		return r, err
	}
	in := false
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "resume token contents:" {
			in = true
			continue
		}
		if !in || !strings.HasPrefix(line, "\t") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), " = ")
		if !ok {
			continue
		}
		var perr error
		switch key {
		case "toguid":
			r.ToGUID, perr = strconv.ParseUint(val, 0, 64)
		case "fromguid":
			r.FromGUID, perr = strconv.ParseUint(val, 0, 64)
		case "bytes":
			var b uint64
			b, perr = strconv.ParseUint(val, 0, 64)
			r.Bytes = int64(min(b, 1<<62))
		case "toname":
			r.ToName = val
		}
		if perr != nil {
			return r, fmt.Errorf("%s %s: %s %q is not a number", op, target, key, val)
		}
	}
	if r.ToGUID == 0 || r.ToName == "" {
		return r, fmt.Errorf("%s %s: no toguid and toname in the token's contents", op, target)
	}
	return r, nil
}

// parseEstimate reads the "size\tN" line of `zfs send -nP` (OpenZFS prints
// it last, after one line per stream and, with -t, the token's contents).
func parseEstimate(op, target, out string) (int64, error) {
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "size\t")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s %s: size %q is not a byte count", op, target, rest)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s %s: no size line in %q", op, target, firstLine(out))
}

// shortToken abbreviates a resume token for error messages.
func shortToken(t string) string {
	if len(t) > 24 {
		return t[:24] + "..."
	}
	return t
}

// ReceiveOptions configures Receive. Forced receives (-F, which rolls the
// target back and destroys what is in the way) are never offered: flocker
// never overwrites data that may exist nowhere else.
type ReceiveOptions struct {
	// Resumable (-s): a failed receive keeps its partial state and a
	// receive_resume_token (ResumeToken, SendResume) instead of discarding
	// it. ErrUnsupported where the dialect has no resumable receive
	// (zfs-fuse): there a failed receive leaves nothing behind, and the
	// transfer is redone from the incremental base.
	Resumable bool
	// Properties are set on the received file system (-o); ErrUnsupported
	// where the dialect lacks receive -o (then set them after the first
	// receive).
	Properties map[string]string
	// NoMount (-u) leaves the received file system unmounted;
	// ErrUnsupported where the dialect lacks it.
	NoMount bool
}

// Receive reads a send stream from r into target (a file system: created by
// a full stream, advanced by an incremental one; or dataset@snap to name
// the received snapshot). It returns the bytes zfs took from r. r is read
// to its end.
//
// A failed receive leaves no half-received dataset: zfs discards the
// partial state, unless opts.Resumable kept it, which the error reports as
// ErrResumable with the token when zfs printed it. A corrupted or truncated
// stream is ErrBadStream; a failed r is returned too. Cancelling ctx ends
// the stream zfs reads (which it then refuses as incomplete, cleaning up as
// above) and stops zfs; see CLI.stream for a Read that blocks meanwhile.
func (z *ZFS) Receive(ctx context.Context, target string, r io.Reader, opts ReceiveOptions) (int64, error) {
	const op = "receive"
	props, perr := propArgs(opts.Properties)
	if err := validate(op, validateDatasetOrSnapshot(target), perr); err != nil {
		return 0, err
	}
	f := z.dialect.Features
	if err := errors.Join(
		z.requireIf(op, opts.Resumable, f.ResumableReceive, "receive -s"),
		z.requireIf(op, len(opts.Properties) > 0, f.ReceiveProperties, "receive -o"),
		z.requireIf(op, opts.NoMount, f.ReceiveNoMount, "receive -u"),
	); err != nil {
		return 0, err
	}
	args := []string{"receive"}
	if opts.Resumable {
		args = append(args, "-s")
	}
	if opts.NoMount {
		args = append(args, "-u")
	}
	args = append(append(args, props...), target)
	return z.runStream(ctx, op, target, args, r, nil)
}

// runStream runs a send (w set) or receive (r set) and shapes its errors.
func (z *ZFS) runStream(ctx context.Context, op, target string, args []string, r io.Reader, w io.Writer) (int64, error) {
	res := z.cli.stream(ctx, args, r, w)
	var errs []error
	if res.cmdErr != nil {
		errs = append(errs, zfsError(op, target, res.cmdErr))
	}
	if res.ioErr != nil {
		errs = append(errs, fmt.Errorf("%s %s: %w", op, target, res.ioErr))
	}
	if res.abandoned {
		z.log.Debug("stream copy still blocked in the caller's reader or writer", "op", op, "target", target)
	}
	return res.n, errors.Join(errs...)
}

// ResumeToken returns the receive_resume_token a failed resumable receive
// left on dataset, or "" when there is none.
func (z *ZFS) ResumeToken(ctx context.Context, dataset string) (string, error) {
	const op = "resume token"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return "", err
	}
	if err := z.require(op, z.dialect.Features.ResumableReceive, "resumable receive"); err != nil {
		return "", err
	}
	p, err := z.GetProperty(ctx, dataset, "receive_resume_token")
	if err != nil {
		return "", err
	}
	if !p.IsSet() {
		return "", nil
	}
	return p.Value, nil
}

// AbortReceive discards the partial state of a resumable receive
// (`zfs receive -A`). Aborting a full receive removes the dataset it was
// creating. Nothing to abort: ErrNoReceiveState, or ErrNotFound when the
// dataset does not exist (OpenZFS).
func (z *ZFS) AbortReceive(ctx context.Context, dataset string) error {
	const op = "abort receive"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return err
	}
	if err := z.require(op, z.dialect.Features.ResumableReceive, "resumable receive"); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, dataset, "receive", "-A", dataset)
	return err
}
