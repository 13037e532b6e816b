package proc

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		line, start, state string
		bad                bool
	}{
		{line: "7232 (cat) R 7228 7228 24571 0 -1 4194304 131 0 0 0 0 0 0 0 20 0 1 0 1013221 3133440 379", start: "1013221", state: "R"},
		{line: "42 (a) b) (c) S 1 42 42 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 3 0 555 100 5", start: "555", state: "S"},
		{line: "9 (dialbridge) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0", start: "77", state: "Z"},
		{line: "9 (x) R 1 2", bad: true},
		{line: "no name here", bad: true},
	}
	for _, tt := range tests {
		start, state, err := parseStat(tt.line)
		if (err != nil) != tt.bad || start != tt.start || state != tt.state {
			t.Errorf("parseStat(%q) = %q, %q, %v", tt.line, start, state, err)
		}
	}
}

// TestGone on the real /proc: this process runs; a child that exited and
// was reaped is gone; the same pid with another start time (a reused pid)
// is gone; another boot or pid namespace cannot be judged.
func TestGone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	self := Self()
	if !self.Complete() {
		t.Fatalf("own identity incomplete: %+v", self)
	}
	if gone, known := Gone(self); gone || !known {
		t.Errorf("self: gone %v known %v, want alive and known", gone, known)
	}
	c := exec.Command(os.Args[0], "-test.run=^$")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	child, err := Of(c.Process.Pid) // not reaped yet: readable even if it ended
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if gone, known := Gone(child); !gone || !known {
		t.Errorf("reaped child: gone %v known %v, want gone", gone, known)
	}
	// A process /proc does not show (ProtectProc=invisible hides other
	// users' processes) is gone only if the kernel says so.
	if noSuchProcess(1) || noSuchProcess(self.PID) {
		t.Errorf("pid 1 or this process reported as no such process")
	}
	if !noSuchProcess(child.PID) {
		t.Errorf("the reaped child is not reported as no such process")
	}
	reused := self
	reused.Start = self.Start + "0"
	if gone, known := Gone(reused); !gone || !known {
		t.Errorf("reused pid: gone %v known %v, want gone", gone, known)
	}
	for name, id := range map[string]Identity{
		"another boot":      {PID: self.PID + 100000, Start: "1", Boot: "other", PidNS: self.PidNS},
		"another namespace": {PID: self.PID + 100000, Start: "1", Boot: self.Boot, PidNS: "pid:[1]"},
		"incomplete":        {PID: self.PID + 100000},
	} {
		if gone, known := Gone(id); gone || known {
			t.Errorf("%s: gone %v known %v, want unknown", name, gone, known)
		}
	}
}
