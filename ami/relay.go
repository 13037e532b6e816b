package ami

import (
	"io"
	"net"
	"sync"
	"time"
)

// relay stands between amigo and Asterisk so that lineGuard sees every byte
// before amigo buffers it. amigo cannot be handed a connection or a dialer
// (v0.1.11 calls net.DialTimeout("tcp", host:port) itself), so we dial
// Asterisk ourselves and give amigo the address of a loopback listener
// that accepts exactly one connection and joins it to ours: Asterisk to
// amigo through the guard, amigo to Asterisk as is.
//
// The listener lives from Connect until amigo's dial arrives (or the login
// deadline). Another local process that connected first would only get an
// unauthenticated AMI connection, as it would by dialing Asterisk itself;
// amigo would then fail to connect and the session retry.
type relay struct {
	ln     net.Listener
	up     net.Conn // to Asterisk
	onTrip func(error)
	onDone func()

	mu     sync.Mutex
	down   net.Conn // amigo's, once accepted
	closed bool
	trip   error
	done   chan struct{} // closed when the relay's goroutines have ended
}

// startRelay listens on loopback for amigo and relays its connection to up
// once accepted; acceptWithin bounds the wait. onTrip is called once when
// the guard closes the connection, onDone when the relay's goroutines end.
// On error up is left open.
func startRelay(up net.Conn, acceptWithin time.Duration, onTrip func(error), onDone func()) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp", "[::1]:0"); err != nil {
			return nil, err
		}
	}
	r := &relay{ln: ln, up: up, onTrip: onTrip, onDone: onDone, done: make(chan struct{})}
	go r.run(acceptWithin)
	return r, nil
}

// addr is where amigo must dial.
func (r *relay) addr() *net.TCPAddr { return r.ln.Addr().(*net.TCPAddr) }

func (r *relay) run(acceptWithin time.Duration) {
	defer func() {
		r.close()
		close(r.done)
		if r.onDone != nil {
			r.onDone()
		}
	}()
	if tl, ok := r.ln.(*net.TCPListener); ok {
		tl.SetDeadline(time.Now().Add(acceptWithin))
	}
	down, err := r.ln.Accept()
	r.ln.Close()
	if err != nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		down.Close()
		return
	}
	r.down = down
	r.mu.Unlock()

	toAsterisk := make(chan struct{})
	go func() {
		defer close(toAsterisk)
		// A plain copy: splice(2) measured no faster for AMI's small
		// writes, and needs a pipe per relay.
		io.CopyBuffer(struct{ io.Writer }{r.up}, struct{ io.Reader }{down}, make([]byte, 16<<10))
		r.close()
	}()
	r.fromAsterisk(down)
	r.close()
	<-toAsterisk
}

// fromAsterisk passes what Asterisk sends on to amigo while the guard
// allows it.
func (r *relay) fromAsterisk(down net.Conn) {
	var g lineGuard
	buf := make([]byte, 32<<10)
	for {
		n, err := r.up.Read(buf)
		if n > 0 {
			ok, gerr := g.check(buf[:n])
			if ok > 0 {
				if _, werr := down.Write(buf[:ok]); werr != nil {
					return
				}
			}
			if gerr != nil {
				r.tripped(gerr)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) tripped(err error) {
	r.mu.Lock()
	first := r.trip == nil && !r.closed
	if first {
		r.trip = err
	}
	r.mu.Unlock()
	if first && r.onTrip != nil {
		r.onTrip(err)
	}
}

// tripError is why the guard closed the connection, or nil. The methods
// callers use on a connection's relay accept a nil relay (unguarded).
func (r *relay) tripError() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trip
}

// close ends both connections (amigo sees the end of its connection, as if
// Asterisk had closed it) and the listener if it still waits. It does not
// wait for the goroutines: see wait.
func (r *relay) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	down := r.down
	r.mu.Unlock()
	r.ln.Close()
	r.up.Close()
	if down != nil {
		down.Close()
	}
}

// wait blocks until the relay's goroutines have ended.
func (r *relay) wait() { <-r.done }
