package redisq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/retry"
)

// Durable makes a cell's dialing decision survive a failover (contract
// section 2, Durability; redis.wait_replicas N ≥ 1). Replication is
// asynchronous: a master killed with our last writes can hand a replica
// that never saw them to the next master, which then does not know a call
// was claimed, dialed or settled. So the steps that matter are followed by
// WAIT N timeout: Begin (claim, call hash, ACK), MarkDialing (the
// "originating" state — the Originate is written only once N replicas hold
// it) and Finish/Bury (the result — kept in memory until N replicas hold
// it, and pushed again, identical, if a failover lost it).
//
// WAIT counts the replicas that acknowledged the writes of the connection
// it is sent on, so it must follow the writes on the same connection: a
// pooled round-robin connection would WAIT for someone else's writes. The
// steps reach Redis through the queue's batcher (batch.go), which sends at
// most maxPipelines pipelines at once; a durable pipeline goes on a
// dedicated connection (go-redis Conn: on a Cluster, one of the master that
// owns the cell's slot) and ends with WAIT, so one WAIT covers every step
// riding in it. The pool therefore holds at most maxPipelines (+1 for the
// checker) idle connections: a WAIT that takes its time holds back only the
// steps of its own pipeline, never the whole cell behind one connection.
//
// Every durable pipeline also increments stats' durable_waits before its
// WAIT: a step that wrote nothing (a retry finding its write already done
// by an earlier connection, a result check) would otherwise WAIT only for
// the connection's older writes. Replication is one ordered stream, so a
// replica that has the increment has everything the master had before it.
//
// While the last WAIT failed, Admit claims nothing (it is the cell's
// replica Admission); Run probes every probeEvery until N replicas answer
// again, and checks the results still held.
type Durable struct {
	rdb      redis.UniversalClient
	keys     Keys
	replicas int
	timeout  time.Duration
	log      zerolog.Logger

	idle chan *redis.Conn

	health *retry.Health
	wake   chan struct{}
	// waited is when the last WAIT was answered (UnixNano).
	waited atomic.Int64

	mu   sync.Mutex
	held map[*bridge.Result]*heldResult
	// settle is the step that pushes a held result again (the queue's
	// finish or bury without re-holding); set by the Queue it serves.
	queue *Queue
}

// heldResult is a result pushed on the master and not yet acknowledged
// by the replicas.
type heldResult struct {
	raw   []byte
	r     *bridge.Result
	bury  error // non-nil: settled by Bury with this cause
	since time.Time
}

// Durable timings.
const (
	// probeEvery is how often Run asks the replicas again while they do not
	// acknowledge, and checks the results held.
	probeEvery = 200 * time.Millisecond
	// idleProbeEvery is how often Run asks the replicas while no step
	// did (a write of the durable_waits counter and a WAIT).
	idleProbeEvery = time.Second
	// heldParallel bounds the checks of held results in flight at once;
	// the batcher packs them into a few pipelines.
	heldParallel = 64
)

var _ bridge.Admission = (*Durable)(nil)

// NewDurable returns the durability of one cell: WAIT replicas timeout
// after its steps. It claims nothing until the first probe (Run) found the
// replicas. Pass it to NewQueue with WithDurable.
func NewDurable(rdb redis.UniversalClient, keys Keys, replicas int, timeout time.Duration, log zerolog.Logger) *Durable {
	d := &Durable{
		rdb: rdb, keys: keys, replicas: replicas, timeout: timeout,
		log:  log.With().Str("component", "durable").Logger(),
		idle: make(chan *redis.Conn, maxPipelines+1),
		wake: make(chan struct{}, 1),
		held: make(map[*bridge.Result]*heldResult),
	}
	d.health = retry.NewHealth("redis replicas", d.log)
	d.health.Down(errors.New("replicas not checked yet"))
	return d
}

// WithDurable makes the queue's Begin, MarkDialing, Finish and Bury
// durable (see Durable). d must serve this queue only.
func WithDurable(d *Durable) QueueOption {
	return func(q *Queue) {
		if d != nil {
			q.batch.dur = d
			q.dur = d
			d.queue = q
		}
	}
}

// Err says why the cell claims nothing (nil when the last WAIT reached
// the replicas): for /healthz, the heartbeat and the monitor.
func (d *Durable) Err() error { return d.health.Err() }

// Held is the number of results pushed and not yet acknowledged.
func (d *Durable) Held() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held)
}

// Admit implements bridge.Admission: everything while the replicas
// acknowledge, nothing while they do not.
func (d *Durable) Admit(_ context.Context, want int) (int, error) {
	if d.health.IsDown() {
		return 0, nil
	}
	return want, nil
}

// Holding implements bridge.Holder: while the replicas do not
// acknowledge, a command a blocking claim returned goes back to dial.
func (d *Durable) Holding() bool { return d.health.IsDown() }

// Unused implements bridge.Admission (nothing to give back).
func (d *Durable) Unused(int) {}

// Release implements bridge.Admission (nothing held per call).
func (d *Durable) Release(*bridge.Call) {}

// Wake implements bridge.Admission: signalled when the replicas answer
// again.
func (d *Durable) Wake() <-chan struct{} { return d.wake }

func (d *Durable) lastWait() time.Time { return time.Unix(0, d.waited.Load()) }

// up and down record the outcome of a WAIT.
func (d *Durable) up() {
	was := d.health.IsDown()
	d.health.Up()
	if was {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

func (d *Durable) down(err error) { d.health.Down(err) }

// notDurable is the error of a WAIT that fell short.
func (d *Durable) notDurable(got int64) error {
	return fmt.Errorf("%w (WAIT %d: %d acknowledged within %s)", bridge.ErrNotDurable, d.replicas, got, d.timeout)
}

// Run probes the replicas at once and then, while they do not acknowledge
// or results are held, every probeEvery (idle: every idleProbeEvery); it
// checks the held results each time. It returns when ctx ends, after one last check of the held results
// (bounded by a few seconds), and closes its connections.
func (d *Durable) Run(ctx context.Context) error {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	defer d.closeIdle()
	for {
		// Idle, no step WAITs: a probe every idleProbeEvery notices
		// replicas that left before a command has to find out.
		if d.health.IsDown() || d.Held() > 0 || time.Since(d.lastWait()) >= idleProbeEvery {
			d.check(ctx)
		}
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			d.check(last)
			cancel()
			if n := d.Held(); n > 0 {
				d.log.Warn().Int("results", n).Msg("stopping with results no replica acknowledged yet: they are on the master only")
			}
			return nil
		case <-t.C:
		}
	}
}

// check pushes every held result again where a failover lost it (the
// settle step is idempotent: it changes nothing where the result is
// there) and WAITs; a result is forgotten once acknowledged. With no
// results held it is a bare probe.
func (d *Durable) check(ctx context.Context) {
	d.mu.Lock()
	held := make([]*heldResult, 0, len(d.held))
	for _, h := range d.held {
		held = append(held, h)
	}
	d.mu.Unlock()
	if len(held) == 0 {
		if _, err := d.send(ctx, nil); err != nil && ctx.Err() == nil {
			d.down(err)
		}
		return
	}
	sem := make(chan struct{}, heldParallel)
	var wg sync.WaitGroup
	for _, h := range held {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.recheck(ctx, h)
		}()
	}
	wg.Wait()
}

func (d *Durable) recheck(ctx context.Context, h *heldResult) {
	var settled bool
	var werr, err error
	if h.bury != nil {
		settled, werr, err = d.queue.bury(ctx, h.raw, h.bury, h.r)
	} else {
		settled, werr, err = d.queue.finish(ctx, h.raw, h.r, false)
	}
	if err == nil && settled {
		// Our first push was on the master only, and the master that
		// followed it never had it: the same result, pushed again (and
		// held until the replicas have this copy).
		d.log.Warn().Str("id", h.r.ID).Str("status", string(h.r.Status)).
			Dur("held_for", time.Since(h.since)).Msg("result lost in a failover: pushed again from memory")
		if err := d.queue.Count(ctx, "results_repushed", 1); err != nil {
			d.log.Debug().Err(err).Msg("counter not updated")
		}
	}
	if err != nil || werr != nil {
		return // still held; the step recorded the outage
	}
	d.mu.Lock()
	delete(d.held, h.r)
	d.mu.Unlock()
}

// hold keeps a result that no replica acknowledged yet.
func (d *Durable) hold(raw []byte, r *bridge.Result, buryCause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.held[r]; !ok {
		d.held[r] = &heldResult{raw: raw, r: r, bury: buryCause, since: time.Now()}
	}
}

// send runs batch on a dedicated connection followed by WAIT (see
// Durable). The error is about Redis (the steps' replies carry their own);
// werr is the WAIT's shortfall, nil when the replicas acknowledged, and
// is also recorded for the admission.
func (d *Durable) send(ctx context.Context, batch []*scriptReq) (werr error, err error) {
	conn, err := d.conn(ctx)
	if err != nil {
		d.failAll(batch, err)
		return nil, err
	}
	pipe := conn.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, r := range batch {
		if rerr := r.ctx.Err(); rerr != nil {
			cmd := redis.NewCmd(r.ctx)
			cmd.SetErr(rerr)
			cmds[i] = cmd
			continue
		}
		cmds[i] = r.script.EvalSha(ctx, pipe, r.keys, r.args...)
	}
	mark := pipe.HIncrBy(ctx, d.keys.Stats(), "durable_waits", 1)
	// WAIT is not in Pipeliner; its timeout stays under the client's
	// ReadTimeout (config bounds redis.wait_timeout).
	wait := pipe.Do(ctx, "WAIT", d.replicas, d.timeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	broken := connBroken(mark.Err())
	for i, r := range batch {
		if cerr := cmds[i].Err(); cerr != nil && strings.HasPrefix(cerr.Error(), "NOSCRIPT") {
			// Redis lost its script cache (a restart, a new master): EVAL
			// loads it, on the same connection, and WAIT again below.
			cmds[i] = r.script.Eval(ctx, conn, r.keys, r.args...)
			wait = conn.Do(ctx, "WAIT", d.replicas, d.timeout.Milliseconds())
		}
		broken = broken || connBroken(cmds[i].Err())
	}
	d.put(conn, broken || connBroken(wait.Err()))

	got, werr := wait.Int64()
	d.waited.Store(time.Now().UnixNano())
	switch {
	case werr != nil:
		werr = fmt.Errorf("%w (WAIT %d: %v)", bridge.ErrNotDurable, d.replicas, werr)
	case got < int64(d.replicas):
		werr = d.notDurable(got)
	}
	if werr != nil {
		d.down(werr)
	} else {
		d.up()
	}
	for i, r := range batch {
		r.cmd = cmds[i]
		r.waitErr = werr
		close(r.done)
	}
	return werr, mark.Err()
}

// failAll ends every step of batch with err.
func (d *Durable) failAll(batch []*scriptReq, err error) {
	for _, r := range batch {
		cmd := redis.NewCmd(r.ctx)
		cmd.SetErr(err)
		r.cmd = cmd
		close(r.done)
	}
}

// conn takes an idle dedicated connection or opens one to the master that
// owns the cell's keys.
func (d *Durable) conn(ctx context.Context) (*redis.Conn, error) {
	select {
	case c := <-d.idle:
		return c, nil
	default:
	}
	switch c := d.rdb.(type) {
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, d.keys.Stats())
		if err != nil {
			return nil, fmt.Errorf("master of %s: %w", d.keys.Stats(), err)
		}
		return m.Conn(), nil
	case *redis.Client:
		// Plain, or Sentinel's failover client: its connections go to
		// the master of the moment.
		return c.Conn(), nil
	}
	return nil, fmt.Errorf("redis client %T has no dedicated connections for WAIT", d.rdb)
}

// put gives a connection back, or closes it when it is broken or to a
// node that no longer owns the cell (the next one goes to the new owner).
func (d *Durable) put(c *redis.Conn, broken bool) {
	if broken {
		_ = c.Close()
		if cc, ok := d.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(context.Background())
		}
		return
	}
	select {
	case d.idle <- c:
	default:
		_ = c.Close()
	}
}

func (d *Durable) closeIdle() {
	for {
		select {
		case c := <-d.idle:
			_ = c.Close()
		default:
			return
		}
	}
}

// connBroken: the connection must not be used again — a network error, or
// a node that is not (or no longer) the master of the cell's slot.
func connBroken(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return true // not a reply: the connection's state is unknown
	}
	for _, p := range []string{"MOVED", "ASK", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "NOREPLICAS"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}
