package acdserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrConnectionLost is returned by RunClient when the server closes the
// connection before the input ends.
var ErrConnectionLost = errors.New("the queue manager closed the connection")

// RunClient is "queue client": it reads the same commands as basic mode
// from in, sends each as a JSON line to the server at addr, and prints every
// {"response": …} message on out and every {"error": …} on errOut as
// "error: <text>", so that its output is basic mode's, character for
// character. Messages no command caused (ring timeouts) are printed as they
// come. A goroutine reads in and writes to the connection; this one reads
// the connection. At the end of in (or "quit") the client half-closes the
// connection, prints what the server still sends, and returns when the
// server closes. With prompt (in is a terminal) "> " is printed when the
// client waits for a command.
func RunClient(ctx context.Context, addr string, in io.Reader, out, errOut io.Writer, prompt bool) error {
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
	inputDone := make(chan error, 1)
	go func() {
		inputDone <- pump(in, nc, out, errOut, write, prompt)
		// Half-close only now: the server's close then means the end.
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			nc.Close()
		}
	}()

	br := bufio.NewReaderSize(nc, 64*1024)
	for {
		line, tooLong, err := readLine(br, 1<<20)
		if tooLong {
			write(errOut, "error: the queue manager sent an overlong line\n")
		} else if len(line) > 0 {
			var r reply
			switch jerr := json.Unmarshal(line, &r); {
			case jerr == nil && r.Response != nil:
				write(out, *r.Response+"\n")
			case jerr == nil && r.Error != nil:
				write(errOut, "error: "+*r.Error+"\n")
			default:
				write(errOut, fmt.Sprintf("error: unexpected line from the queue manager: %q\n", line))
			}
			if prompt && br.Buffered() == 0 {
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
	select {
	case err := <-inputDone:
		return err
	default:
		// The server went away while input remains (the reading goroutine
		// may be blocked on a terminal: it ends with the process).
		return ErrConnectionLost
	}
}

// overlong stands for a line too long to send: the server answers it with
// basic mode's error.
var overlong = append(bytes.Repeat([]byte{' '}, MaxLine+1), '\n')

// pump reads commands from in and sends them to nc until the end of in or
// "quit".
func pump(in io.Reader, nc net.Conn, out, errOut io.Writer, write func(io.Writer, string), prompt bool) error {
	br := bufio.NewReaderSize(in, 64*1024)
	if prompt {
		write(out, "> ")
	}
	for {
		line, tooLong, err := readLine(br, MaxLine)
		local := false
		switch {
		case tooLong:
			// The server refuses it with the same error, in order.
			if _, werr := nc.Write(overlong); werr != nil {
				return nil
			}
		case len(line) > 0 || err == nil:
			verb, arg, lc, skip := splitLine(string(line))
			switch {
			case skip:
				local = true
			case lc == localQuit:
				return nil
			default:
				if _, werr := nc.Write(EncodeRequest(verb, arg)); werr != nil {
					return nil // the connection is gone: the reader reports it
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if prompt {
					write(out, "\n")
				}
				return nil
			}
			return fmt.Errorf("reading commands: %w", err)
		}
		if local && prompt {
			write(out, "> ")
		}
	}
}
