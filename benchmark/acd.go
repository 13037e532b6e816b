package benchmark

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
)

// acdFloor is the workload of the ACD core measurement: 1,000 busy
// operators of all tiers and 100,000 calls waiting. Each round of six
// events: an answered call hangs up (its operator takes the head of the
// queue), the operator rejects it (delivered again to the same operator),
// answers it, a random waiting call hangs up (unlinked from the middle of
// the queue), and two new calls join the back. The floor's size stays
// constant. Used by ACDEvents ("dialbridge bench") and BenchmarkACDEvents.
type acdFloor struct {
	m        *acd.Machine
	opIDs    []string
	ids      []string
	state    []uint8 // per call id number: acdFree, acdWaiting, acdTaken
	opCall   []int   // id number of each operator's call
	freeList []int
	r        *rand.Rand
	now      time.Time
	k        int // operator of the current round
	i        int // events so far
}

const (
	acdOps, acdWaitingCalls = 1000, 100_000
	acdPool                 = acdOps + acdWaitingCalls + 1024
)

const (
	acdFree = iota
	acdWaiting
	acdTaken
)

func newACDFloor() (*acdFloor, error) {
	f := &acdFloor{
		opIDs:  make([]string, acdOps),
		ids:    make([]string, acdPool),
		state:  make([]uint8, acdPool),
		opCall: make([]int, acdOps),
		r:      rand.New(rand.NewPCG(1, 2)),
		now:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	cfg := make([]acd.Operator, acdOps)
	for i := range cfg {
		f.opIDs[i] = "op" + strconv.Itoa(i)
		cfg[i] = acd.Operator{ID: f.opIDs[i], Tier: acd.Tier(i % 3)}
	}
	var err error
	if f.m, err = acd.New(cfg, 10*time.Second); err != nil {
		return nil, err
	}
	for i := range f.ids {
		f.ids[i] = "c" + strconv.Itoa(i)
	}
	next := 0
	for range acdOps {
		msgs, err := f.m.Call(f.ids[next], f.now)
		if err != nil {
			return nil, err
		}
		op := msgs[1].Operator
		k, _ := strconv.Atoi(op[2:])
		if _, err := f.m.Answer(op, f.now); err != nil {
			return nil, err
		}
		f.opCall[k] = next
		f.state[next] = acdTaken
		next++
	}
	for range acdWaitingCalls {
		if _, err := f.m.Call(f.ids[next], f.now); err != nil {
			return nil, err
		}
		f.state[next] = acdWaiting
		next++
	}
	for i := next; i < acdPool; i++ {
		f.freeList = append(f.freeList, i)
	}
	return f, nil
}

// step applies the next event of the round.
func (f *acdFloor) step() error {
	m, now := f.m, f.now
	var err error
	switch f.i % 6 {
	case 0: // an answered call ends: the operator takes the head of the queue
		f.k = f.r.IntN(acdOps)
		id := f.opCall[f.k]
		var msgs []acd.Message
		if msgs, err = m.Hangup(f.ids[id], now); err != nil {
			return err
		}
		f.state[id] = acdFree
		f.freeList = append(f.freeList, id)
		head, _ := strconv.Atoi(msgs[len(msgs)-1].Call[1:])
		f.state[head] = acdTaken
		f.opCall[f.k] = head
	case 1:
		_, err = m.Reject(f.opIDs[f.k], now)
	case 2:
		_, err = m.Answer(f.opIDs[f.k], now)
	case 3: // a waiting call hangs up
		for {
			id := f.r.IntN(acdPool)
			if f.state[id] == acdWaiting {
				_, err = m.Hangup(f.ids[id], now)
				f.state[id] = acdFree
				f.freeList = append(f.freeList, id)
				break
			}
		}
	default: // a new call joins the back
		id := f.freeList[len(f.freeList)-1]
		f.freeList = f.freeList[:len(f.freeList)-1]
		_, err = m.Call(f.ids[id], now)
		f.state[id] = acdWaiting
	}
	f.i++
	return err
}

// checkSize says whether the floor kept its size (a round may stop half way).
func (f *acdFloor) checkSize() error {
	if w := f.m.Waiting(); w < acdWaitingCalls-2 || w > acdWaitingCalls {
		return fmt.Errorf("queue drifted to %d", w)
	}
	return nil
}

// ACDEvents measures events/s of the queue manager's state machine on the
// acdFloor workload for about d.
func ACDEvents(d time.Duration) (float64, error) {
	f, err := newACDFloor()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var elapsed time.Duration
	for {
		if f.i%6000 == 0 {
			if elapsed = time.Since(start); elapsed >= d {
				break
			}
		}
		if err := f.step(); err != nil {
			return 0, err
		}
	}
	if err := f.checkSize(); err != nil {
		return 0, err
	}
	return float64(f.i) / elapsed.Seconds(), nil
}

// ACDTCP measures commands/s through the queue manager's TCP server (the
// "queue serve" server, in memory, 1,000 operators) with clients
// connections for about d. Each client sends windows of "call X" /
// "hangup X" pairs, then a "status" of an unknown call whose one error
// line marks the end of the window's replies. Only call and hangup
// commands are counted.
func ACDTCP(ctx context.Context, clients int, d time.Duration) (float64, error) {
	ops := make([]acd.Operator, 1000)
	for i := range ops {
		ops[i] = acd.Operator{ID: "op" + strconv.Itoa(i), Tier: acd.Tier(i % 3)}
	}
	m, err := acd.New(ops, 10*time.Second)
	if err != nil {
		return 0, err
	}
	e := acdserver.NewEngine(m, acdserver.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &acdserver.Server{Engine: e, MaxClients: clients + 10}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); e.Run(ctx) }()         //nolint:errcheck // ends with ctx
	go func() { defer bg.Done(); srv.Serve(ctx, ln) }() //nolint:errcheck // ends with ctx
	defer bg.Wait()
	defer cancel()

	const window = 32 // call/hangup pairs per window
	var total atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := acdClient(ln.Addr().String(), c, window, deadline, &total); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total.Load()) / elapsed.Seconds(), nil
}

func acdClient(addr string, c, window int, deadline time.Time, total *atomic.Int64) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	sentinel := []byte(`unknown call zz` + strconv.Itoa(c))
	statusReq := acdserver.EncodeRequest("status", "zz"+strconv.Itoa(c))
	seq := 0
	for time.Now().Before(deadline) {
		for range window {
			id := "t" + strconv.Itoa(c) + "-" + strconv.Itoa(seq)
			seq++
			bw.Write(acdserver.EncodeRequest("call", id))   //nolint:errcheck // flushed below
			bw.Write(acdserver.EncodeRequest("hangup", id)) //nolint:errcheck // flushed below
		}
		bw.Write(statusReq) //nolint:errcheck // flushed below
		if err := bw.Flush(); err != nil {
			return err
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck // a timeout shows as a read error
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return fmt.Errorf("acd client %d: %w", c, err)
			}
			if bytes.Contains(line, sentinel) {
				break
			}
		}
		total.Add(int64(2 * window))
	}
	return nil
}
