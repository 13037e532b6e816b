package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
)

func init() { register("simulate-ami", runSimulateAMI) }

// runSimulateAMI runs a standalone AMI simulator (see package amisim) until
// SIGINT or SIGTERM.
func runSimulateAMI(args []string) int {
	fs := flag.NewFlagSet("simulate-ami", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	listen := fs.String("listen", "127.0.0.1:5038", "TCP address to listen on")
	username := fs.String("username", "dialbridge", "AMI username accepted by Login")
	secret := fs.String("secret", "secret", "AMI secret accepted by Login")
	rulesText := fs.String("rules", "", "outcome rules, e.g. \"suffix=1:busy;suffix=2:noanswer;answer,talk=2s\" (default: the demo mix, keyed on the last digit); carrier=<trunk>:cps=N,max=N,dead=congestion|nochannel entries model a SIP carrier per trunk, killed and revived at run time with the AMI action Command: amisim kill|revive <trunk>")
	authDelay := fs.Duration("auth-delay", time.Second, "pause before answering a failed Login")
	shuffleSeed := fs.Int64("shuffle-seed", 0, "non-zero: shuffle OriginateResponse among the channel events of the same instant, with this seed")
	writeTimeout := fs.Duration("write-timeout", 100*time.Millisecond, "drop a session whose socket accepts nothing for this long (Asterisk's writetimeout; negative: never)")
	maxQueue := fs.Int("max-queue", 100000, "drop a session with more messages than this waiting to be written (negative: no bound)")
	verbose := fs.Bool("verbose", false, "log sessions and every originate to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dialbridge simulate-ami [flags]\n\n"+
			"A standalone Asterisk Manager Interface simulator: it accepts Login, Ping, Events,\n"+
			"Originate (played according to the rules), CoreShowChannels, Status, Hangup...\n\n"+
			"Rule syntax: RULE[;RULE...], RULE = [prefix=D|suffix=D[,...]:]OUTCOME[,ring=DUR][,talk=DUR|forever]\n"+
			"[,cause=N][,delay=DUR][,play][,message=TEXT]; OUTCOME = answer busy congestion noanswer hangup\n"+
			"failed doesnotexist refuse noresponse drop. First match wins; no match answers.\n\n"+
			"Default rules: %s\n\nFlags:\n", amisim.FormatRules(amisim.DefaultMix()))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "dialbridge simulate-ami: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	rules := amisim.DefaultMix()
	var carriers map[string]amisim.Carrier
	if *rulesText != "" {
		var err error
		if rules, err = amisim.ParseRules(*rulesText); err != nil {
			fmt.Fprintf(os.Stderr, "dialbridge simulate-ami: --rules: %v\n", err)
			return 2
		}
		// carrier=<trunk>:cps=N,max=N,dead=… entries model a SIP carrier
		// per trunk (amisim's doc.go); at run time:
		// Action: Command / Command: amisim kill <trunk> | revive <trunk>.
		if carriers, err = amisim.ParseCarriers(*rulesText); err != nil {
			fmt.Fprintf(os.Stderr, "dialbridge simulate-ami: --rules: %v\n", err)
			return 2
		}
	}
	if *authDelay == 0 {
		*authDelay = -1 // amisim: 0 means the default; -1 means none
	}
	if *writeTimeout == 0 {
		*writeTimeout = -1
	}
	if *maxQueue == 0 {
		*maxQueue = -1
	}
	cfg := amisim.Config{
		Addr:         *listen,
		Username:     *username,
		Secret:       *secret,
		Rules:        rules,
		Carriers:     carriers,
		AuthDelay:    *authDelay,
		ShuffleSeed:  *shuffleSeed,
		WriteTimeout: *writeTimeout,
		MaxQueue:     *maxQueue,
		MaxRecords:   -1, // a long-running simulator keeps no history
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	if *verbose {
		cfg.Logf = logger.Printf
	}
	srv, err := amisim.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dialbridge simulate-ami: %v\n", err)
		return 1
	}
	fmt.Printf("AMI simulator listening on %s (username %q, secret %q)\n", srv.Addr(), *username, *secret)
	if *verbose {
		logger.Printf("rules: %s", amisim.FormatRules(rules))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	stop()
	st := srv.Stats()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "dialbridge simulate-ami: close: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "AMI simulator stopped: %d originates, %d calls, %d logins (%d failed), %d events sent, %d sessions dropped\n",
		st.Originates, st.CallsStarted, st.Logins, st.FailedLogins, st.EventsSent, st.SessionsDropped)
	return 0
}
