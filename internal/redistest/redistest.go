// Package redistest starts real redis-server processes for tests: a master
// with replicas, and Sentinels watching it, on free loopback ports, each in
// its own temporary directory, all killed when the test ends. A test that
// kills a master (kill -9) needs servers of its own: the shared server of
// the integration tier serves other tests running at the same time.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Available reports whether redis-server is installed.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Server is one redis-server (or Sentinel) process.
type Server struct {
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Client is a new client of the server (closed at the end of the test).
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL and waits for the process to end.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Alive reports whether the process still runs.
func (s *Server) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Start runs redis-server with extra arguments (after port, bind, dir,
// no snapshots, a log file) and waits until it answers PING.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	// A free port can be taken by another process between the probe and
	// the bind: try a few.
	for try := 0; try < 5; try++ {
		s := &Server{Port: freePort(t), Dir: dir}
		s.args = append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
		if lastErr = s.start(t, "redis-server", s.args...); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// Restart starts a killed server again on its port with its arguments
// (plus extra, e.g. --replicaof).
func (s *Server) Restart(t testing.TB, extra ...string) {
	t.Helper()
	if err := s.start(t, "redis-server", append(append([]string{}, s.args...), extra...)...); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) start(t testing.TB, bin string, args ...string) error {
	c := exec.Command(bin, args...)
	out, err := os.Create(filepath.Join(s.Dir, "stdout-"+strconv.FormatInt(time.Now().UnixNano(), 36)))
	if err != nil {
		return err
	}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		out.Close()
		return err
	}
	s.cmd, s.done = c, make(chan struct{})
	done := s.done
	go func() { _ = c.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() { _ = c.Process.Kill(); <-done })
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			return fmt.Errorf("%s on port %d exited: %s", bin, s.Port, lastLines(string(log), 5))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on port %d: no PING answer within 30 s: %v", bin, s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replicated starts a master and n replicas of it, and waits until every
// replica is online (the master's INFO replication lists it).
func Replicated(t testing.TB, n int, extra ...string) (master *Server, replicas []*Server) {
	t.Helper()
	master = Start(t, extra...)
	for i := 0; i < n; i++ {
		replicas = append(replicas, Start(t, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, extra...)...))
	}
	WaitReplicas(t, master, n)
	return master, replicas
}

// WaitReplicas waits (30 s at most) until m has n online replicas.
func WaitReplicas(t testing.TB, m *Server, n int) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, _ := rdb.Info(context.Background(), "replication").Result()
		if strings.Count(info, "state=online") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d replicas online after 30 s:\n%s", m.Addr(), n, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sentinels starts n Sentinels watching master under name, with a quorum
// of n/2+1 and down-after-milliseconds downAfter, and waits until each one
// knows the master's replicas.
func Sentinels(t testing.TB, name string, master *Server, replicas, n int, downAfter time.Duration) []*Server {
	t.Helper()
	var out []*Server
	for i := 0; i < n; i++ {
		var s *Server
		var lastErr error
		for try := 0; try < 5; try++ {
			s = &Server{Port: freePort(t), Dir: t.TempDir()}
			conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
				"sentinel monitor %s 127.0.0.1 %d %d\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 2\n",
				s.Port, s.Dir, filepath.Join(s.Dir, "redis.log"), name, master.Port, n/2+1,
				name, downAfter.Milliseconds(), name, name)
			path := filepath.Join(s.Dir, "sentinel.conf")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			s.args = []string{path, "--sentinel"}
			if lastErr = s.start(t, "redis-server", s.args...); lastErr == nil {
				break
			}
			s = nil
		}
		if s == nil {
			t.Fatalf("sentinel did not start: %v", lastErr)
		}
		out = append(out, s)
	}
	// Sentinels learn the replicas from the master's INFO (every 10 s at
	// first, then faster) and each other over hello messages: a failover
	// before that would find no replica to promote.
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range out {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		for {
			reps, _ := rdb.Do(context.Background(), "SENTINEL", "REPLICAS", name).Slice()
			others, _ := rdb.Do(context.Background(), "SENTINEL", "SENTINELS", name).Slice()
			if len(reps) >= replicas && len(others) >= n-1 {
				break
			}
			if time.Now().After(deadline) {
				rdb.Close()
				t.Fatalf("sentinel %s knows %d replicas and %d other sentinels after 60 s", s.Addr(), len(reps), len(others))
			}
			time.Sleep(100 * time.Millisecond)
		}
		rdb.Close()
	}
	return out
}

// Addrs lists the servers' addresses.
func Addrs(ss []*Server) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Addr()
	}
	return out
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
