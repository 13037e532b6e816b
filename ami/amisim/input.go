package amisim

import (
	"bytes"
	"io"
	"strings"
)

// Limits of Asterisk's manager.c: a session's input buffer holds 1,024
// bytes (inbuf[1025], one kept for a NUL), and a message at most 128 lines
// (AST_MAX_MANHEADERS).
const (
	maxLineBytes   = 1024
	maxHeaderLines = 128
)

// lineReader is manager.c's get_input, which reads a session's lines:
//
//   - A line ends at the first "\n"; a "\r" just before it is dropped too.
//     Any other "\r" stays in the line.
//   - The line and its "\n" must fit in the 1,024-byte buffer: at most
//     1,022 bytes before a CRLF, 1,023 before a bare LF.
//   - When the buffer is full and holds no "\n", Asterisk logs "Discarding
//     message from <addr>. Line too long: <first 25 bytes>...", throws away
//     all but the last byte, marks the session MESSAGE_LINE_TOO_LONG and
//     reads on. It goes on so until a "\n" comes: what is left of the line
//     then is an ordinary line — a header of the same message (kept, even if
//     it is garbage), or, when the byte kept was the "\r" of the CRLF, an
//     empty line that ends the message there, the long line's later
//     headers starting a message of their own.
//
// The session is kept in every case; do_message answers the message with
// "Failed to parse message: line too long" (see session.reader).
//
// How the bytes arrive in reads does not change any of this, so lineReader
// reads through a bufio.Reader to save system calls.
type lineReader struct {
	r          io.Reader
	buf        [maxLineBytes]byte
	start, end int // unread bytes: buf[start:end] (Asterisk's inlen is end-start)
	// tooLong is the session's MESSAGE_LINE_TOO_LONG: set by a discard,
	// cleared only when the parse error has been answered.
	tooLong bool
	// onDiscard gets the first bytes of each discarded buffer, for
	// Asterisk's warning.
	onDiscard func(head []byte)
}

// readLine returns the next line without its terminator; the slice is valid
// until the next call.
func (lr *lineReader) readLine() ([]byte, error) {
	for {
		win := lr.buf[lr.start:lr.end]
		if p := bytes.IndexByte(win, '\n'); p >= 0 {
			x := p
			if p > 0 && win[p-1] == '\r' {
				x = p - 1
			}
			lr.start += p + 1
			return win[:x], nil
		}
		if len(win) >= maxLineBytes {
			if lr.onDiscard != nil {
				lr.onDiscard(win[:25])
			}
			// Asterisk keeps the last byte: it may be the "\r" of a CRLF.
			lr.buf[0] = win[len(win)-1]
			lr.start, lr.end = 0, 1
			lr.tooLong = true
		} else if lr.start > 0 {
			lr.end = copy(lr.buf[:], win)
			lr.start = 0
		}
		n, err := lr.r.Read(lr.buf[lr.end:])
		lr.end += n
		if n == 0 && err != nil {
			return nil, err
		}
	}
}

// readMessage reads one action, up to an empty line, like do_message: a
// header is a C string from here on (a NUL ends it, and a line starting
// with NUL is empty), and the lines past the 128th are dropped and make
// tooMany. It reuses m, raw and offs.
func (lr *lineReader) readMessage(m *message, raw *[]byte, offs *[]int) error {
	m.headers = m.headers[:0]
	m.tooMany = false
	buf := (*raw)[:0]
	lines := (*offs)[:0] // pairs: start, end of each line inside buf
	for {
		line, err := lr.readLine()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		if len(line) == 0 {
			break
		}
		if len(lines)/2 >= maxHeaderLines {
			m.tooMany = true
			continue
		}
		lines = append(lines, len(buf))
		buf = append(buf, line...)
		lines = append(lines, len(buf))
	}
	*raw, *offs = buf, lines
	if len(lines) == 0 {
		return nil
	}
	s := string(buf) // one allocation per message; headers are substrings
	for i := 0; i < len(lines); i += 2 {
		l := s[lines[i]:lines[i+1]]
		c := strings.IndexByte(l, ':')
		if c < 0 {
			m.headers = append(m.headers, header{name: l})
			continue
		}
		// astman_get_header skips the blanks (any byte below 33) after
		// the colon.
		m.headers = append(m.headers, header{name: l[:c], value: skipBlanks(l[c+1:])})
	}
	return nil
}
