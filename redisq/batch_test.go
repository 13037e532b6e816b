package redisq

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// pipelineCounter is a go-redis hook counting pipelines and commands sent.
type pipelineCounter struct{ pipelines, cmds atomic.Int64 }

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*pipelineCounter)(nil)

// countCommands hooks a pipelineCounter into rdb.
func countCommands(rdb *redis.Client) *pipelineCounter {
	h := &pipelineCounter{}
	rdb.AddHook(h)
	return h
}

// echoScript appends ARGV[1] to a list and returns it doubled: the reply
// says whose step it was, the list says the step ran once.
var echoScript = redis.NewScript(`redis.call("RPUSH", KEYS[1], ARGV[1]); return tonumber(ARGV[1]) * 2`)

func TestBatcher(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		_, rdb := rqRedis(t)
		h := countCommands(rdb)
		b := &batcher{rdb: rdb}
		ctx := rqCtx(t)
		if n, err := b.run(ctx, echoScript, []string{"l"}, 21).Int(); err != nil || n != 42 {
			t.Fatalf("got %d, %v", n, err)
		}
		// EVALSHA of an unknown script: NOSCRIPT, then one EVAL.
		if p := h.pipelines.Load(); p != 1 {
			t.Fatalf("%d pipelines for one step", p)
		}
		if n, err := b.run(ctx, echoScript, []string{"l"}, 5).Int(); err != nil || n != 10 {
			t.Fatalf("got %d, %v", n, err)
		}
		if got := rdb.LRange(ctx, "l", 0, -1).Val(); fmt.Sprint(got) != "[21 5]" {
			t.Fatalf("list %v: each step must run exactly once", got)
		}
	})
	t.Run("concurrent steps share pipelines", func(t *testing.T) {
		_, rdb := rqRedis(t)
		h := countCommands(rdb)
		b := &batcher{rdb: rdb}
		ctx := rqCtx(t)
		echoScript.Load(ctx, rdb)
		const n = 2000
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := b.run(ctx, echoScript, []string{"l"}, i).Int()
				if err != nil || got != 2*i {
					errs <- fmt.Errorf("step %d: got %d, %v", i, got, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, v := range rdb.LRange(ctx, "l", 0, -1).Val() {
			if seen[v] {
				t.Fatalf("step %s ran twice", v)
			}
			seen[v] = true
		}
		if len(seen) != n {
			t.Fatalf("%d steps ran, want %d", len(seen), n)
		}
		if p := h.pipelines.Load(); p >= n {
			t.Fatalf("%d pipelines for %d concurrent steps: nothing was batched", p, n)
		}
		t.Logf("%d steps in %d pipelines", n, h.pipelines.Load())
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.running != 0 || len(b.queue) != 0 {
			t.Fatalf("idle batcher still has %d senders and %d queued", b.running, len(b.queue))
		}
	})
	t.Run("script cache flushed", func(t *testing.T) {
		_, rdb := rqRedis(t)
		b := &batcher{rdb: rdb}
		ctx := rqCtx(t)
		for i := range 3 {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if n, err := b.run(ctx, echoScript, []string{"l"}, i+1).Int(); err != nil || n != 2*(i+1) {
				t.Fatalf("after SCRIPT FLUSH: %d, %v", n, err)
			}
		}
	})
	t.Run("cancelled before sending", func(t *testing.T) {
		_, rdb := rqRedis(t)
		b := &batcher{rdb: rdb}
		ctx, cancel := context.WithCancel(rqCtx(t))
		cancel()
		if err := b.run(ctx, echoScript, []string{"l"}, 1).Err(); err != context.Canceled {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if n := rdb.LLen(context.Background(), "l").Val(); n != 0 {
			t.Fatalf("a cancelled step ran (%d)", n)
		}
	})
	t.Run("redis down", func(t *testing.T) {
		m, rdb := rqRedis(t)
		b := &batcher{rdb: rdb}
		m.Close()
		err := b.run(rqCtx(t), echoScript, []string{"l"}, 1).Err()
		if err == nil {
			t.Fatal("no error with Redis down")
		}
		t.Log(strconv.Quote(err.Error()))
	})
}
