// Package testport holds loopback ports for the whole of a test, so that a
// parallel test's listener on port 0 cannot be given them: a socket is
// bound to the port and never listens. The kernel answers a connection to
// it with RST, and never hands it out to a socket asking for port 0. A port
// merely closed again could be handed out meanwhile, and a test would then
// talk to another test's server.
package testport

import (
	"syscall"
	"testing"
)

// Reserve holds a loopback port that the test's own server may listen on
// later (the holding socket sets SO_REUSEADDR, as Go's listeners do).
// Until then, connections to it are refused.
func Reserve(t testing.TB) int { return hold(t, true) }

// Refusing holds a loopback port that refuses connections for the whole
// test.
func Refusing(t testing.TB) int { return hold(t, false) }

func hold(t testing.TB, reusable bool) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if reusable {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
