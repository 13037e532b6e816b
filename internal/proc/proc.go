// Package proc tells, from /proc (Linux), whether a process that wrote a
// heartbeat is still running on this machine. A restarted daemon uses it to
// settle its dead predecessor's commands at once instead of waiting for the
// predecessor's heartbeat to expire (issue 16 part 4).
//
// A pid alone proves nothing: pids are reused, and another machine or
// another pid namespace (a container) has its own. So an Identity carries
// the kernel's boot id (unique per machine and boot), the pid namespace,
// and the process start time (clock ticks since boot, field 22 of
// /proc/<pid>/stat). A process is known gone only when the boot id and the
// pid namespace are ours and no process with that pid and start time runs.
package proc

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Identity names one process on one machine. Fields are empty when they
// cannot be read (not Linux, /proc not mounted).
type Identity struct {
	PID   int
	Start string // starttime of /proc/<pid>/stat, clock ticks since boot
	Boot  string // /proc/sys/kernel/random/boot_id
	PidNS string // the target of /proc/self/ns/pid, e.g. "pid:[4026531836]"
}

// root is where the proc file system is mounted.
const root = "/proc"

// Self is this process's identity.
func Self() Identity {
	pid := os.Getpid()
	id := Identity{PID: pid}
	id.Start, _, _ = stat(pid)
	id.Boot = bootID()
	id.PidNS = pidNS()
	return id
}

// Of is the identity of the running process pid of this machine.
func Of(pid int) (Identity, error) {
	start, _, err := stat(pid)
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: pid, Start: start, Boot: bootID(), PidNS: pidNS()}, nil
}

// Complete reports whether every field is known: only then can another
// process decide that this one is gone.
func (id Identity) Complete() bool {
	return id.PID > 0 && id.Start != "" && id.Boot != "" && id.PidNS != ""
}

// Gone reports whether the process id names certainly does not run any
// more. known is false when this machine cannot tell: another boot or
// machine, another pid namespace, an incomplete identity, or /proc
// unreadable. A zombie counts as gone: it can no longer beat.
func Gone(id Identity) (gone, known bool) {
	if !id.Complete() {
		return false, false
	}
	self := Self()
	if !self.Complete() || self.Boot != id.Boot || self.PidNS != id.PidNS {
		return false, false
	}
	start, state, err := stat(id.PID)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Absent from /proc, or hidden: under the unit's ProtectProc=
		// invisible another user's processes are not shown. Only the
		// kernel's "no such process" proves it gone.
		if !noSuchProcess(id.PID) {
			return false, false
		}
		return true, true
	case err != nil:
		return false, false
	case start != id.Start:
		return true, true // the pid was reused by another process
	case state == "Z" || state == "X":
		return true, true
	}
	return false, true
}

// stat reads the start time and state of a process.
func stat(pid int) (start, state string, err error) {
	b, err := os.ReadFile(root + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	return parseStat(string(b))
}

// parseStat reads fields 3 (state) and 22 (starttime) of a stat line. The
// command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from its last ")".
func parseStat(s string) (start, state string, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", "", errors.New("proc: stat line without a command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3; field 22 is f[19].
	if len(f) < 20 {
		return "", "", errors.New("proc: short stat line")
	}
	return f[19], f[0], nil
}

func bootID() string {
	b, err := os.ReadFile(root + "/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func pidNS() string {
	s, err := os.Readlink(root + "/self/ns/pid")
	if err != nil {
		return ""
	}
	return s
}
