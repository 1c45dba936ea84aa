// Package logging builds the slog.Logger that main injects into every component.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats and levels accepted by --log-format and --log-level.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ParseLevel accepts debug, info, warn and error (case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// New returns a logger writing to w in the given format at the given level.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case FormatText, "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Discard is a logger for callers that were given none.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
