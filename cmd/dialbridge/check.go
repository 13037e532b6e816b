package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/multcall/dialbridge/config"
)

func init() { register("check-config", runCheckConfig) }

// Exit statuses (contract section 1). 78 (EX_CONFIG, sysexits.h) is for
// what only a person can fix: bad settings, a refused login. The systemd
// unit does not restart on it (RestartPreventExitStatus=78). 2 stays the
// command-line usage error of the interactive subcommands; the daemon never
// uses it, because Go exits 2 on a panic and that must be restarted.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitConfig  = 78
)

// defaultConfigPath is --config's default: $DIALBRIDGE_CONFIG, else the
// checkout's configs/settings.yaml.
func defaultConfigPath() string {
	if p := os.Getenv("DIALBRIDGE_CONFIG"); p != "" {
		return p
	}
	return "configs/settings.yaml"
}

// fail prints one line naming the problem and returns the exit status.
func fail(stderr io.Writer, code int, format string, args ...any) int {
	fmt.Fprintf(stderr, "dialbridge: "+format+"\n", args...)
	return code
}

func runCheckConfig(args []string) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	path := fs.String("config", defaultConfigPath(), "settings file")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dialbridge check-config [--config FILE] [cell]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	s, err := config.Load(*path)
	if err != nil {
		return fail(os.Stderr, exitConfig, "%v", err)
	}
	if fs.NArg() > 0 {
		if _, err := s.Queue(fs.Arg(0)); err != nil {
			return fail(os.Stderr, exitConfig, "%v", err)
		}
	}
	fmt.Printf("%s: ok (%d cells, redis %s, ami %s as %q)\n", *path, len(s.Queues), s.Redis.Where(), s.AMI.Addr(), s.AMI.Username)
	return exitOK
}
