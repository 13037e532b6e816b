//go:build !unix

package proc

// noSuchProcess cannot tell without signal 0: never gone.
func noSuchProcess(int) bool { return false }
