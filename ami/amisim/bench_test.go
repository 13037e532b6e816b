package amisim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchConn is a bare AMI connection for the benchmarks.
type benchConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func benchDial(b *testing.B, srv *Server, events string) *benchConn {
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	if _, err := bc.br.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(conn, "Action: Login\r\nUsername: dialbridge\r\nSecret: secret\r\nEvents: %s\r\nActionID: l\r\n\r\n", events)
	if err := bc.skipMessage(); err != nil {
		b.Fatal(err)
	}
	return bc
}

// skipMessage reads one message and reports whether it was a Success.
func (bc *benchConn) skipMessage() error {
	ok := false
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			if !ok {
				return fmt.Errorf("not a success")
			}
			return nil
		}
		if bytes.HasPrefix(line, []byte("Response: Success")) || bytes.HasPrefix(line, []byte("Event:")) {
			ok = true
		}
	}
}

// BenchmarkOriginate measures Async Originates answered per second, each
// connection waiting for the Response before sending the next (as amigo
// does), while one listener session receives every call's events. Calls are
// answered at once and hang up at once (7 events each).
func BenchmarkOriginate(b *testing.B) {
	for _, conns := range []int{1, 4, 16} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			benchOriginate(b, conns, false)
		})
	}
	b.Run("pipelined", func(b *testing.B) { benchOriginate(b, 1, true) })
}

func benchOriginate(b *testing.B, conns int, pipelined bool) {
	srv, err := New(Config{MaxRecords: -1, WriteTimeout: 5 * time.Second, MaxQueue: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	listener := benchDial(b, srv, "on")
	var drained sync.WaitGroup
	drained.Add(1)
	go func() {
		defer drained.Done()
		io.Copy(io.Discard, listener.br)
	}()
	cs := make([]*benchConn, conns)
	for i := range cs {
		cs[i] = benchDial(b, srv, "off")
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, bc := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func(i, n int, bc *benchConn) {
			defer wg.Done()
			msg := func(j int) string {
				return fmt.Sprintf("Action: Originate\r\nActionID: b%d-%d\r\nChannel: PJSIP/55119%07d@trunk\r\nContext: agents\r\nExten: s\r\nPriority: 1\r\nTimeout: 30000\r\nCallerID: \"Multcall\" <1133334444>\r\nAsync: true\r\nChannelId: bench-%d-%d\r\nVariable: DIALBRIDGE_ID=c-%d,DIALBRIDGE_CALL_CODE=%d\r\nAmigoConnID: 1\r\n\r\n", i, j, j, i, j, j, j)
			}
			if pipelined {
				go func() {
					w := bufio.NewWriterSize(bc.conn, 64<<10)
					for j := 0; j < n; j++ {
						io.WriteString(w, msg(j))
					}
					w.Flush()
				}()
				for j := 0; j < n; j++ {
					if err := bc.skipMessage(); err != nil {
						errs <- err
						return
					}
				}
				return
			}
			for j := 0; j < n; j++ {
				if _, err := io.WriteString(bc.conn, msg(j)); err != nil {
					errs <- err
					return
				}
				if err := bc.skipMessage(); err != nil {
					errs <- err
					return
				}
			}
		}(i, n, bc)
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "originates/s")
	for _, bc := range cs {
		bc.conn.Close()
	}
	if st := srv.Stats(); st.SessionsDropped != 0 {
		b.Fatalf("listener dropped: %+v", st)
	}
	listener.conn.Close()
	drained.Wait()
}

// BenchmarkInFlight starts calls that stay up (talk forever) to measure the
// cost of many calls in flight: b.N calls live at once at the end.
func BenchmarkInFlight(b *testing.B) {
	srv, err := New(Config{MaxRecords: -1, Rules: []Rule{{Outcome: OutcomeNoAnswer}}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	bc := benchDial(b, srv, "off")
	defer bc.conn.Close()
	b.ResetTimer()
	go func() {
		w := bufio.NewWriterSize(bc.conn, 64<<10)
		for j := 0; j < b.N; j++ {
			fmt.Fprintf(w, "Action: Originate\r\nActionID: f%d\r\nChannel: PJSIP/%d@trunk\r\nAsync: true\r\nTimeout: 600000\r\n\r\n", j, j)
		}
		w.Flush()
	}()
	for j := 0; j < b.N; j++ {
		if err := bc.skipMessage(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := srv.Stats(); st.InFlight != b.N {
		b.Fatalf("in flight %d, want %d", st.InFlight, b.N)
	}
}
