package redisq

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A call's Lua steps (Begin, MarkDialing, MarkAnswered, Finish, Bury) go
// through a batcher: every step waiting when a pipeline leaves rides in it,
// as a database groups commits. Under load a step costs a fraction of a
// round trip (one write and one read for dozens of calls, on our side and
// on Redis'); at low load a step finds no pipeline running and leaves at
// once, alone. Each script stays atomic; steps of different calls have no
// order to keep, and the steps of one call are issued one after another.

const (
	// maxPipelines bounds the pipelines in flight at once: enough to keep
	// Redis busy while one is on the wire, few enough that they fill.
	maxPipelines = 4
	// maxPipelineLen bounds one pipeline, so one reply never grows huge.
	maxPipelineLen = 128
)

type scriptReq struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	done   chan struct{}
	// durable: the step is followed by WAIT (durable.go); waitErr is the
	// WAIT's shortfall, nil when the replicas acknowledged.
	durable bool
	waitErr error
}

type batcher struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	queue   []*scriptReq
	running int // pipelines being sent or waited for

	// dur (nil = off) sends a pipeline holding a durable step on a
	// dedicated connection, followed by WAIT.
	dur *Durable
}

// run runs script like script.Run(ctx, rdb, keys, args...), in a pipeline
// shared with the steps waiting at the same time. When ctx ends first the
// step may still run: every step is idempotent, and the caller retries or
// gives up as after a lost reply.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	return b.enqueue(&scriptReq{ctx: ctx, script: script, keys: keys, args: args, done: make(chan struct{})})
}

// runDurable is run for a step the replicas must acknowledge (durable.go);
// waitErr (wrapping bridge.ErrNotDurable) says they did not, though the
// step ran. Without durability it is run.
func (b *batcher) runDurable(ctx context.Context, script *redis.Script, keys []string, args ...any) (cmd *redis.Cmd, waitErr error) {
	r := &scriptReq{ctx: ctx, script: script, keys: keys, args: args, done: make(chan struct{}), durable: b.dur != nil}
	cmd = b.enqueue(r)
	if cmd.Err() != nil {
		return cmd, nil
	}
	return cmd, r.waitErr
}

func (b *batcher) enqueue(r *scriptReq) *redis.Cmd {
	ctx := r.ctx
	b.mu.Lock()
	b.queue = append(b.queue, r)
	lead := b.running < maxPipelines
	if lead {
		b.running++
	}
	b.mu.Unlock()
	if lead {
		// Send what waits now (our step included, unless another sender
		// took it); whatever arrives meanwhile goes on a fresh goroutine
		// so this call is not held up sending other calls' steps.
		if b.sendOne() {
			go b.drain()
		}
	}
	select {
	case <-r.done:
		return r.cmd
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

// sendOne sends one pipeline of waiting steps. It reports whether more
// steps wait; if not, the sender's place is given up.
func (b *batcher) sendOne() (more bool) {
	b.mu.Lock()
	n := min(len(b.queue), maxPipelineLen)
	batch := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n) // zeroes the tail: sent steps are not kept alive
	b.mu.Unlock()
	if n > 0 {
		b.send(batch)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.running--
		return false
	}
	return true
}

func (b *batcher) drain() {
	for b.sendOne() {
	}
}

// send runs batch in one pipeline and hands every step its reply.
func (b *batcher) send(batch []*scriptReq) {
	// The pipeline outlives any one caller: a step whose caller left
	// still gets its reply read, so the connection stays in step.
	ctx := context.Background()
	if b.dur != nil && slices.ContainsFunc(batch, func(r *scriptReq) bool { return r.durable }) {
		_, _ = b.dur.send(ctx, batch)
		return
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			cmd := redis.NewCmd(r.ctx)
			cmd.SetErr(err)
			cmds[i] = cmd
			continue
		}
		cmds[i] = r.script.EvalSha(ctx, pipe, r.keys, r.args...)
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx) //nolint:errcheck // every command carries its own error
	}
	for i, r := range batch {
		if err := cmds[i].Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// Redis lost its script cache (a restart): EVAL loads it.
			cmds[i] = r.script.Eval(ctx, b.rdb, r.keys, r.args...)
		}
		r.cmd = cmds[i]
		close(r.done)
	}
}
