package acdserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe"
)

// ErrConnectionLost is returned by RunClient when the server closes the
// connection before the input ends.
var ErrConnectionLost = errors.New("the queue manager closed the connection")

// ErrAuth is returned by RunClient when the server closes the connection
// before accepting its token.
var ErrAuth = errors.New("the queue manager refused the connection before authentication (acd.token: set $DIALBRIDGE_ACD_TOKEN, or acd.token in the settings)")

// ClientOptions are RunClient's.
type ClientOptions struct {
	// Token is sent first (acd.token); a server without one takes any.
	Token string
	// Prompt prints "> " when the client waits for a command (stdin is a
	// terminal).
	Prompt bool
}

// RunClient is "queue client": it authenticates, reads the same commands
// as basic mode from in, sends each as a JSON line to the server at addr,
// and prints every {"response": …} message on out and every {"error": …}
// on errOut as "error: <text>", so that its output is basic mode's,
// character for character. Messages no command caused (ring timeouts) are
// printed as they come. A goroutine reads in and writes to the connection;
// this one reads the connection. At the end of in (or "quit") the client
// half-closes the connection, prints what the server still sends, and
// returns when the server closes.
//
// What the server sends is escaped before it is printed (package
// termsafe), whoever the server is. A typed line the server would refuse
// for its length is judged here by basic mode's rules, and its error is
// printed in its place among the replies: an auth request goes in its
// stead as a marker, and the error is printed when the marker's
// "authenticated" comes back.
func RunClient(ctx context.Context, addr string, opt ClientOptions, in io.Reader, out, errOut io.Writer) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot reach the queue manager at %s (is \"dialbridge queue serve\" running?): %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	var outMu sync.Mutex
	write := func(w io.Writer, s string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = io.WriteString(w, s)
	}
	p := &pump{nc: nc, token: opt.Token, out: out, write: write, prompt: opt.Prompt}
	// The auth goes first, before any command: its marker prints nothing.
	p.markers.push("")
	if _, err := nc.Write(authRequest(opt.Token)); err != nil {
		return fmt.Errorf("queue manager at %s: %w", addr, err)
	}
	inputDone := make(chan error, 1)
	go func() {
		inputDone <- p.run(in)
		// Half-close only now: the server's close then means the end.
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			nc.Close()
		}
	}()

	admitted := false
	br := bufio.NewReaderSize(nc, 64*1024)
	for {
		line, tooLong, err := readLine(br, 1<<20)
		if tooLong {
			write(errOut, "error: the queue manager sent an overlong line\n")
		} else if len(line) > 0 {
			var r reply
			switch jerr := json.Unmarshal(line, &r); {
			case jerr == nil && r.Response != nil && *r.Response == authenticated:
				admitted = true
				if e, ok := p.markers.pop(); ok && e != "" {
					write(errOut, "error: "+termsafe.Escape(e)+"\n")
				}
			case jerr == nil && r.Response != nil:
				write(out, termsafe.Escape(*r.Response)+"\n")
			case jerr == nil && r.Error != nil:
				write(errOut, "error: "+termsafe.Escape(*r.Error)+"\n")
			default:
				write(errOut, fmt.Sprintf("error: unexpected line from the queue manager: %q\n", line))
			}
			if p.prompt && br.Buffered() == 0 {
				write(out, "> ")
			}
		}
		if err != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if !admitted {
		return ErrAuth
	}
	select {
	case err := <-inputDone:
		return err
	default:
		// The server went away while input remains (the reading goroutine
		// may be blocked on a terminal: it ends with the process).
		return ErrConnectionLost
	}
}

// markers are the errors waiting for their auth marker's answer, in order.
type markers struct {
	mu   sync.Mutex
	errs []string
}

func (m *markers) push(e string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, e)
}

func (m *markers) pop() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) == 0 {
		return "", false
	}
	e := m.errs[0]
	m.errs = m.errs[1:]
	return e, true
}

// pump reads commands and sends them.
type pump struct {
	nc      net.Conn
	token   string
	out     io.Writer
	write   func(io.Writer, string)
	prompt  bool
	markers markers
}

// run reads commands from in and sends them until the end of in or
// "quit".
func (p *pump) run(in io.Reader) error {
	br := bufio.NewReaderSize(in, 64*1024)
	if p.prompt {
		p.write(p.out, "> ")
	}
	for {
		line, tooLong, err := readLine(br, MaxLine)
		local := false
		var req []byte
		switch {
		case tooLong:
			req = p.refused(errLineTooLong.Error())
		case len(line) > 0 || err == nil:
			verb, arg, lc, skip := splitLine(string(line))
			switch {
			case skip:
				local = true
			case lc == localQuit:
				return nil
			default:
				req = p.request(verb, arg)
			}
		}
		if req != nil {
			if _, werr := p.nc.Write(req); werr != nil {
				return nil // the connection is gone: the reader reports it
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if p.prompt {
					p.write(p.out, "\n")
				}
				return nil
			}
			return fmt.Errorf("reading commands: %w", err)
		}
		if local && p.prompt {
			p.write(p.out, "> ")
		}
	}
}

// request is the line to send for a typed command. One too long for the
// server is never a command that works: its error is basic mode's. So is
// a typed "auth": it is no command of the interpreter, and the token is
// not for typing.
func (p *pump) request(verb, arg string) []byte {
	req := EncodeRequest(verb, arg)
	if len(req)-1 <= MaxRequest && !strings.EqualFold(verb, "auth") {
		return req
	}
	if isHelp(verb) {
		return EncodeRequest(verb, "") // help ignores its argument
	}
	if _, err := acd.ParseCommand(verb, arg); err != nil {
		return p.refused(err.Error())
	}
	return req
}

// refused queues a local error behind a marker, and returns the marker.
func (p *pump) refused(e string) []byte {
	p.markers.push(e)
	return authRequest(p.token)
}
