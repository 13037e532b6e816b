// Package multcallsim plays Multcall's side of the Redis protocol: it pushes
// dial commands, answers each ACK with a confirmation carrying a call code,
// and collects results. It is the Multcall of the tests, the demo and the
// benchmarks; it speaks only the wire contract (docs/PROTOCOL.md), so it
// exercises dialbridge exactly as the real dialer does.
package multcallsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// Options tune the simulated Multcall.
type Options struct {
	// ConfirmDelay is how long Multcall takes to confirm an ACK.
	ConfirmDelay time.Duration
	// Ignore, when it returns true for an id, leaves that ACK unconfirmed
	// (the call should end ack_timeout).
	Ignore func(id string) bool
	// CallCode returns the call code for an id; default a sequence number.
	CallCode func(id string) string
}

// Sim is one cell's simulated Multcall.
type Sim struct {
	rdb  redis.UniversalClient
	keys redisq.Keys
	opt  Options
	seq  atomic.Int64

	mu      sync.Mutex
	acked   map[string]int // ACKs seen per id
	acks    atomic.Int64
	confirm atomic.Int64
}

// New builds a simulated Multcall for cell.
func New(rdb redis.UniversalClient, prefix, cell string, opt Options) *Sim {
	return &Sim{rdb: rdb, keys: redisq.NewKeys(prefix, cell), opt: opt, acked: map[string]int{}}
}

// Keys are the cell's keys.
func (s *Sim) Keys() redisq.Keys { return s.keys }

// Command renders a dial command.
func Command(id, number string) []byte {
	b, _ := json.Marshal(map[string]string{"id": id, "number": number})
	return b
}

// Push LPUSHes raw commands onto the dial list, in order, in one round trip.
func (s *Sim) Push(ctx context.Context, cmds ...[]byte) error {
	if len(cmds) == 0 {
		return nil
	}
	args := make([]any, len(cmds))
	for i, c := range cmds {
		args[i] = c
	}
	if err := s.rdb.LPush(ctx, s.keys.Dial(), args...).Err(); err != nil {
		return fmt.Errorf("push %d commands: %w", len(cmds), err)
	}
	return nil
}

// ACKs is the number of ACKs read so far; Confirmed the number confirmed.
func (s *Sim) ACKs() int64      { return s.acks.Load() }
func (s *Sim) Confirmed() int64 { return s.confirm.Load() }

// ACKCount is how many ACKs were seen for id (more than one is a bug).
func (s *Sim) ACKCount(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[id]
}

// RunConfirmer answers ACKs until ctx ends: BRPOP the ack list, then LPUSH a
// confirmation (after ConfirmDelay, without holding up the next ACK).
func (s *Sim) RunConfirmer(ctx context.Context) error {
	for {
		res, err := s.rdb.BRPop(ctx, time.Second, s.keys.Ack()).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Redis down: wait and retry, like a real worker.
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		var ack bridge.Ack
		if err := json.Unmarshal([]byte(res[1]), &ack); err != nil {
			return fmt.Errorf("bad ACK %q: %w", res[1], err)
		}
		s.acks.Add(1)
		s.mu.Lock()
		s.acked[ack.ID]++
		s.mu.Unlock()
		if s.opt.Ignore != nil && s.opt.Ignore(ack.ID) {
			continue
		}
		code := strconv.FormatInt(900000+s.seq.Add(1), 10)
		if s.opt.CallCode != nil {
			code = s.opt.CallCode(ack.ID)
		}
		msg, _ := json.Marshal(map[string]string{"id": ack.ID, "call_code": code})
		send := func() {
			// Like a real worker, push again while Redis refuses (a
			// Cluster or Sentinel failover: CLUSTERDOWN, connection
			// refused), for up to 30 s: a confirmation dropped here
			// would end the call ack_timeout through no fault of the
			// daemon.
			deadline := time.Now().Add(30 * time.Second)
			for {
				err := s.rdb.LPush(context.WithoutCancel(ctx), s.keys.Confirm(), msg).Err()
				if err == nil {
					s.confirm.Add(1)
					return
				}
				if time.Now().After(deadline) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if s.opt.ConfirmDelay > 0 {
			time.AfterFunc(s.opt.ConfirmDelay, send)
		} else {
			send()
		}
	}
}

// CollectResults pops results until n were read or ctx ends, and returns
// them in arrival order.
func (s *Sim) CollectResults(ctx context.Context, n int) ([]bridge.Result, error) {
	out := make([]bridge.Result, 0, n)
	for len(out) < n {
		res, err := s.rdb.BRPop(ctx, time.Second, s.keys.Results()).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("after %d of %d results: %w", len(out), n, err)
		}
		var r bridge.Result
		if err := json.Unmarshal([]byte(res[1]), &r); err != nil {
			return out, fmt.Errorf("bad result %q: %w", res[1], err)
		}
		out = append(out, r)
	}
	return out, nil
}
