package ami

import (
	"bytes"
	"fmt"
)

// Bounds on what Asterisk may send in one line and in one message before
// the connection is dropped. amigo keeps whatever comes: a line in a
// bytes.Buffer until its "\n", a message in a map until its empty line,
// and after "Response: Follows" every line appended to one string (a copy
// each time). Without bounds one peer that never sends "\n" (or never an
// empty line) grows the daemon without end.
//
// What a real Asterisk sends is far below them: in the AMI and PJSIP
// transcripts captured from Asterisk 22 (shared/docs) the longest line is
// 177 bytes and the longest message under 5 KB. The longest lines Asterisk
// can produce are channel variables (ChanVariable, VarSet) and application
// data, which the dialplan builds in buffers of 4 KiB (VAR_BUF_SIZE). 64 KiB per line is sixteen times a full dialplan buffer, and
// 1 MiB per message holds sixteen such lines: no event of the classes we
// read (call, reporting) comes close. A peer past them is broken or
// hostile, and a dropped connection is the one thing our client already
// handles well (reconnect with backoff, calls in flight reported lost).
const (
	maxEventLine    = 64 << 10
	maxEventMessage = 1 << 20
)

// lineGuard follows the stream Asterisk sends, chunk by chunk, and says
// when a line or a message is over its bound. Lines end at "\n"; a line
// that is empty or only "\r" ends a message, as amigo (bufio.ReadLine)
// reads them.
type lineGuard struct {
	line   int  // bytes of the current line before its "\n" so far, a "\r" included
	msg    int  // bytes of the current message so far
	onlyCR bool // the current line so far is just "\r"
}

// check takes the next chunk. It returns how many bytes at its start may
// be passed on (all of them, or up to the end of the last whole line
// before the bound was crossed) and, when a bound was crossed, why.
func (g *lineGuard) check(p []byte) (int, error) {
	safe := 0
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			n := len(p) - i
			g.line += n
			g.msg += n
			if err := g.over(g.line, g.msg); err != nil {
				return safe, err
			}
			g.onlyCR = g.line == 1 && p[len(p)-1] == '\r'
			return len(p), nil
		}
		lineLen := g.line + j
		empty := lineLen == 0 || (lineLen == 1 && ((j == 1 && p[i] == '\r') || (j == 0 && g.onlyCR)))
		if empty {
			g.msg = 0
		} else {
			g.msg += j + 1
		}
		if err := g.over(lineLen, g.msg); err != nil {
			return safe, err
		}
		g.line, g.onlyCR = 0, false
		i += j + 1
		safe = i
	}
	return len(p), nil
}

func (g *lineGuard) over(line, msg int) error {
	switch {
	case line > maxEventLine:
		return fmt.Errorf("AMI peer sent a line over %d bytes", maxEventLine)
	case msg > maxEventMessage:
		return fmt.Errorf("AMI peer sent a message over %d bytes", maxEventMessage)
	}
	return nil
}
