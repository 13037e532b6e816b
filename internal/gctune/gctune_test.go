package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int64
	}{
		{live: 0, floor: 64 * mib, want: 100},        // no figure yet: Go's default
		{live: 4 * mib, floor: 64 * mib, want: 1500}, // 4 × 16 = 64
		{live: 3 * mib, floor: 64 * mib, want: 2034}, // rounded up: 3 × 21.34 ≥ 64
		{live: 32 * mib, floor: 64 * mib, want: 100}, // 2 × live reaches the floor
		{live: 50 * mib, floor: 64 * mib, want: 100}, // above it: Go's default
		{live: 1, floor: 64 * mib, want: maxPercent}, // int32-safe
		{live: 10 * mib, floor: 0, want: 100},
	} {
		got := Percent(c.live, c.floor)
		if got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
		if got > 100 && got < maxPercent && c.live+c.live*uint64(got)/100 < c.floor {
			t.Errorf("Percent(%d, %d) = %d: goal %d under the floor", c.live, c.floor, got, c.live+c.live*uint64(got)/100)
		}
	}
}

// TestTunerFollowsCollections: after collections the tuner has raised GOGC
// for this test's small heap, and Stop gives back the default.
func TestTunerFollowsCollections(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := Start(256 << 20)
	if tu == nil {
		t.Fatal("Start returned nil without GOGC/GOMEMLIMIT")
	}
	defer tu.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for tu.Cycles() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the tuner saw %d collections after 10s", tu.Cycles())
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // the finalizer goroutine runs
	}
	p := tu.Percent()
	if p <= 100 {
		t.Fatalf("GOGC %d after %d collections of a small heap, want above 100", p, tu.Cycles())
	}
	if cur := debug.SetGCPercent(-1); int64(cur) != p {
		t.Fatalf("runtime GOGC %d, tuner says %d", cur, p)
	}
	debug.SetGCPercent(int(p))
	tu.Stop()
	if cur := debug.SetGCPercent(100); cur != 100 {
		t.Fatalf("GOGC %d after Stop, want 100", cur)
	}
	n := tu.Cycles()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	runtime.GC()
	if tu.Cycles() != n {
		t.Fatalf("the tuner still runs after Stop")
	}
}

func TestStartRespectsTheOperator(t *testing.T) {
	for _, env := range [][2]string{{"GOGC", "200"}, {"GOGC", "off"}, {"GOMEMLIMIT", "96MiB"}} {
		t.Run(env[0]+"="+env[1], func(t *testing.T) {
			t.Setenv("GOGC", "")
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv(env[0], env[1])
			if tu := Start(DefaultFloor); tu != nil {
				tu.Stop()
				t.Fatalf("Start tuned with %s=%s set", env[0], env[1])
			}
		})
	}
}
