package acd

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// BenchmarkEvents measures events per second on a floor of 1,000 busy
// operators (all three tiers) with 100,000 calls waiting. Each round of six
// events: an answered call hangs up (the operator takes the head of the
// queue), the operator rejects it (delivered again to the same operator),
// answers it, a random waiting call hangs up (unlinked from the middle of
// the queue), and two new calls join the back. The floor's size stays
// constant.
func BenchmarkEvents(b *testing.B) {
	const nOps, nWaiting = 1000, 100_000
	cfg := make([]Operator, nOps)
	opIDs := make([]string, nOps)
	for i := range cfg {
		opIDs[i] = "op" + strconv.Itoa(i)
		cfg[i] = Operator{ID: opIDs[i], Tier: Tier(i % 3)}
	}
	m, err := New(cfg, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	const pool = nOps + nWaiting + 1024
	ids := make([]string, pool)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
	}
	const (
		free = iota
		waiting
		taken
	)
	state := make([]uint8, pool)
	opCall := make([]int, nOps) // id number of each operator's call
	now := t0
	next := 0
	for range nOps {
		msgs, err := m.Call(ids[next], now)
		if err != nil {
			b.Fatal(err)
		}
		op := msgs[1].Operator
		k, _ := strconv.Atoi(op[2:])
		if _, err := m.Answer(op, now); err != nil {
			b.Fatal(err)
		}
		opCall[k] = next
		state[next] = taken
		next++
	}
	for range nWaiting {
		if _, err := m.Call(ids[next], now); err != nil {
			b.Fatal(err)
		}
		state[next] = waiting
		next++
	}
	var freeList []int
	for i := next; i < pool; i++ {
		freeList = append(freeList, i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	events := 0
	k := 0
	for i := 0; b.Loop(); i++ {
		var err error
		switch i % 6 {
		case 0: // answered call ends: the operator takes the head of the queue
			k = r.IntN(nOps)
			id := opCall[k]
			var msgs []Message
			msgs, err = m.Hangup(ids[id], now)
			state[id] = free
			freeList = append(freeList, id)
			head, _ := strconv.Atoi(msgs[len(msgs)-1].Call[1:])
			state[head] = taken
			opCall[k] = head
		case 1:
			_, err = m.Reject(opIDs[k], now)
		case 2:
			_, err = m.Answer(opIDs[k], now)
		case 3: // a waiting call hangs up
			for {
				id := r.IntN(pool)
				if state[id] == waiting {
					_, err = m.Hangup(ids[id], now)
					state[id] = free
					freeList = append(freeList, id)
					break
				}
			}
		default: // a new call joins the back
			id := freeList[len(freeList)-1]
			freeList = freeList[:len(freeList)-1]
			_, err = m.Call(ids[id], now)
			state[id] = waiting
		}
		if err != nil {
			b.Fatal(err)
		}
		events++
	}
	if w := m.Waiting(); w < nWaiting-2 || w > nWaiting {
		b.Fatalf("queue drifted to %d", w) // a round may stop half way
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
