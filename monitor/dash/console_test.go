package dash

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
)

// The command line attached to a "queue serve" that wants acd.token
// authenticates with it (--attach).
func TestClientConsoleToken(t *testing.T) {
	const token = "console-token-0123456789"
	m, err := acd.New([]acd.Operator{{ID: "A"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &acdserver.Server{Engine: acdserver.NewEngine(m, acdserver.Options{}), Token: token}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()

	var mu sync.Mutex
	var got []string
	c := NewClientConsole(ctx, ln.Addr().String(), token, func(m ConsoleMsg) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Lines...)
	})
	c.Exec("call 1")
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		text := strings.Join(got, "\n")
		mu.Unlock()
		if text == "Call 1 received\nCall 1 ringing for operator A" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console got %q", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	if err := <-c.Done(); err != nil {
		t.Fatal(err)
	}
}
