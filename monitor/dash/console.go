package dash

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
)

// Console is the command line's link to a queue manager: lines typed go in
// with Exec, what the queue manager answers comes out through the sink given
// to NewHostedConsole / NewClientConsole, line by line, as basic mode or
// "queue client" prints it (errors as "error: <text>").
type Console struct {
	exec  func(line string)
	close func()
	done  chan error
}

// Exec sends one line. It does not wait for the output.
func (c *Console) Exec(line string) { c.exec(line) }

// Close ends the input.
func (c *Console) Close() { c.close() }

// Done yields one value (nil or the error), then is closed, when the
// console has stopped.
func (c *Console) Done() <-chan error { return c.done }

// lineWriter hands every complete line written to it to sink.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	err  bool
	sink func(ConsoleMsg)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	var lines []string
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(lines) > 0 {
		w.sink(ConsoleMsg{Lines: lines, Err: w.err})
	}
	return len(p), nil
}

func newConsole(run func(in io.Reader, out, errOut io.Writer) error, sink func(ConsoleMsg)) *Console {
	r, w := io.Pipe()
	var mu sync.Mutex
	c := &Console{
		exec: func(line string) {
			mu.Lock()
			defer mu.Unlock()
			_, _ = io.WriteString(w, strings.TrimRight(line, "\r\n")+"\n")
		},
		close: func() { _ = w.Close() },
		done:  make(chan error, 1),
	}
	go func() {
		err := run(r, &lineWriter{sink: sink}, &lineWriter{sink: sink, err: true})
		_ = r.Close()
		c.done <- err
		close(c.done)
	}()
	return c
}

// NewHostedConsole is the command line of an Engine the monitor hosts. Only
// the answers to the lines typed come out: the messages no command caused
// (ring timeouts, the bridge's events) are in the queue manager's log pane.
func NewHostedConsole(ctx context.Context, e *acdserver.Engine, sink func(ConsoleMsg)) *Console {
	c := &Console{done: make(chan error, 1)}
	var once sync.Once
	c.close = func() {
		once.Do(func() { c.done <- nil; close(c.done) })
	}
	c.exec = func(line string) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			return
		}
		verb, arg := f[0], strings.Join(f[1:], " ")
		switch strings.ToLower(verb) {
		case "help", "?":
			sink(ConsoleMsg{Lines: strings.Split(strings.TrimRight(acdserver.Help, "\n"), "\n")})
			return
		}
		cmd, err := acd.ParseCommand(verb, arg)
		if err != nil {
			sink(ConsoleMsg{Lines: []string{"error: " + err.Error()}, Err: true})
			return
		}
		var out ConsoleMsg
		e.Do(cmd, func(lines []string, err error) {
			if err != nil {
				out = ConsoleMsg{Lines: []string{"error: " + err.Error()}, Err: true}
				return
			}
			out = ConsoleMsg{Lines: lines}
		})
		sink(out)
	}
	go func() {
		<-ctx.Done()
		c.close()
	}()
	return c
}

// NewClientConsole attaches to a running "dialbridge queue serve" at addr
// (acdserver.RunClient), authenticating with token (acd.token; "" for a
// server without one). Messages no command caused come out too.
func NewClientConsole(ctx context.Context, addr, token string, sink func(ConsoleMsg)) *Console {
	return newConsole(func(in io.Reader, out, errOut io.Writer) error {
		return acdserver.RunClient(ctx, addr, acdserver.ClientOptions{Token: token}, in, out, errOut)
	}, sink)
}
