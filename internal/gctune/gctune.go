// Package gctune gives the garbage collector a heap floor: the heap may grow
// to a fixed size before a collection starts, however small the live heap.
//
// Why: the daemon's live heap is a few megabytes, but every call allocates
// tens of kilobytes (most of it amigo's map per AMI message) and drops them
// at once. With Go's default (GOGC=100: collect when the heap doubles) that
// is one collection every 100–200 ms at 1,000 calls/s, and on a 2-core PBX
// host each one takes a core for a millisecond or two and stops the world,
// which is what set the p99 of push → Originate (docs/PERFORMANCE.md).
//
// The floor makes the heap goal max(floor, 2 × live heap): below the floor
// the collector runs far less often; above it the runtime behaves exactly as
// with GOGC=100, so memory with many calls in flight is no higher than
// Go's default would make it. It is the ballast technique without the
// ballast, done by retuning GOGC after every cycle, as Go's own pacer does
// with GOMEMLIMIT — which offers a ceiling, not a floor.
//
// bytedance/gopkg's gctuner does the same but reads runtime.ReadMemStats,
// which stops the world, after every cycle; this package reads the live
// heap from runtime/metrics, which does not.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// DefaultFloor is the heap the daemon may reach before a collection is due.
const DefaultFloor = 32 << 20

const liveHeapMetric = "/gc/heap/live:bytes"

// Tuner retunes GOGC after every garbage collection.
type Tuner struct {
	floor   uint64
	stopped atomic.Bool
	percent atomic.Int64 // last GOGC set
	cycles  atomic.Int64 // collections seen

	mu     sync.Mutex // the finalizer goroutine vs Stop
	sample []metrics.Sample
}

// sentinel becomes garbage at every collection; its finalizer revives it
// for the next one, so Tuner.tune runs once per GC cycle. The pointer field
// keeps it out of the tiny allocator, whose blocks may never be finalized.
type sentinel struct{ t *Tuner }

// Start tunes the collector for floor bytes unless the operator chose a
// policy: with GOGC or GOMEMLIMIT in the environment it returns nil and
// the runtime keeps that choice.
func Start(floor uint64) *Tuner {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" || floor == 0 {
		return nil
	}
	t := &Tuner{floor: floor, sample: []metrics.Sample{{Name: liveHeapMetric}}}
	t.percent.Store(100)
	arm(&sentinel{t: t})
	return t
}

func arm(s *sentinel) { runtime.SetFinalizer(s, finalize) }

func finalize(s *sentinel) {
	if s.t.stopped.Load() {
		return
	}
	s.t.tune()
	arm(s)
}

// tune sets GOGC so that the next heap goal is max(floor, 2 × live).
func (t *Tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	t.cycles.Add(1)
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return // not this Go's metric: leave GOGC as it is
	}
	p := Percent(t.sample[0].Value.Uint64(), t.floor)
	if p != t.percent.Load() {
		debug.SetGCPercent(int(p))
		t.percent.Store(p)
	}
}

// maxPercent bounds GOGC (the runtime keeps it in an int32); it only binds
// while the live heap is under floor/100, just after start.
const maxPercent = 10000

// Percent is the GOGC that puts the heap goal at floor for a live heap of
// live bytes, never below Go's default of 100.
func Percent(live, floor uint64) int64 {
	if live == 0 || live*2 >= floor {
		return 100
	}
	// goal = live × (1 + GOGC/100) ≥ floor, rounded up.
	return min(int64(((floor-live)*100+live-1)/live), maxPercent)
}

// Percent is the GOGC the tuner set last.
func (t *Tuner) Percent() int64 { return t.percent.Load() }

// Cycles is the number of collections the tuner has seen.
func (t *Tuner) Cycles() int64 { return t.cycles.Load() }

// Stop gives the collector back its default (GOGC=100).
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(100)
	t.percent.Store(100)
}
