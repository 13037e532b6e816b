package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// TestAnsweredCallsPark: a call that is answered and only waits for its
// hangup holds no goroutine (the in-flight memory bar of issue 6 rests on
// it), and every parked call still ends with its answered result when the
// hangup comes.
func TestAnsweredCallsPark(t *testing.T) {
	const n = 200
	const talk = 1500 * time.Millisecond
	h := newHarness(t, harnessConfig{threads: n + 50, rules: fmt.Sprintf("answer,ring=5ms,talk=%s", talk)})
	if err := h.d.amic.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}

	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = cmd(fmt.Sprintf("p%d", i), fmt.Sprintf("7%03d", i))
	}
	start := time.Now()
	h.push(cmds...)
	// Answered or already over: on a loaded machine the first calls may
	// hang up before the last are answered, and then there is no moment
	// with every call talking to look at.
	allTalking := true
	waitFor(t, 60*time.Second, "every call answered and recorded", func() bool {
		allTalking = true
		for i := range n {
			switch h.hget(h.mc.Keys().Call(fmt.Sprintf("p%d", i)), "state") {
			case "answered":
			case "done":
				allTalking = false
			default:
				return false
			}
		}
		return true
	})
	if !allTalking || time.Since(start) > talk-300*time.Millisecond {
		t.Skipf("the machine is too slow to see %d calls talking at once", n)
	}
	// Counted by stack, not runtime.NumGoroutine: miniredis runs two
	// goroutines per connection of the pool.
	if g := goroutinesIn("multcall/dialbridge/bridge."); g > n/10 {
		t.Fatalf("%d goroutines in package bridge with %d answered calls talking: calls are not parked", g, n)
	}

	rs := h.results(n, 10*time.Second)
	for i := range n {
		id := fmt.Sprintf("p%d", i)
		r := rs[id]
		if len(r) != 1 || r[0].Status != bridge.StatusAnswered {
			t.Fatalf("%s: %+v", id, r)
		}
		if r[0].TalkMS < (talk - 100*time.Millisecond).Milliseconds() {
			t.Fatalf("%s: talk_ms %d, want about %d", id, r[0].TalkMS, talk.Milliseconds())
		}
	}
}

// goroutinesIn counts the goroutines with a frame whose function name
// contains pkg.
func goroutinesIn(pkg string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, pkg) {
			count++
		}
	}
	return count
}

// claimCounter counts every command claimed.
type claimCounter struct {
	bridge.Store
	claimed atomic.Int64
}

func (s *claimCounter) ClaimNext(ctx context.Context) ([]byte, error) {
	raw, err := s.Store.ClaimNext(ctx)
	if raw != nil {
		s.claimed.Add(1)
	}
	return raw, err
}

func (s *claimCounter) ClaimMore(ctx context.Context, n int) ([][]byte, error) {
	more, err := s.Store.(bridge.BatchClaimer).ClaimMore(ctx, n)
	s.claimed.Add(int64(len(more)))
	return more, err
}

// TestDialingWindow: however many threads, at most bridge.DefaultMaxDialing
// commands are between claim and Originate; the others wait in Redis (here
// behind a slow Multcall), and all of them are dialed in the end.
func TestDialingWindow(t *testing.T) {
	const window = bridge.DefaultMaxDialing
	const n = window + 400
	cc := &claimCounter{}
	h := newHarness(t, harnessConfig{
		threads: n + 100,
		rules:   "busy",
		mcOpt:   multcallsim.Options{ConfirmDelay: 300 * time.Millisecond},
		wrap:    func(s bridge.Store) bridge.Store { cc.Store = s; return cc },
		// One confirmer BRPOPs the ACKs one by one: on a loaded machine
		// under -race the last ones take seconds.
		tweak: func(s *config.Settings) { s.Timeouts.CommandACK = config.Duration(time.Minute) },
	})
	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = cmd(fmt.Sprintf("w%d", i), fmt.Sprintf("8%04d", i))
	}
	h.push(cmds...)
	var most int64
	for deadline := time.Now().Add(time.Minute); h.sim.OriginateCount() < n && time.Now().Before(deadline); {
		// Claims first: an originate counted after them only lowers the
		// difference, never raises it.
		pending := cc.claimed.Load() - int64(h.sim.OriginateCount())
		if pending > window {
			t.Fatalf("%d commands claimed and not yet originated, the window is %d", pending, window)
		}
		most = max(most, pending)
		time.Sleep(time.Millisecond)
	}
	if most < window*9/10 {
		t.Fatalf("at most %d commands waited for Originate: the window of %d was not exercised", most, window)
	}
	rs := h.results(n, time.Minute)
	for i := range n {
		if r := rs[fmt.Sprintf("w%d", i)]; len(r) != 1 || r[0].Status != bridge.StatusBusy {
			t.Fatalf("w%d: %+v", i, r)
		}
	}
}
