package acdserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// client is one connection of a Server.
type client struct {
	s      *Server
	nc     net.Conn
	out    chan []byte
	done   chan struct{} // closed when the reader stops: the writer flushes and closes
	kick   chan struct{} // closed by finish: the writer flushes and closes
	kicked sync.Once
	ended  atomic.Bool   // dropped or finishing: nothing more is queued
	authed atomic.Bool   // may send commands, hears broadcasts
	proven atomic.Bool   // authenticated, or spoke without a token (set under s.mu)
	since  uint64        // Server.seq at connection
	active atomic.Uint64 // Server.seq at its latest line
}

// send queues b for the client without ever blocking; a client whose queue
// is full is dropped.
func (c *client) send(b []byte) bool {
	if c.ended.Load() {
		return false
	}
	select {
	case c.out <- b:
		return true
	default:
		c.drop(fmt.Sprintf("%d messages wait for it", len(c.out)))
		return false
	}
}

// drop closes the connection at once (the client does not read).
func (c *client) drop(why string) {
	if c.ended.CompareAndSwap(false, true) {
		c.s.Logf("acd: dropping client %s: %s", c.nc.RemoteAddr(), why)
		c.nc.Close()
	}
}

// finish sends last (if there is room) after what waits, then closes.
func (c *client) finish(last []byte) {
	c.kicked.Do(func() {
		if !c.ended.Swap(true) && last != nil {
			select {
			case c.out <- last:
			default:
			}
		}
		close(c.kick)
	})
}

func (c *client) readLoop() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		delete(c.s.clients, c)
		c.s.mu.Unlock()
		close(c.done)
	}()
	// The buffer holds one whole line: a longer one is refused without
	// reading further.
	br := bufio.NewReaderSize(c.nc, c.s.MaxLine+2)
	for {
		line, err := br.ReadSlice('\n')
		if c.ended.Load() {
			return
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > c.s.MaxLine {
			c.s.noise.note("acd: closed %s: a line longer than %d bytes", c.nc.RemoteAddr(), c.s.MaxLine)
			c.finish(errorLine(fmt.Sprintf("line longer than %d bytes: closing the connection", c.s.MaxLine)))
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.authed.Load() {
			c.s.noise.note("acd: closed %s: not authenticated within %s", c.nc.RemoteAddr(), c.s.AuthTimeout)
			c.finish(errorLine(fmt.Sprintf("not authenticated within %s: closing the connection", c.s.AuthTimeout)))
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if (len(line) > 0 || err == nil) && !c.handle(line) {
			return
		}
		if err != nil {
			return
		}
	}
}

// handle answers one line; false ends the connection.
func (c *client) handle(line []byte) bool {
	c.active.Store(c.s.seq.Add(1))
	if c.authed.Load() && !c.proven.Load() {
		c.s.proven(c) // without a token, speaking is all there is to prove
	}
	if c.authed.Load() && len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	req, perr := decodeRequest(line)
	if !c.authed.Load() || (perr == nil && req.isAuth()) {
		return c.auth(req, perr)
	}
	if perr == nil && isHelp(req.verb) {
		for _, l := range strings.SplitAfter(strings.TrimSuffix(Help, "\n"), "\n") {
			c.send(responseLine(strings.TrimSuffix(l, "\n")))
		}
		return true
	}
	var cmd acd.Command
	if perr == nil {
		cmd, perr = acd.ParseCommand(req.verb, req.arg)
	}
	if perr != nil {
		c.send(errorLine(perr.Error()))
		return true
	}
	c.s.Engine.Do(cmd, func(lines []string, err error) {
		if err != nil {
			c.send(errorLine(err.Error()))
			return
		}
		for _, l := range lines {
			if !c.send(responseLine(l)) {
				return
			}
		}
	})
	return true
}

func (c *client) writeLoop() {
	defer c.s.wg.Done()
	defer c.nc.Close()
	bw := bufio.NewWriterSize(c.nc, 16*1024)
	write := func(b []byte) bool {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
		if _, err := bw.Write(b); err != nil {
			c.drop("writing: " + err.Error())
			return false
		}
		return true
	}
	flush := func() bool {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
		if err := bw.Flush(); err != nil {
			c.drop("writing: " + err.Error())
			return false
		}
		return true
	}
	for {
		select {
		case b := <-c.out:
			if !write(b) {
				return
			}
			if len(c.out) == 0 && !flush() {
				return
			}
		case <-c.done:
			c.flushAll(write, flush)
			c.linger()
			return
		case <-c.kick:
			c.flushAll(write, flush)
			c.linger()
			return
		}
	}
}

// flushAll writes what waits: the client finished sending, or is being
// closed with a last word.
func (c *client) flushAll(write func([]byte) bool, flush func() bool) {
	for {
		select {
		case b := <-c.out:
			if !write(b) {
				return
			}
		default:
			flush()
			return
		}
	}
}

// linger closes gently: closing a socket with unread input resets it, and
// the peer may then lose the last lines written (the error that says why).
// So the write side is shut first, and what the client still sends is
// read and dropped for a moment.
func (c *client) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	<-c.done // the reader stops: it did, or it does at its next read
	_, _ = io.CopyN(io.Discard, c.nc, 256*1024)
}
