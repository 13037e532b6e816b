// Command dialbridge is the bridge between Multcall (through Redis) and
// Asterisk (through AMI). This package only wires the other packages
// together: see README.md for what each subcommand does.
package main

import (
	"fmt"
	"os"
)

// Set by the linker: -ldflags "-X main.version=…".
var version = "dev"

const usage = `dialbridge - Multcall's dial commands from Redis to Asterisk AMI

Usage:
  dialbridge run [--config FILE] <cell>         the daemon for one cell
  dialbridge check-config [--config FILE] [cell]  validate settings and exit
  dialbridge simulate-ami [flags]               a standalone AMI simulator (no PBX needed)
  dialbridge queue [--config FILE] [--operators A,B] [--cell C]   call queue manager on stdin/stdout
  dialbridge queue serve [--listen ADDR] [--cell C]   call queue manager over TCP
  dialbridge queue client [--addr ADDR]         command line for "queue serve"
  dialbridge monitor [--redis ADDR] [--interval 1s] [--cell C …] [--once] [--json]   live terminal monitor
  dialbridge demo [--rate 2] [--duration 0]     everything on an embedded default, monitor on screen
  dialbridge bench [--redis ADDR] [--only baseline,e2e,paced,inflight,acd] [--runs 3]   load benchmarks
  dialbridge version | --version

Run "dialbridge <command> -h" for the flags of a command.
`

// commands maps a subcommand to its entry point. Each returns the process
// exit code; each lives in its own file.
var commands = map[string]func(args []string) int{}

func register(name string, run func(args []string) int) { commands[name] = run }

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	case "version", "--version", "-version":
		fmt.Printf("dialbridge %s\n", version)
		return 0
	}
	run, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "dialbridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return run(args[1:])
}
