package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
	"github.com/multcall/dialbridge/redisq"
)

// queueBuffer is an output written by several goroutines.
type queueBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (q *queueBuffer) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.b.Write(p)
}

func (q *queueBuffer) String() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.b.String()
}

// queueWait waits for cond, generously: the machine may be busy.
func queueWait(t *testing.T, what string, cond func() bool, got func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got:\n%s", what, got())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func queueRedis(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	t.Setenv("DIALBRIDGE_CONFIG", "")
	t.Chdir(t.TempDir()) // no configs/settings.yaml: the built-in defaults
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return mr, rdb
}

func acdKey(n string) string { return redisq.ACDKey("dialbridge", "101", n) }

// Text planted in Redis reaches the terminal of "dialbridge queue --cell"
// only escaped: a lease holder's name, a saved floor that does not hold
// together, refused inbox events (issue 13 item 6).
func TestQueueEscapesRedisText(t *testing.T) {
	ctx := context.Background()
	for name, attack := range termsafetest.Attacks {
		t.Run(name, func(t *testing.T) {
			mr, rdb := queueRedis(t)
			args := []string{"--cell", "101", "--redis", mr.Addr()}
			run := func(in io.Reader) (string, string, int) {
				var out, errOut queueBuffer
				code := runQueueManager(ctx, args, false, queueIO{in: in, out: &out, errOut: &errOut})
				return out.String(), errOut.String(), code
			}
			check := func(what, out, errOut string) {
				t.Helper()
				if bad := termsafetest.Unsafe(out); bad != "" {
					t.Errorf("%s, stdout: %s", what, bad)
				}
				if bad := termsafetest.Unsafe(errOut); bad != "" {
					t.Errorf("%s, stderr: %s", what, bad)
				}
			}

			// Another queue manager holds the cell, by a planted name.
			rdb.Set(ctx, acdKey("lease"), attack, time.Minute)
			out, errOut, code := run(strings.NewReader(""))
			if code != exitFailure || !strings.Contains(errOut, "another queue manager") {
				t.Fatalf("lease held: exit %d, stderr %q", code, errOut)
			}
			check("lease", out, errOut)
			rdb.Del(ctx, acdKey("lease"))

			// A floor that does not hold together, with planted text.
			rdb.HSet(ctx, acdKey("operators"), "A", `{"id":"A","tier":"operator","state":"available","call":`+jsonText(attack)+`}`)
			rdb.HSet(ctx, acdKey("operators"), attack, `{"id":"x"}`)
			out, errOut, code = run(strings.NewReader(""))
			if code != exitFailure {
				t.Fatalf("bad floor: exit %d, stderr %q", code, errOut)
			}
			check("floor", out, errOut)
			rdb.Del(ctx, acdKey("operators"))

			// Inbox events, refused: one not JSON, one with a bad id.
			rdb.LPush(ctx, acdKey("inbox"), "raw "+attack, `{"command":"call","id":`+jsonText(attack)+`}`, `{"command":"call","id":"ok-1"}`)
			pr, pw := io.Pipe()
			var outB, errB queueBuffer
			done := make(chan int, 1)
			go func() { done <- runQueueManager(ctx, args, false, queueIO{in: pr, out: &outB, errOut: &errB}) }()
			queueWait(t, "the inbox events", func() bool {
				return strings.Count(errB.String(), "refused") >= 2 && strings.Contains(outB.String(), "Call ok-1 received")
			}, func() string { return outB.String() + errB.String() })
			pw.Close()
			if code := <-done; code != exitOK {
				t.Fatalf("inbox: exit %d, stderr %q", code, errB.String())
			}
			check("inbox", outB.String(), errB.String())
		})
	}
}

func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
