package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/testport"
)

// authRedis is a miniredis that requires the password "right-password".
func authRedis(t *testing.T) (string, int) {
	t.Helper()
	m := miniredis.RunT(t)
	m.RequireAuth("right-password")
	host, port, _ := net.SplitHostPort(m.Addr())
	p, _ := strconv.Atoi(port)
	return host, p
}

// restartSim starts the AMI simulator again on the address it had. The
// harnesses start it on a port reserved for the test (testport.Reserve), so no
// other socket took the port while the simulator was down.
func restartSim(t *testing.T, cfg amisim.Config) (*amisim.Server, error) {
	t.Helper()
	return amisim.New(cfg)
}

// notes collects sd_notify messages.
type notes struct {
	mu  sync.Mutex
	got []string
}

func (n *notes) add(s string) {
	n.mu.Lock()
	n.got = append(n.got, s)
	n.mu.Unlock()
}

func (n *notes) count(sub string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.got {
		if strings.Contains(s, sub) {
			c++
		}
	}
	return c
}

// TestStartWaitsForRedis: Redis unreachable at start is an outage, waited
// for with backoff (systemd told why), not a reason to exit.
func TestStartWaitsForRedis(t *testing.T) {
	t.Parallel()
	sim, err := amisim.New(amisim.Config{AuthDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	port := testport.Reserve(t)
	s := testSettings(t, "127.0.0.1:"+strconv.Itoa(port), sim.Port(), 5)
	var n notes
	type started struct {
		d   *daemon
		err error
	}
	done := make(chan started, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		d, err := startDaemon(ctx, s, testCell, zerolog.Nop(), func(o *daemonOptions) { o.notify = n.add })
		done <- started{d, err}
	}()
	waitFor(t, 20*time.Second, "a STATUS= saying it waits for Redis", func() bool { return n.count("STATUS=waiting for Redis") > 0 })
	select {
	case r := <-done:
		t.Fatalf("start returned while Redis was unreachable: %v", r.err)
	default:
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:" + strconv.Itoa(port)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("start after Redis came up: %v", r.err)
		}
		r.d.close()
	case <-time.After(30 * time.Second):
		t.Fatal("start did not finish after Redis came up")
	}
	if n.count("EXTEND_TIMEOUT_USEC=") == 0 {
		t.Error("the start timeout was not extended while waiting")
	}
}

// hangingStore stands for a claim loop stuck on one call: once hung, its
// ClaimNext never returns (until the test ends).
type hangingStore struct {
	bridge.Store
	mu      sync.Mutex
	hung    bool
	release chan struct{}
}

func (s *hangingStore) hang() {
	s.mu.Lock()
	s.hung = true
	s.mu.Unlock()
}

func (s *hangingStore) ClaimNext(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	hung := s.hung
	s.mu.Unlock()
	if hung {
		<-s.release
		return nil, nil
	}
	return s.Store.ClaimNext(ctx)
}

// TestWatchdogFollowsTheLoops: the watchdog is fed while the main loops go
// round — also while AMI is down (an outage, not a hang) — and no longer
// once the claim loop is stuck, so systemd restarts a hung daemon.
func TestWatchdogFollowsTheLoops(t *testing.T) {
	t.Parallel()
	hs := &hangingStore{release: make(chan struct{})}
	h := newHarness(t, harnessConfig{threads: 4, rules: "answer", wrap: func(s bridge.Store) bridge.Store {
		hs.Store = s
		return hs
	}})
	defer close(hs.release)
	var n notes
	o, err := startOpsWith(context.Background(), h.d, opsOptions{
		notify:   func(s string) (bool, error) { n.add(s); return true, nil },
		watchdog: func() (time.Duration, error) { return time.Second, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer o.stop(context.Background())

	fedWithin := func(d time.Duration) bool {
		before := n.count("WATCHDOG=1")
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if n.count("WATCHDOG=1") > before {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	if !fedWithin(10 * time.Second) {
		t.Fatal("watchdog not fed while healthy")
	}
	// AMI down for longer than the stall limit: still fed.
	h.sim.Close()
	waitFor(t, 10*time.Second, "AMI noticed down", func() bool { return !h.d.amic.Ready() })
	time.Sleep(minLoopStall + time.Second)
	if !fedWithin(5 * time.Second) {
		t.Fatal("watchdog not fed during an AMI outage: a long outage would be restarted")
	}
	// Back up, then the claim loop hangs: feeding stops once it has been
	// silent for the stall limit.
	sim, err := restartSim(t, amisim.Config{Addr: h.sim.Addr(), AuthDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	waitFor(t, 20*time.Second, "AMI back", func() bool { return h.d.amic.Ready() })
	hs.hang()
	waitFor(t, 30*time.Second, "feeding to stop", func() bool { return !fedWithin(3 * time.Second) })
	if time.Since(h.d.cell.LastRound()) < minLoopStall {
		t.Errorf("feeding stopped while the claim loop went round %s ago", time.Since(h.d.cell.LastRound()))
	}
}

// TestHealthzSaysWritesAreRefused: a Redis that answers PING but refuses
// writes (here: the ACL user lost write rights; in life, OOM under
// noeviction) makes /healthz say so.
func TestHealthzSaysWritesAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{threads: 2, rules: "answer"})
	o, err := startOpsWith(context.Background(), h.d, opsOptions{notify: func(string) (bool, error) { return false, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer o.stop(context.Background())
	waitFor(t, 15*time.Second, "healthy", func() bool { return o.health.Check(context.Background()).OK() })
	// The heartbeat's key turned into a string: every beat's HSET fails
	// with WRONGTYPE while PING still answers.
	key := h.d.beat.Key()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			h.rdb.Set(context.Background(), key, "x", 0)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	waitFor(t, 30*time.Second, "/healthz to report refused writes", func() bool {
		r := o.health.Check(context.Background())
		return !r.OK() && strings.Contains(r.Redis, "writes refused")
	})
}
