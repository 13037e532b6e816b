package redisq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/multcall/dialbridge/bridge"
)

// MaxItemBytes is the largest string the daemon accepts in a reply from
// Redis. Redis lists are written by others (Multcall, anyone with the
// password): a 256 MB dial item read whole took the daemon from 19 MB to
// 810 MB, and go-redis allocates a bulk string's full length as soon as it
// reads its header. The contract (section 2) makes an item over 64 KB
// unparseable, so nothing larger is ever needed by the daemon itself.
const MaxItemBytes = bridge.MaxItemBytes

// ErrItemTooBig is the read error of a connection that met a string over
// MaxItemBytes in a reply. go-redis drops that connection; the caller
// settles the item inside Redis, where it lies (see screenScript).
var ErrItemTooBig = errors.New("redis reply holds a string over the 64 KB a dial command or confirmation may be")

// guardDialer wraps a go-redis dialer so every connection it makes refuses
// replies carrying a string over max bytes, before go-redis reads the
// string's header (and so before it allocates).
func guardDialer(base func(ctx context.Context, network, addr string) (net.Conn, error), max int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := base(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &guardedConn{Conn: c, scan: respScanner{max: max}}, nil
	}
}

// guardedConn passes a connection's bytes through a RESP scanner.
type guardedConn struct {
	net.Conn
	mu   sync.Mutex
	scan respScanner
}

func (g *guardedConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.scan.err != nil {
		return 0, g.scan.err
	}
	n, err := g.Conn.Read(p)
	if serr := g.scan.feed(p[:n]); serr != nil {
		// Nothing of this read reaches go-redis: the connection is done.
		return 0, serr
	}
	return n, err
}

// respScanner follows the frames of a RESP2/RESP3 reply stream just enough
// to see each string's declared length. Aggregates ('*', '%', '~', '>',
// '|') need no bookkeeping: their elements follow as frames of their own.
type respScanner struct {
	max   int64
	state int   // scanType, scanLine, scanBody
	kind  byte  // type byte of the frame whose line is being read
	num   int64 // the number on a bulk header line
	neg   bool
	digit bool
	skip  int64 // body bytes (plus CRLF) left to pass
	err   error
}

const (
	scanType = iota
	scanLine
	scanBody
)

func (s *respScanner) feed(b []byte) error {
	for i := 0; i < len(b); i++ {
		switch s.state {
		case scanType:
			s.kind, s.num, s.neg, s.digit = b[i], 0, false, false
			s.state = scanLine
		case scanLine:
			c := b[i]
			switch {
			case c == '\n':
				s.state = scanType
				if isBulk(s.kind) && s.digit && !s.neg {
					if s.num > s.max {
						s.err = fmt.Errorf("%w (a string of %d bytes)", ErrItemTooBig, s.num)
						return s.err
					}
					s.skip, s.state = s.num+2, scanBody
				}
			case c == '-' && !s.digit:
				s.neg = true
			case c >= '0' && c <= '9' && isBulk(s.kind):
				s.digit = true
				if s.num <= s.max { // past max the value no longer matters
					s.num = s.num*10 + int64(c-'0')
				}
			}
		case scanBody:
			n := min(s.skip, int64(len(b)-i))
			s.skip -= n
			i += int(n) - 1
			if s.skip == 0 {
				s.state = scanType
			}
		}
	}
	return nil
}

// isBulk: blob string, verbatim string, blob error.
func isBulk(kind byte) bool { return kind == '$' || kind == '=' || kind == '!' }
