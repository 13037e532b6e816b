package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multcall/dialbridge/config"
)

// logrotate moves the file away and sends SIGHUP; the daemon's reopen must
// start a new file at the configured path and leave the moved one alone.
func TestLogReopenAfterRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dialbridge.log")
	log, reopen, err := newLogger(config.Log{Level: "info", Format: "json", Location: path}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if reopen == nil {
		t.Fatal("no reopen func for a log file")
	}
	log.Info().Msg("before rotation")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("still to the moved file")
	if err := reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("after rotation")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "before rotation") || !strings.Contains(string(old), "still to the moved file") || strings.Contains(string(old), "after rotation") {
		t.Fatalf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), "after rotation") || strings.Count(string(cur), "\n") != 1 {
		t.Fatalf("new file: %s", cur)
	}
}

func TestLogToStderrHasNoReopen(t *testing.T) {
	_, reopen, err := newLogger(config.Log{Level: "debug", Format: "console", Location: "-"}, os.Stderr)
	if err != nil || reopen != nil {
		t.Fatalf("reopen=%v err=%v", reopen != nil, err)
	}
	if _, _, err := newLogger(config.Log{Level: "info", Format: "json", Location: "/nonexistent-dir/x.log"}, os.Stderr); err == nil || !strings.Contains(err.Error(), "log.location") {
		t.Fatalf("want an error naming log.location, got %v", err)
	}
}
