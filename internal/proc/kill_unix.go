//go:build unix

package proc

import (
	"errors"
	"syscall"
)

// noSuchProcess asks the kernel (signal 0: nothing is sent) whether pid
// exists in our pid namespace. EPERM means it exists and belongs to
// another user.
func noSuchProcess(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
