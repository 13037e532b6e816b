package redisq

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestPoolSize(t *testing.T) {
	t.Parallel()
	tests := []struct{ threads, cells, want int }{
		{0, 0, 18}, {1, 1, 18}, {80, 1, 28}, {1000, 2, 145}, {100000, 1, 256},
	}
	for _, tt := range tests {
		if got := PoolSize(tt.threads, tt.cells); got != tt.want {
			t.Errorf("PoolSize(%d, %d) = %d, want %d", tt.threads, tt.cells, got, tt.want)
		}
	}
}

func TestDial(t *testing.T) {
	t.Parallel()
	const password = "s3cr3t-pa55"
	m := miniredis.RunT(t)
	m.RequireAuth(password)
	host, portStr, _ := net.SplitHostPort(m.Addr())
	port, _ := strconv.Atoi(portStr)

	deadPort := refusingPort(t)

	tests := []struct {
		name    string
		opts    DialOptions
		wantErr string
	}{
		{"ok", DialOptions{Host: host, Port: port, Password: password, Threads: 100}, ""},
		{"wrong port", DialOptions{Host: "127.0.0.1", Port: deadPort, Password: password},
			"redis 127.0.0.1:" + strconv.Itoa(deadPort) + ": "},
		{"wrong password", DialOptions{Host: host, Port: port, Password: password + "x"},
			"redis " + m.Addr() + ": "},
		{"TLS to a plain server", DialOptions{Host: host, Port: port, Password: password, TLS: true},
			"redis " + m.Addr() + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rdb, err := Dial(ctx, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer rdb.Close()
				if got := rdb.(*redis.Client).Options().PoolSize; got != PoolSize(100, 1) {
					t.Errorf("pool size %d", got)
				}
				return
			}
			if err == nil {
				rdb.Close()
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantErr) {
				t.Errorf("error %q does not start with %q", msg, tt.wantErr)
			}
			if strings.Contains(msg, password) {
				t.Errorf("error %q shows the password", msg)
			}
			t.Log(msg)
		})
	}
}

// refusingPort is a loopback port that refuses connections for the whole
// test: a socket is bound to it but never listens, so the kernel answers
// RST and no parallel test (a miniredis on port 0) can be given it. A port
// merely closed again could be.
func refusingPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
