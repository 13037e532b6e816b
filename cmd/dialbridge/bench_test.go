package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// TestBenchDaemonOwnProcess runs "dialbridge bench" at tiny scale as it runs
// for real: the daemon of e2e, paced and inflight is the binary in its own
// process, and the profiles come from that process's pprof endpoints.
func TestBenchDaemonOwnProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := binary(t)
	mr := miniredis.RunT(t)
	dir := t.TempDir()
	cpu, allocs := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "allocs.prof")
	c := exec.Command(bin, "bench", "--redis", mr.Addr(), "--only", "e2e,paced,inflight", "--ami-events", "filtered",
		"--n", "200", "--paced-n", "100", "--rate", "500", "--inflight", "50", "--runs", "1", "--threads", "50",
		"--cpuprofile", cpu, "--allocprofile", allocs)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	t.Log(stderr.String())
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	for _, want := range []string{"e2e (daemon", "paced 500/s, AMI events filtered", "inflight 50 answered calls"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "answered 200") {
		t.Errorf("e2e did not get 200 answered results")
	}
	for _, p := range []string{cpu, allocs, allocs + ".base"} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	// The allocation profile is the daemon's: its code is in the samples'
	// stacks, the harness's simulators are not. (Whole stacks, not -top:
	// a few hundred calls give a few dozen samples, and which function
	// allocated each one is chance.)
	traces, err := exec.Command("go", "tool", "pprof", "-sample_index=alloc_space", "-traces", bin, allocs).CombinedOutput()
	if err != nil {
		t.Fatalf("pprof: %v\n%s", err, traces)
	}
	if !strings.Contains(string(traces), "multcall/dialbridge/") || strings.Contains(string(traces), "amisim.") {
		t.Errorf("the allocation profile is not the daemon's alone:\n%s", traces)
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("keys left behind: %v", keys[:min(len(keys), 5)])
	}
}
