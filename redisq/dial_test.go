package redisq

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/internal/testport"
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

	deadPort := testport.Refusing(t)

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
