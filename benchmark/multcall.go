package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/internal/retry"
	"github.com/multcall/dialbridge/redisq"
)

// driver is a fast simulated Multcall for load: it pushes commands in
// batches, confirms ACKs in batches (BRPOP + RPOP count, one LPUSH for all
// the confirmations) and collects results in batches, so that it is never
// the bottleneck (redisq/multcallsim handles one message per round trip).
// It records, per command, when it was pushed, originated (through the AMI
// simulator's hook) and when its result was read.
type driver struct {
	rdb  redis.UniversalClient
	keys redisq.Keys
	n    int

	pushAt, origAt, resAt []atomic.Int64 // unix ns, by command index

	pushed, acked, results atomic.Int64

	mu       sync.Mutex
	statuses map[string]int
}

func newDriver(rdb redis.UniversalClient, keys redisq.Keys, n int) *driver {
	return &driver{
		rdb: rdb, keys: keys, n: n,
		pushAt: make([]atomic.Int64, n), origAt: make([]atomic.Int64, n), resAt: make([]atomic.Int64, n),
		statuses: map[string]int{},
	}
}

// Command ids are "b<index>", numbers "55" + 9 digits of the index, so the
// simulator's originate hook finds the command from the dialled number.
func cmdID(i int) string     { return "b" + strconv.Itoa(i) }
func cmdNumber(i int) string { return fmt.Sprintf("55%09d", i) }

func indexOfID(id string) (int, bool) {
	if !strings.HasPrefix(id, "b") {
		return 0, false
	}
	i, err := strconv.Atoi(id[1:])
	return i, err == nil
}

func indexOfNumber(num string) (int, bool) {
	if len(num) != 11 || !strings.HasPrefix(num, "55") {
		return 0, false
	}
	i, err := strconv.Atoi(num[2:])
	return i, err == nil
}

func command(i int) []byte {
	return []byte(`{"id":"` + cmdID(i) + `","number":"` + cmdNumber(i) + `"}`)
}

// originated is the AMI simulator's Logf hook: the line it logs for every
// Originate it accepted carries the number (args[1]) and is written right
// after OriginateRecord.At is taken.
func (d *driver) originated(format string, args ...any) {
	if !strings.HasPrefix(format, "amisim: originate %s (number") || len(args) < 2 {
		return
	}
	now := time.Now().UnixNano()
	num, _ := args[1].(string)
	if i, ok := indexOfNumber(num); ok && i < d.n {
		d.origAt[i].CompareAndSwap(0, now)
	}
}

const pushBatch = 256

// pushFast pushes all n commands as fast as they are taken: at most window
// commands pushed and not yet acknowledged (claimed and begun) at once.
func (d *driver) pushFast(ctx context.Context, window int) error {
	for i := 0; i < d.n; {
		if int(d.pushed.Load()-d.acked.Load()) >= window {
			if !retry.Sleep(ctx, 100*time.Microsecond) {
				return ctx.Err()
			}
			continue
		}
		k := min(pushBatch, d.n-i)
		if err := d.push(ctx, i, k); err != nil {
			return err
		}
		i += k
	}
	return nil
}

// pushPaced offers rate commands per second: each command is pushed at its
// due time (late ones together in one LPUSH).
func (d *driver) pushPaced(ctx context.Context, rate float64) error {
	start := time.Now()
	every := time.Duration(float64(time.Second) / rate)
	for i := 0; i < d.n; {
		due := int(time.Since(start)/every) + 1
		if due > d.n {
			due = d.n
		}
		if due <= i {
			if !retry.Sleep(ctx, time.Until(start.Add(time.Duration(i)*every))) {
				return ctx.Err()
			}
			continue
		}
		k := min(due-i, pushBatch)
		if err := d.push(ctx, i, k); err != nil {
			return err
		}
		i += k
	}
	return nil
}

func (d *driver) push(ctx context.Context, from, k int) error {
	args := make([]any, k)
	for j := range k {
		args[j] = command(from + j)
	}
	now := time.Now().UnixNano()
	for j := range k {
		d.pushAt[from+j].Store(now)
	}
	d.pushed.Add(int64(k))
	if err := d.rdb.LPush(ctx, d.keys.Dial(), args...).Err(); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	return nil
}

// popBatch waits up to a second for one element of key, then takes up to
// 1,000 more without waiting.
func popBatch(ctx context.Context, rdb redis.UniversalClient, key string) ([]string, error) {
	kv, err := rdb.BRPop(ctx, time.Second, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	more, err := rdb.RPopCount(ctx, key, 1000).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return append(kv[1:2], more...), nil
}

// confirm answers every ACK with a confirmation until ctx ends.
func (d *driver) confirm(ctx context.Context) error {
	var b bytes.Buffer
	for ctx.Err() == nil {
		acks, err := popBatch(ctx, d.rdb, d.keys.Ack())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read acks: %w", err)
		}
		if len(acks) == 0 {
			continue
		}
		msgs := make([]any, 0, len(acks))
		for _, a := range acks {
			var ack struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(a), &ack); err != nil {
				return fmt.Errorf("bad ACK %q: %w", a, err)
			}
			b.Reset()
			b.WriteString(`{"id":"`)
			b.WriteString(ack.ID)
			b.WriteString(`","call_code":"9`)
			b.WriteString(strings.TrimPrefix(ack.ID, "b"))
			b.WriteString(`"}`)
			msgs = append(msgs, bytes.Clone(b.Bytes()))
		}
		if err := d.rdb.LPush(context.WithoutCancel(ctx), d.keys.Confirm(), msgs...).Err(); err != nil {
			return fmt.Errorf("confirm: %w", err)
		}
		d.acked.Add(int64(len(acks)))
	}
	return nil
}

// countAcks only counts ACKs (baseline: its workers confirm themselves).
func (d *driver) drainAcks(ctx context.Context) error {
	for ctx.Err() == nil {
		acks, err := popBatch(ctx, d.rdb, d.keys.Ack())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read acks: %w", err)
		}
		d.acked.Add(int64(len(acks)))
	}
	return nil
}

// collect reads results until every command has one or ctx ends.
func (d *driver) collect(ctx context.Context) error {
	for d.results.Load() < int64(d.n) {
		rs, err := popBatch(ctx, d.rdb, d.keys.Results())
		if err != nil {
			return fmt.Errorf("after %d of %d results: %w", d.results.Load(), d.n, err)
		}
		now := time.Now().UnixNano()
		for _, s := range rs {
			var r struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return fmt.Errorf("bad result %q: %w", s, err)
			}
			if i, ok := indexOfID(r.ID); ok && i < d.n {
				d.resAt[i].CompareAndSwap(0, now)
			}
			d.mu.Lock()
			d.statuses[r.Status]++
			d.mu.Unlock()
		}
		d.results.Add(int64(len(rs)))
	}
	return nil
}

// latencies of push → originate and push → result.
func (d *driver) latencies() (orig, res Latencies, missingOrig int) {
	o := make([]time.Duration, 0, d.n)
	r := make([]time.Duration, 0, d.n)
	for i := range d.n {
		p := d.pushAt[i].Load()
		if p == 0 {
			continue
		}
		if t := d.origAt[i].Load(); t != 0 {
			o = append(o, time.Duration(t-p))
		} else {
			missingOrig++
		}
		if t := d.resAt[i].Load(); t != 0 {
			r = append(r, time.Duration(t-p))
		}
	}
	return Summarise(o), Summarise(r), missingOrig
}

// window returns first push and last result.
func (d *driver) window() (time.Time, time.Time) {
	var first, last int64
	for i := range d.n {
		if p := d.pushAt[i].Load(); p != 0 && (first == 0 || p < first) {
			first = p
		}
		if r := d.resAt[i].Load(); r > last {
			last = r
		}
	}
	return time.Unix(0, first), time.Unix(0, last)
}

func (d *driver) statusSummary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var parts []string
	for s, n := range d.statuses {
		parts = append(parts, s+" "+strconv.Itoa(n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// deleteKeys removes every key of a run (SCAN + UNLINK), so that runs do
// not fill the Redis.
func deleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+":*", 2000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
