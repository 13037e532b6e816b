package redisq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The gate's tests run on miniredis with its clock left alone (TIME is the
// wall clock): the gate sleeps for real.

func trGate(t *testing.T, rdb *redis.Client, lim TrunkLimits) (*TrunkGate, context.CancelFunc) {
	t.Helper()
	l, err := NewTrunkLimiter(rdb, rqPrefix, "g", lim)
	if err != nil {
		t.Fatal(err)
	}
	g := NewTrunkGate(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return g, cancel
}

// Every call that queues gets its grant, on the limiter's schedule.
func TestTrunkGateGrantsEveryoneAtTheRate(t *testing.T) {
	_, rdb := rqRedis(t)
	g, _ := trGate(t, rdb, TrunkLimits{CPS: 50, MaxChannels: 100})
	ctx := rqCtx(t)
	var (
		mu  sync.Mutex
		ats []time.Time
		wg  sync.WaitGroup
	)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gr, err := g.Acquire(ctx, fmt.Sprint("c", i))
			if err != nil || !gr.OK {
				t.Errorf("%+v %v", gr, err)
				return
			}
			mu.Lock()
			ats = append(ats, gr.At)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ats); i++ {
		if gap := ats[i].Sub(ats[i-1]); gap < 20*time.Millisecond {
			t.Fatalf("grants %v apart at cps 50", gap)
		}
	}
	if u, _ := g.Limiter().Usage(ctx); u.Channels != 20 || u.NoChannel != 0 {
		t.Fatalf("usage %+v", u)
	}
	if g.Queued() != 0 {
		t.Fatalf("%d queued", g.Queued())
	}
}

// A full trunk's waiter is woken by a local Release, without polling.
func TestTrunkGateWokenByRelease(t *testing.T) {
	_, rdb := rqRedis(t)
	g, _ := trGate(t, rdb, TrunkLimits{MaxChannels: 1})
	g.SetChannelPoll(time.Hour) // only the release can wake it
	ctx := rqCtx(t)
	if gr, err := g.Acquire(ctx, "a"); err != nil || !gr.OK {
		t.Fatal(gr, err)
	}
	got := make(chan error, 1)
	go func() {
		gr, err := g.Acquire(ctx, "b")
		if err == nil && !gr.OK {
			err = fmt.Errorf("%+v", gr)
		}
		got <- err
	}()
	rqEventually(t, 10*time.Second, "b refused for no channel", func() bool {
		u, _ := g.Limiter().Usage(ctx)
		return u.NoChannel > 0
	})
	if err := g.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the release did not wake the waiter")
	}
}

// Another daemon's release is noticed by polling the full trunk.
func TestTrunkGateSeesOtherDaemonsRelease(t *testing.T) {
	m, rdb := rqRedis(t)
	g1, _ := trGate(t, rdb, TrunkLimits{MaxChannels: 1})
	rdb2 := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = rdb2.Close() })
	g2, _ := trGate(t, rdb2, TrunkLimits{MaxChannels: 1})
	ctx := rqCtx(t)
	if gr, err := g1.Acquire(ctx, "a"); err != nil || !gr.OK {
		t.Fatal(gr, err)
	}
	got := make(chan error, 1)
	go func() { _, err := g2.Acquire(ctx, "b"); got <- err }()
	rqEventually(t, 10*time.Second, "b waiting", func() bool { return g2.Queued() == 1 })
	if err := g1.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other daemon's release went unseen")
	}
}

// A caller whose budget ends while waiting leaves with nothing held, and the
// calls behind it are served.
func TestTrunkGateCallerLeaves(t *testing.T) {
	_, rdb := rqRedis(t)
	g, _ := trGate(t, rdb, TrunkLimits{CPS: 1, MaxChannels: 5})
	ctx := rqCtx(t)
	if gr, err := g.Acquire(ctx, "a"); err != nil || !gr.OK {
		t.Fatal(gr, err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := g.Acquire(short, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if gr, err := g.Acquire(ctx, "c"); err != nil || !gr.OK {
		t.Fatal(gr, err)
	}
	// b never got a slot: a, c hold the only two.
	u, err := g.Limiter().Usage(ctx)
	if err != nil || u.Channels != 2 {
		t.Fatalf("usage %+v %v", u, err)
	}
	if lost, _ := g.Limiter().Renew(ctx, []string{"a", "b", "c"}); !slices.Equal(lost, []string{"b"}) {
		t.Fatalf("lost %v", lost)
	}
}

func TestTrunkGateStopped(t *testing.T) {
	_, rdb := rqRedis(t)
	g, stop := trGate(t, rdb, TrunkLimits{MaxChannels: 1})
	ctx := rqCtx(t)
	if gr, err := g.Acquire(ctx, "a"); err != nil || !gr.OK {
		t.Fatal(gr, err)
	}
	got := make(chan error, 1)
	go func() { _, err := g.Acquire(ctx, "b"); got <- err }()
	rqEventually(t, 10*time.Second, "b waiting", func() bool { return g.Queued() == 1 })
	stop()
	select {
	case err := <-got:
		if !errors.Is(err, ErrTrunkGateStopped) {
			t.Fatalf("want ErrTrunkGateStopped, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter outlived the gate")
	}
	if _, err := g.Acquire(ctx, "c"); !errors.Is(err, ErrTrunkGateStopped) {
		t.Fatalf("after stop: %v", err)
	}
}

// The gate knows what the daemon holds: its heartbeat renews it all, and a
// lease Redis lost is reported once.
func TestTrunkGateRenewsWhatItHolds(t *testing.T) {
	m, rdb := rqRedis(t)
	g, _ := trGate(t, rdb, TrunkLimits{MaxChannels: 10})
	ctx := rqCtx(t)
	for _, lease := range []string{"a", "b", "c"} {
		if gr, err := g.Acquire(ctx, lease); err != nil || !gr.OK {
			t.Fatal(gr, err)
		}
	}
	if err := g.Adopt(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	if err := g.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if g.Held() != 3 {
		t.Fatalf("held %d", g.Held())
	}
	before, _ := m.ZScore(g.Limiter().Keys().Leases(), "a")
	rqEventually(t, 10*time.Second, "Redis's clock to move", func() bool {
		lost, err := g.Renew(ctx)
		if err != nil || len(lost) != 0 {
			t.Fatalf("lost %v, %v", lost, err)
		}
		after, _ := m.ZScore(g.Limiter().Keys().Leases(), "a")
		return after > before
	})
	// Redis loses c (as after a long cut-off): reported once, then forgotten.
	if err := g.Limiter().Release(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if lost, err := g.Renew(ctx); err != nil || !slices.Equal(lost, []string{"c"}) {
		t.Fatalf("lost %v, %v", lost, err)
	}
	if lost, err := g.Renew(ctx); err != nil || len(lost) != 0 || g.Held() != 2 {
		t.Fatalf("second renewal: lost %v, %v, held %d", lost, err, g.Held())
	}
}
