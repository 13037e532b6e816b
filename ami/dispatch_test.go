package ami

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
)

// TestDispatcherOrder: the most recently idle worker gets the next job (a
// stack); jobs that find no idle worker are taken oldest first.
func TestDispatcherOrder(t *testing.T) {
	var d dispatcher
	a, b, c := newSlot(), newSlot(), newSlot()
	for _, s := range []*slot{a, b, c} {
		if j := d.next(s); j != nil {
			t.Fatal("a job out of nowhere")
		}
	}
	j1, j2 := newJob(nil), newJob(nil)
	if !d.offer(j1) || !d.offer(j2) {
		t.Fatal("idle workers, yet a job waits")
	}
	if got := <-c.jobs; got != j1 {
		t.Fatal("j1 did not go to the most recently idle worker")
	}
	if got := <-b.jobs; got != j2 {
		t.Fatal("j2 did not go to the next most recent")
	}
	// a leaves; now nobody is idle and jobs queue.
	if !d.leave(a) {
		t.Fatal("a was idle")
	}
	if d.leave(a) {
		t.Fatal("a left twice")
	}
	j3, j4, j5 := newJob(nil), newJob(nil), newJob(nil)
	for _, j := range []*job{j3, j4, j5} {
		if d.offer(j) {
			t.Fatal("no idle worker, yet a job was handed")
		}
	}
	if !d.withdraw(j4) || d.withdraw(j4) {
		t.Fatal("withdraw of a waiting job")
	}
	if got := d.next(a); got != j3 {
		t.Fatal("the oldest waiting job first")
	}
	if got := d.next(b); got != j5 {
		t.Fatal("then the next")
	}
	if idle, waiting := d.sizes(); idle != 0 || waiting != 0 {
		t.Fatalf("idle %d, waiting %d", idle, waiting)
	}
	// A worker that leaves after a job was handed to it finds it in its slot.
	d.next(c)
	j6 := newJob(nil)
	d.offer(j6)
	if d.leave(c) {
		t.Fatal("c left with a job handed to it")
	}
	if got := <-c.jobs; got != j6 {
		t.Fatal("the handed job is in the slot")
	}
}

// TestDispatcherLosesNoJob: workers come and go, callers give up at random;
// every job ends exactly once, done by a worker, returned by a leaving
// worker, or withdrawn by its caller — the protocol of handoff and worker.
func TestDispatcherLosesNoJob(t *testing.T) {
	var d dispatcher
	stop := make(chan struct{})
	var workers sync.WaitGroup
	var done, returned, withdrawn atomic.Int64
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				sl := newSlot()
				down := time.After(time.Duration(r.IntN(3000)) * time.Microsecond)
			session:
				for {
					j := d.next(sl)
					if j != nil {
						j.picked <- struct{}{}
					} else {
						select {
						case j = <-sl.jobs:
						case <-down:
							if !d.leave(sl) {
								(<-sl.jobs).done <- actionResult{err: errConnDown}
								returned.Add(1)
							}
							break session
						case <-stop:
							if !d.leave(sl) {
								(<-sl.jobs).done <- actionResult{err: errConnDown}
								returned.Add(1)
							}
							return
						}
					}
					j.done <- actionResult{}
					done.Add(1)
				}
			}
		}()
	}
	const callers, each = 16, 300
	var calls sync.WaitGroup
	for c := range callers {
		calls.Add(1)
		go func() {
			defer calls.Done()
			r := rand.New(rand.NewPCG(uint64(c), 2))
			for range each {
				j := newJob(nil)
				if !d.offer(j) && !waitOrWithdraw(&d, j, time.Duration(r.IntN(200))*time.Microsecond) {
					withdrawn.Add(1)
					continue
				}
				select {
				case r := <-j.done:
					_ = r
				case <-time.After(10 * time.Second):
					t.Error("a handed job never ended")
					return
				}
			}
		}()
	}
	calls.Wait()
	close(stop)
	workers.Wait()
	total := done.Load() + returned.Load() + withdrawn.Load()
	if total != callers*each {
		t.Fatalf("%d jobs ended (%d done, %d returned, %d withdrawn), want %d", total, done.Load(), returned.Load(), withdrawn.Load(), callers*each)
	}
	if idle, waiting := d.sizes(); idle != 0 || waiting != 0 {
		t.Fatalf("left behind: idle %d, waiting %d", idle, waiting)
	}
	t.Logf("%d done, %d returned by leaving workers, %d withdrawn", done.Load(), returned.Load(), withdrawn.Load())
}

// waitOrWithdraw is handoff's wait for a queued job: false when the caller
// gave up after patience and took the job back before any worker had it.
func waitOrWithdraw(d *dispatcher, j *job, patience time.Duration) bool {
	select {
	case <-j.picked:
		return true
	case <-time.After(patience):
		if d.withdraw(j) {
			return false
		}
		<-j.picked
		return true
	}
}

// TestQueuedActionsAllEnd: with one action session, Originates and Status
// queries arriving together queue for it, and every one of them ends (a
// job made without its picked channel once hung its worker for good).
func TestQueuedActionsAllEnd(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeAnswer, TalkFor: -1}}})
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			w, err := c.Originate(ctx, request(fmt.Sprintf("55%04d", i)))
			if err != nil {
				errs <- fmt.Errorf("originate %d: %w", i, err)
				return
			}
			w.Close()
		}()
		go func() {
			defer wg.Done()
			if alive, err := c.ChannelAlive(ctx, fmt.Sprintf("PJSIP/none-%d", i)); err != nil || alive {
				errs <- fmt.Errorf("status %d: alive %v, %v", i, alive, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The worker hands the last result back before it goes idle again:
	// wait for it rather than look once.
	var idle, waiting int
	deadline := time.Now().Add(30 * time.Second)
	for {
		if idle, waiting = c.dispatch.sizes(); idle == 1 && waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: %d idle workers, %d jobs waiting; want 1, 0", idle, waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
