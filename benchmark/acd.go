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

// ACDEvents measures events/s of the queue manager's state machine for
// about d: the workload of monitor/acd's BenchmarkEvents (1,000 busy
// operators of all tiers, 100,000 calls waiting; rounds of six events: an
// answered call hangs up and its operator takes the head of the queue, the
// operator rejects it, answers it, a random waiting call hangs up, two new
// calls join the back).
func ACDEvents(d time.Duration) (float64, error) {
	const nOps, nWaiting = 1000, 100_000
	cfg := make([]acd.Operator, nOps)
	opIDs := make([]string, nOps)
	for i := range cfg {
		opIDs[i] = "op" + strconv.Itoa(i)
		cfg[i] = acd.Operator{ID: opIDs[i], Tier: acd.Tier(i % 3)}
	}
	m, err := acd.New(cfg, 10*time.Second)
	if err != nil {
		return 0, err
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
	opCall := make([]int, nOps)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	next := 0
	for range nOps {
		msgs, err := m.Call(ids[next], now)
		if err != nil {
			return 0, err
		}
		op := msgs[1].Operator
		k, _ := strconv.Atoi(op[2:])
		if _, err := m.Answer(op, now); err != nil {
			return 0, err
		}
		opCall[k] = next
		state[next] = taken
		next++
	}
	for range nWaiting {
		if _, err := m.Call(ids[next], now); err != nil {
			return 0, err
		}
		state[next] = waiting
		next++
	}
	var freeList []int
	for i := next; i < pool; i++ {
		freeList = append(freeList, i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	k := 0
	events := 0
	start := time.Now()
	var elapsed time.Duration
	for i := 0; ; i++ {
		if i%6 == 0 && i%6000 == 0 {
			if elapsed = time.Since(start); elapsed >= d {
				break
			}
		}
		var err error
		switch i % 6 {
		case 0:
			k = r.IntN(nOps)
			id := opCall[k]
			var msgs []acd.Message
			msgs, err = m.Hangup(ids[id], now)
			if err != nil {
				return 0, err
			}
			state[id] = free
			freeList = append(freeList, id)
			head, _ := strconv.Atoi(msgs[len(msgs)-1].Call[1:])
			state[head] = taken
			opCall[k] = head
		case 1:
			_, err = m.Reject(opIDs[k], now)
		case 2:
			_, err = m.Answer(opIDs[k], now)
		case 3:
			for {
				id := r.IntN(pool)
				if state[id] == waiting {
					_, err = m.Hangup(ids[id], now)
					state[id] = free
					freeList = append(freeList, id)
					break
				}
			}
		default:
			id := freeList[len(freeList)-1]
			freeList = freeList[:len(freeList)-1]
			_, err = m.Call(ids[id], now)
			state[id] = waiting
		}
		if err != nil {
			return 0, err
		}
		events++
	}
	return float64(events) / elapsed.Seconds(), nil
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
