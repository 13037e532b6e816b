package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Fakes for the recovery tests: a store that is also a Recovery, and a
// dialer that is also a ChannelLister, all in memory.

type fakeStore struct {
	mu       sync.Mutex
	orphans  []Orphan
	hashes   map[string]map[string]string
	alive    map[string]bool
	claimed  [][]byte
	results  []*Result
	answered []*Call
	resultC  chan *Result
}

func newFakeStore() *fakeStore {
	return &fakeStore{hashes: map[string]map[string]string{}, alive: map[string]bool{}, resultC: make(chan *Result, 100)}
}

// ClaimNext finds nothing, after a short block like BLMOVE's.
func (s *fakeStore) ClaimNext(ctx context.Context) ([]byte, error) {
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
	return nil, nil
}
func (s *fakeStore) Begin(context.Context, *Call) (bool, error) { return false, errors.New("not used") }
func (s *fakeStore) MarkDialing(context.Context, *Call) error   { return errors.New("must not dial") }
func (s *fakeStore) MarkAnswered(_ context.Context, c *Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *c
	s.answered = append(s.answered, &cp)
	return nil
}

func (s *fakeStore) Finish(_ context.Context, raw []byte, r *Result) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.claimed {
		if string(c) == string(raw) {
			s.claimed = append(s.claimed[:i], s.claimed[i+1:]...)
			s.results = append(s.results, r)
			s.resultC <- r
			return true, nil
		}
	}
	return false, nil
}

func (s *fakeStore) Bury(context.Context, []byte, error, *Result) (bool, error) {
	return false, errors.New("not used")
}
func (s *fakeStore) Count(context.Context, string, int64) error { return nil }

func (s *fakeStore) AdoptOrphans(context.Context) ([]Orphan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.orphans
	s.orphans = nil
	for _, o := range out {
		s.claimed = append(s.claimed, o.Raw)
	}
	return out, nil
}

func (s *fakeStore) CallState(_ context.Context, id string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hashes[id], nil
}

func (s *fakeStore) Alive(_ context.Context, inst string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive[inst], nil
}

func (s *fakeStore) ClaimedList(context.Context) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.claimed...), nil
}

func (s *fakeStore) Requeue(context.Context, []byte, string, string) (bool, error) {
	return false, errors.New("not used")
}

type fakeConfirms struct{}

func (fakeConfirms) Expect(string) (<-chan Confirmation, func()) {
	return make(chan Confirmation), func() {}
}

// fakeWatch is a Watch fed by the test.
type fakeWatch struct {
	mu       sync.Mutex
	events   []Event
	sig      chan struct{}
	onEvents func()
	closed   bool
}

func (w *fakeWatch) C() <-chan struct{} { return w.sig }
func (w *fakeWatch) Drain() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events
	w.events = nil
	return ev
}

func (w *fakeWatch) Notify(f func()) func() {
	w.mu.Lock()
	if len(w.events) > 0 {
		w.mu.Unlock()
		go f()
		return func() {}
	}
	w.onEvents = f
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.onEvents = nil
		w.mu.Unlock()
	}
}

func (w *fakeWatch) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

func (w *fakeWatch) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

func (w *fakeWatch) deliver(evs ...Event) {
	w.mu.Lock()
	for i := range evs {
		if evs[i].At.IsZero() {
			evs[i].At = time.Now()
		}
	}
	w.events = append(w.events, evs...)
	f := w.onEvents
	w.onEvents = nil
	w.mu.Unlock()
	select {
	case w.sig <- struct{}{}:
	default:
	}
	if f != nil {
		f()
	}
}

type fakeLister struct {
	mu         sync.Mutex
	watches    map[string]*fakeWatch // by ChannelID
	actionIDs  map[string]string     // ChannelID → ActionID watched
	channels   []LiveChannel
	listErr    error
	originates atomic.Int64
	listed     atomic.Int64
}

func newFakeLister() *fakeLister {
	return &fakeLister{watches: map[string]*fakeWatch{}, actionIDs: map[string]string{}}
}

func (d *fakeLister) WaitReady(context.Context) error { return nil }
func (d *fakeLister) Ready() bool                     { return true }
func (d *fakeLister) Originate(context.Context, OriginateRequest) (Watch, error) {
	d.originates.Add(1)
	return nil, errors.New("must not dial")
}

func (d *fakeLister) WatchCall(actionID, channelID string) (Watch, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &fakeWatch{sig: make(chan struct{}, 1)}
	d.watches[channelID] = w
	d.actionIDs[channelID] = actionID
	return w, nil
}

func (d *fakeLister) Channels(context.Context) ([]LiveChannel, error) {
	d.listed.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.channels, d.listErr
}

func (d *fakeLister) watch(channelID string) *fakeWatch {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.watches[channelID]
}

// fakeHook records the adopted calls and their releases.
type fakeHook struct {
	adopted, released atomic.Int64
}

func (h *fakeHook) Adopted(context.Context, *Call) func() {
	h.adopted.Add(1)
	return func() { h.released.Add(1) }
}
