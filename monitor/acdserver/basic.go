package acdserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe"
)

// inputLine is one line of input, or the end of it.
type inputLine struct {
	text    string
	tooLong bool
	err     error // io.EOF at the end
}

// readLines feeds the lines of in to the returned channel from a
// goroutine, until the end of in or until done is closed (the goroutine
// may then stay blocked in a Read of in until that returns).
func readLines(in io.Reader, done <-chan struct{}) <-chan inputLine {
	ch := make(chan inputLine)
	go func() {
		defer close(ch)
		br := bufio.NewReaderSize(in, 64*1024)
		for {
			line, tooLong, err := readLine(br, MaxLine)
			if len(line) > 0 || tooLong || err == nil {
				select {
				case ch <- inputLine{text: string(line), tooLong: tooLong}:
				case <-done:
					return
				}
			}
			if err != nil {
				select {
				case ch <- inputLine{err: err}:
				case <-done:
				}
				return
			}
		}
	}()
	return ch
}

// RunBasic is basic mode: commands are read from in, one per line; the
// messages go to out, one per line, exactly as contract section 5 writes
// them; errors go to errOut as "error: <text>". Messages no command caused
// (ring timeouts, inbox events) are written to out as they happen. With
// prompt (in is a terminal) "> " is written before each command. RunBasic
// returns at the end of in, on "quit", or when ctx ends. The engine's Run
// must be running for ring timeouts.
func RunBasic(ctx context.Context, e *Engine, in io.Reader, out, errOut io.Writer, prompt bool) error {
	return StartBasic(e, out, errOut, prompt).Run(ctx, in)
}

// Basic is basic mode started: it prints the messages no command caused
// from StartBasic on, so that a caller can start the inbox only once they
// are printed (events taken at start would otherwise be applied unseen).
type Basic struct {
	e           *Engine
	out, errOut io.Writer
	prompt      bool
	outMu       sync.Mutex // out is written by commands, broadcasts and the prompt
	cancel      func()
}

// StartBasic subscribes to e's messages; Run reads the commands.
func StartBasic(e *Engine, out, errOut io.Writer, prompt bool) *Basic {
	b := &Basic{e: e, out: out, errOut: errOut, prompt: prompt}
	b.cancel = e.Subscribe(func(lines []string) {
		s := joinLines(lines)
		if prompt {
			s = "\r" + s + "> "
		}
		b.write(out, s)
	})
	return b
}

func (b *Basic) write(w io.Writer, s string) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	_, _ = io.WriteString(w, s)
}

// Run is RunBasic's loop; it unsubscribes when it returns.
func (b *Basic) Run(ctx context.Context, in io.Reader) error {
	defer b.cancel()
	e, out, errOut, prompt, write := b.e, b.out, b.errOut, b.prompt, b.write
	done := make(chan struct{})
	defer close(done)
	lines := readLines(in, done)
	for {
		if prompt {
			write(out, "> ")
		}
		var l inputLine
		select {
		case <-ctx.Done():
			return nil
		case l = <-lines:
		}
		if l.err != nil {
			if errors.Is(l.err, io.EOF) {
				if prompt {
					write(out, "\n")
				}
				return nil
			}
			return l.err
		}
		if l.tooLong {
			write(errOut, errorText(errLineTooLong))
			continue
		}
		verb, arg, local, skip := splitLine(l.text)
		switch {
		case skip:
			continue
		case local == localQuit:
			return nil
		case isHelp(verb):
			write(out, Help)
			continue
		}
		cmd, err := acd.ParseCommand(verb, arg)
		if err != nil {
			write(errOut, errorText(err))
			continue
		}
		e.Do(cmd, func(lines []string, err error) {
			if err != nil {
				write(errOut, errorText(err))
				return
			}
			write(out, joinLines(lines))
		})
	}
}

// joinLines makes the text of messages, escaped (package termsafe): ids
// are checked, but the floor and the inbox come from Redis.
func joinLines(lines []string) string {
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	for _, l := range lines {
		b = append(b, termsafe.Escape(l)...)
		b = append(b, '\n')
	}
	return string(b)
}

// errorText is an error as basic mode prints it.
func errorText(err error) string {
	return "error: " + termsafe.Escape(err.Error()) + "\n"
}
