package opsim

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// floor is a Machine behind a mutex, recording every message.
type floor struct {
	mu   sync.Mutex
	m    *acd.Machine
	msgs []string
}

func (f *floor) Snapshot() acd.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msgsOf(f.m.Tick(time.Now()))...)
	return f.m.Snapshot()
}

func (f *floor) Do(c acd.Command, reply func([]string, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms, err := f.m.Do(c, time.Now())
	f.msgs = append(f.msgs, msgsOf(ms)...)
	reply(msgsOf(ms), err)
}

func (f *floor) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.msgs, "\n")
}

func msgsOf(ms []acd.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

func TestOperatorsAnswerRejectIgnoreAndHangUp(t *testing.T) {
	m, err := acd.New([]acd.Operator{{ID: "A"}, {ID: "B"}}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	f := &floor{m: m}
	for _, id := range []string{"1", "2", "3", "4", "5", "6", "fed-1"} {
		f.Do(acd.Command{Verb: acd.Call, ID: id}, func([]string, error) {})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Run(ctx, f, Options{
			AnswerMin: 10 * time.Millisecond, AnswerMax: 30 * time.Millisecond, RejectAfter: 20 * time.Millisecond,
			Reject: 0.25, Ignore: 0.15, TalkMin: 20 * time.Millisecond, TalkMax: 60 * time.Millisecond,
			FedPrefix: "fed-", Poll: 5 * time.Millisecond, Seed: 1,
		})
	}()
	defer func() { cancel(); <-done }()
	// Every typed call ends (answered, then hung up by its operator); the
	// fed call is answered and stays until the bridge hangs it up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := f.log()
		finished := 0
		for _, id := range []string{"1", "2", "3", "4", "5", "6"} {
			if strings.Contains(log, "Call "+id+" finished") {
				finished++
			}
		}
		if finished == 6 && strings.Contains(log, "Call fed-1 answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, %d/6 calls finished; log:\n%s", finished, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(f.log(), "Call fed-1 finished") {
		t.Error("an operator hung up a call fed by the bridge")
	}
}
