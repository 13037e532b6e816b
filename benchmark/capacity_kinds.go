package benchmark

import (
	"fmt"
	"strconv"
	"time"
)

// capacityKind is one kind of call the capacity bench measures: what the
// AMI simulator does, whether the simulated Multcall confirms, and what
// the command looks like. Its name is the result status every call must
// get, so a run that measured something else fails instead of printing a
// wrong figure.
type capacityKind struct {
	name    string
	rules   string        // the AMI simulator's (amisim.ParseRules)
	confirm bool          // the simulated Multcall confirms every ACK
	ack     time.Duration // timeouts.command_ack of the daemon (0: the settings' default)
	invalid bool          // the command breaks a rule (a letter in the number) but has a usable id
	prime   bool          // every id is first dialed once, unmeasured: the measured push repeats them (duplicate)
	rate    float64       // calls/s offered (0: pushed as fast as the daemon takes them)
	hold    time.Duration // answered calls talk this long (with rate: rate × hold calls in flight)
	label   string        // the table's name ("": name)
}

// capacityAckTimeout is the daemon's command_ack in the ack_timeout kind:
// short (the settings allow 100 ms) so that threads commands waiting for
// it do not make the run long; Redis and the daemon do the same work for
// any timeout.
const capacityAckTimeout = 200 * time.Millisecond

// capacityHold is the talk time of the held-calls kind: long enough for
// thousands of calls in flight at the paced rate, short enough for a run
// of seconds.
const capacityHold = 4 * time.Second

// capacityKinds are the kinds in the table's order. busy (Reason 5) and
// no_answer come at once: no_answer as the network's cause 19 (Reason 0),
// not as Reason 3 after the originate timeout (30 s of ringing per call
// would make the run minutes long; the daemon writes the same to Redis
// either way).
func capacityKinds(pacedRates []float64) []capacityKind {
	ks := []capacityKind{
		{name: "answered", rules: "answer", confirm: true},
		{name: "busy", rules: "busy", confirm: true},
		{name: "no_answer", rules: "hangup,cause=19", confirm: true},
		{name: "ack_timeout", rules: "answer", ack: capacityAckTimeout},
		{name: "duplicate", rules: "answer", confirm: true, prime: true},
		{name: "invalid", rules: "answer", invalid: true},
	}
	for _, r := range pacedRates {
		ks = append(ks, capacityKind{name: "answered", rules: "answer", confirm: true, rate: r,
			label: "answered, paced " + strconv.FormatFloat(r, 'f', -1, 64) + "/s"})
	}
	// Calls held in conversation, as in a call center: every one of them
	// sits in the daemon's claimed list until its result, so each result's
	// removal from that list (LREM) walks a list of that many entries.
	if n := len(pacedRates); n > 0 {
		r := pacedRates[n-1]
		ks = append(ks, capacityKind{name: "answered", rules: "answer,talk=" + capacityHold.String(), confirm: true, rate: r, hold: capacityHold,
			label: fmt.Sprintf("answered, paced %s/s, %s talk (≈ %s in flight)", strconv.FormatFloat(r, 'f', -1, 64), capacityHold, fmtNum(r*capacityHold.Seconds()))})
	}
	return ks
}

func (k capacityKind) title() string {
	if k.label != "" {
		return k.label
	}
	return k.name
}

// capacityCommand is the dial command of id (index i for the number).
func (k capacityKind) command(id string, i int) []byte {
	number := cmdNumber(i)
	if k.invalid {
		number = "55x" + number[3:] // a letter: "number may only contain 0-9 + * #"
	}
	return []byte(`{"id":"` + id + `","number":"` + number + `"}`)
}
