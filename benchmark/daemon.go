package benchmark

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/multcall/dialbridge/config"
)

// proc is the daemon as it is deployed: the dialbridge binary in a process
// of its own ("dialbridge run --config … <cell>"). Its heap and its garbage
// collector are its own, not shared with the harness's simulated Multcall
// and Asterisk, which in production are other programs too.
type proc struct {
	cmd      *exec.Cmd
	httpAddr string
	stderr   syncBuffer
	exited   chan struct{}
}

// procSettings are what the bench varies in the daemon's settings.
type procSettings struct {
	Target
	Dir        string        // the settings file goes here
	Name       string        // of the settings file (and of the log, without LogPath)
	CommandAck time.Duration // timeouts.command_ack; 0: the settings' default
}

// Settings are the daemon's settings for t, the same in its own process
// and in process (package main's startBenchDaemon): only the addresses, the
// cell, its threads and the log vary. httpAddr is the listener of
// /healthz, /metrics and /debug/pprof ("": none); ack is
// timeouts.command_ack (0: the settings' default).
func Settings(t Target, httpAddr string, ack time.Duration) (*config.Settings, []byte, error) {
	host, port, _ := strings.Cut(t.RedisAddr, ":")
	var ami strings.Builder
	fmt.Fprintf(&ami, "host: 127.0.0.1, port: %d, username: dialbridge, secret: secret", t.AMIPort)
	if t.AMIConnections > 0 {
		fmt.Fprintf(&ami, ", connections: %d", t.AMIConnections)
	}
	if t.AMIGuard != "" {
		fmt.Fprintf(&ami, ", guard: %s", t.AMIGuard)
	}
	timeouts := "shutdown_grace: 2s"
	if ack > 0 {
		timeouts += ", command_ack: " + ack.String()
	}
	redisExtra := ""
	if t.WaitReplicas > 0 {
		redisExtra = fmt.Sprintf(", wait_replicas: %d", t.WaitReplicas)
	}
	yaml := fmt.Sprintf(`log: {level: info, format: json, location: %q}
redis: {host: %s, port: %s, prefix: %s%s}
ami: {%s}
timeouts: {%s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, priority: 1, timeout: 30s}
queues: [{name: %q, threads: %d%s}]
`, t.LogPath, host, port, t.Prefix, redisExtra, ami.String(), timeouts, t.Cell, t.Threads, t.Trunk.queueField())
	yaml += t.Trunk.yaml()
	if httpAddr != "" {
		yaml += fmt.Sprintf("http: {listen: %q, pprof: true, allow_unauthenticated_loopback: true}\n", httpAddr)
	}
	s, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, nil, fmt.Errorf("bench daemon settings: %w", err)
	}
	return s, []byte(yaml), nil
}

// startProc writes the settings of s and starts bin with them. The daemon
// serves /healthz, /metrics and /debug/pprof on a free loopback port. env
// is added to the bench's own environment (GOGC, GOTRACEBACK …).
func startProc(bin string, s procSettings, env ...string) (*proc, error) {
	httpAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	if s.LogPath == "" {
		s.LogPath = filepath.Join(s.Dir, s.Name+"-daemon.log")
	}
	_, yaml, err := Settings(s.Target, httpAddr, s.CommandAck)
	if err != nil {
		return nil, err
	}
	settings := filepath.Join(s.Dir, s.Name+".yaml")
	if err := os.WriteFile(settings, yaml, 0o600); err != nil {
		return nil, fmt.Errorf("daemon settings: %w", err)
	}
	p := &proc{httpAddr: httpAddr, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "--config", settings, s.Cell)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }() //nolint:errcheck // the exit status is read from stderr
	return p, nil
}

func (p *proc) url(path string) string { return "http://" + p.httpAddr + path }
func (p *proc) pid() int               { return p.cmd.Process.Pid }

// healthy reports whether /healthz answers 200: Redis and AMI up, the cell
// claiming.
func (p *proc) healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url("/healthz"), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// failure describes why the daemon is gone or not ready: its last lines of
// stderr.
func (p *proc) failure() string {
	select {
	case <-p.exited:
		return "daemon exited: " + lastLines(p.stderr.String(), 5)
	default:
		return "daemon: " + lastLines(p.stderr.String(), 5)
	}
}

// stop asks the daemon to stop (SIGTERM, as systemd does) and waits for it;
// it is killed after grace.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // the wait below tells
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
		p.kill()
		return errors.New("daemon did not stop on SIGTERM within " + grace.String())
	}
}

func (p *proc) kill() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill() //nolint:errcheck // exited below either way
		<-p.exited
	}
}

// procDaemon is a proc as the e2e and paced scenarios drive it.
type procDaemon struct{ *proc }

func (d procDaemon) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return d.stop(15 * time.Second)
	case <-d.exited:
		return errors.New(d.failure())
	}
}

func (d procDaemon) Ready() bool { return d.healthy(context.Background()) }

// SubprocessStart is the StartFunc that runs bin as its own process, with
// env added to its environment.
func SubprocessStart(bin, dir string, env ...string) StartFunc {
	return func(_ context.Context, t Target) (Daemon, error) {
		name := "daemon"
		if t.LogPath != "" {
			name = strings.TrimSuffix(filepath.Base(t.LogPath), ".log")
		}
		p, err := startProc(bin, procSettings{Target: t, Dir: dir, Name: name}, env...)
		if err != nil {
			return nil, err
		}
		return procDaemon{p}, nil
	}
}

// profiler is a daemon that profiles itself on request: the subprocess,
// through its /debug/pprof endpoints.
type profiler interface {
	// record writes the next seconds of kind ("profile": CPU, "trace": the
	// execution trace) to path; wait returns when it is written.
	record(ctx context.Context, kind string, seconds int, path string) (wait func() error)
	// heapProfile writes the heap profile (allocations since the start
	// included) after a GC.
	heapProfile(ctx context.Context, path string) error
}

func (d procDaemon) record(ctx context.Context, kind string, seconds int, path string) func() error {
	done := make(chan error, 1)
	go func() {
		done <- fetchTo(ctx, d.url(fmt.Sprintf("/debug/pprof/%s?seconds=%d", kind, seconds)), path)
	}()
	return func() error { return <-done }
}

func (d procDaemon) heapProfile(ctx context.Context, path string) error {
	// The heap profile carries the allocation samples too (pprof
	// -sample_index=alloc_space); gc=1 brings them up to date.
	return fetchTo(ctx, d.url("/debug/pprof/heap?gc=1"), path)
}
