package bridge

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// holdAdmission admits everything until hold, then nothing (the replicas
// stopped acknowledging), and says so as a Holder.
type holdAdmission struct {
	hold atomic.Bool
	wake chan struct{}
}

func (a *holdAdmission) Admit(_ context.Context, want int) (int, error) {
	if a.hold.Load() {
		return 0, nil
	}
	return want, nil
}
func (a *holdAdmission) Unused(int)            {}
func (a *holdAdmission) Release(*Call)         {}
func (a *holdAdmission) Wake() <-chan struct{} { return a.wake }
func (a *holdAdmission) Holding() bool         { return a.hold.Load() }

// blockedClaimStore's first ClaimNext is a BLMOVE that waits until the test
// lets it return a command; Requeue reports what came back.
type blockedClaimStore struct {
	*fakeStore
	once     sync.Once
	entered  chan struct{} // closed when the first ClaimNext waits
	release  chan struct{}
	requeued chan []byte
}

func (s *blockedClaimStore) ClaimNext(ctx context.Context) ([]byte, error) {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.fakeStore.ClaimNext(ctx)
	}
	close(s.entered)
	select {
	case <-s.release:
		return []byte(`{"id":"c1","number":"5511000001"}`), nil
	case <-ctx.Done():
		return nil, nil
	}
}

func (s *blockedClaimStore) Requeue(_ context.Context, raw []byte, _, _ string) (bool, error) {
	s.requeued <- raw
	return true, nil
}

// TestClaimDuringHoldGoesBack: a command that a claim already blocked when
// a hold began (Holder) returns goes back to the front of the dial list,
// undialed, instead of waiting in memory for the replicas.
func TestClaimDuringHoldGoesBack(t *testing.T) {
	st := &blockedClaimStore{fakeStore: newFakeStore(), entered: make(chan struct{}), release: make(chan struct{}), requeued: make(chan []byte, 1)}
	d := newFakeLister()
	c := NewCell(Options{Cell: "101", Instance: "me", Threads: 4, RingTimeout: 5 * time.Second}, st, fakeConfirms{}, d, zerolog.Nop())
	adm := &holdAdmission{wake: make(chan struct{}, 1)}
	c.SetAdmissions(adm)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case <-st.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the claim loop never claimed")
	}
	adm.hold.Store(true) // the hold begins while the claim waits
	close(st.release)
	select {
	case raw := <-st.requeued:
		if string(raw) != `{"id":"c1","number":"5511000001"}` {
			t.Errorf("requeued %q", raw)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command claimed during the hold was not given back")
	}
	if n := d.originates.Load(); n != 0 {
		t.Errorf("%d originates during the hold", n)
	}
	if n := c.InFlight(); n != 0 {
		t.Errorf("%d calls in flight after the command went back", n)
	}
}
