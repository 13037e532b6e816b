package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/config"
)

// reopenableFile is the log file. SIGHUP reopens it, so logrotate can move
// the file away and signal us (the convention of syslogd, nginx, redis).
type reopenableFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openLogFile(path string) (*reopenableFile, error) {
	r := &reopenableFile{path: path}
	if err := r.Reopen(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *reopenableFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen closes the current file and opens the path again.
func (r *reopenableFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log.location %s: %w", r.path, err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenableFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// newLogger builds the zerolog logger described by log.* settings. The
// returned reopen func is nil when logging to stderr.
func newLogger(s config.Log, stderr io.Writer) (zerolog.Logger, func() error, error) {
	level, err := zerolog.ParseLevel(s.Level)
	if err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("log.level: %w", err)
	}
	var out io.Writer = stderr
	var reopen func() error
	if s.Location != "-" {
		f, err := openLogFile(s.Location)
		if err != nil {
			return zerolog.Nop(), nil, err
		}
		out = f
		reopen = f.Reopen
	}
	if s.Format == "console" {
		color := false
		if f, ok := stderr.(*os.File); ok && s.Location == "-" {
			color = isatty.IsTerminal(f.Fd())
		}
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: "2006-01-02 15:04:05.000", NoColor: !color}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), reopen, nil
}
