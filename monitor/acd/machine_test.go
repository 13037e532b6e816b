package acd

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// ReferenceTranscript is contract section 5's transcript: "> " lines are
// typed, the others printed.
const referenceTranscript = `> call 1
Call 1 received
Call 1 ringing for operator A
> answer A
Call 1 answered by operator A
> hangup 1
Call 1 finished and operator A available
> call 2
Call 2 received
Call 2 ringing for operator A
> call 3
Call 3 received
Call 3 ringing for operator B
> answer A
Call 2 answered by operator A
> answer B
Call 3 answered by operator B
> call 4
Call 4 received
Call 4 waiting in queue
> call 5
Call 5 received
Call 5 waiting in queue
> hangup 3
Call 3 finished and operator B available
Call 4 ringing for operator B
> hangup 2
Call 2 finished and operator A available
Call 5 ringing for operator A
> answer B
Call 4 answered by operator B
> reject A
Call 5 rejected by operator A
Call 5 ringing for operator A
> call 6
Call 6 received
Call 6 waiting in queue
> hangup 5
Call 5 missed
Call 6 ringing for operator A
> call 7
Call 7 received
Call 7 waiting in queue
> hangup 7
Call 7 missed
> hangup 6
Call 6 missed
> hangup 4
Call 4 finished and operator B available
`

func ops(spec string) []Operator {
	var out []Operator
	for _, f := range strings.Split(spec, ",") {
		id, tier, _ := strings.Cut(f, ":")
		t, err := ParseTier(tier)
		if err != nil {
			panic(err)
		}
		out = append(out, Operator{ID: id, Tier: t})
	}
	return out
}

func newMachine(t testing.TB, spec string) *Machine {
	t.Helper()
	m, err := New(ops(spec), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run applies the typed lines of a transcript and returns the printed
// ones.
func run(t *testing.T, m *Machine, now time.Time, lines ...string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		verb, arg, _ := strings.Cut(l, " ")
		cmd, err := ParseCommand(verb, arg)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		msgs, err := m.Do(cmd, now)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		for _, msg := range msgs {
			b.WriteString(msg.String() + "\n")
		}
		checkInvariants(t, m)
	}
	return b.String()
}

func TestReferenceTranscript(t *testing.T) {
	m := newMachine(t, "A,B")
	var typed []string
	var want strings.Builder
	for _, l := range strings.SplitAfter(referenceTranscript, "\n") {
		if cmd, ok := strings.CutPrefix(l, "> "); ok {
			typed = append(typed, strings.TrimSuffix(cmd, "\n"))
		} else {
			want.WriteString(l)
		}
	}
	if got := run(t, m, t0, typed...); got != want.String() {
		t.Fatalf("transcript differs:\n got:\n%s\nwant:\n%s", got, want.String())
	}
	if m.InProgress() != 0 || m.Waiting() != 0 {
		t.Fatalf("calls left: %d", m.InProgress())
	}
}

func expect(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestTiers(t *testing.T) {
	// Configuration order mixes tiers: delivery goes by tier, then order.
	m := newMachine(t, "D1:director,S1:supervisor,O1:operator,S2:supervisor,O2")
	expect(t, run(t, m, t0, "call 1", "call 2", "call 3", "call 4", "call 5", "call 6"),
		`Call 1 received
Call 1 ringing for operator O1
Call 2 received
Call 2 ringing for operator O2
Call 3 received
Call 3 ringing for operator S1
Call 4 received
Call 4 ringing for operator S2
Call 5 received
Call 5 ringing for operator D1
Call 6 received
Call 6 waiting in queue
`)
	// A supervisor who frees up takes the head of the queue even though
	// operators exist: nobody else is available.
	expect(t, run(t, m, t0, "answer S1", "hangup 3"), `Call 3 answered by operator S1
Call 3 finished and operator S1 available
Call 6 ringing for operator S1
`)
	// With several available, the lowest tier wins.
	expect(t, run(t, m, t0, "hangup 5", "hangup 1", "hangup 4", "call 7"), `Call 5 missed
Call 1 missed
Call 4 missed
Call 7 received
Call 7 ringing for operator O1
`)
}

func TestRejectRedelivery(t *testing.T) {
	m := newMachine(t, "A,B,S:supervisor")
	// Another available operator takes the rejected call, in tier order.
	expect(t, run(t, m, t0, "call 1", "reject A"), `Call 1 received
Call 1 ringing for operator A
Call 1 rejected by operator A
Call 1 ringing for operator B
`)
	expect(t, run(t, m, t0, "reject B"), `Call 1 rejected by operator B
Call 1 ringing for operator A
`)
	// A rejected call goes ahead of the queue.
	expect(t, run(t, m, t0, "call 2", "call 3", "call 4", "answer B", "answer S", "reject A"), `Call 2 received
Call 2 ringing for operator B
Call 3 received
Call 3 ringing for operator S
Call 4 received
Call 4 waiting in queue
Call 2 answered by operator B
Call 3 answered by operator S
Call 1 rejected by operator A
Call 1 ringing for operator A
`)
	// The ring timer restarts at each delivery.
	dl, _ := m.NextDeadline()
	if !dl.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("deadline %v", dl)
	}
	run(t, m, t0.Add(5*time.Second), "reject A")
	if dl, _ := m.NextDeadline(); !dl.Equal(t0.Add(15 * time.Second)) {
		t.Fatalf("deadline after reject %v", dl)
	}
}

func TestIgnoredAfterTimeout(t *testing.T) {
	m := newMachine(t, "A,B")
	run(t, m, t0, "call 1")
	if msgs := m.Tick(t0.Add(9999 * time.Millisecond)); len(msgs) != 0 {
		t.Fatalf("early tick: %v", msgs)
	}
	expect(t, join(m.Tick(t0.Add(10*time.Second))), `Call 1 ignored by operator A
Call 1 ringing for operator B
`)
	dl, ok := m.NextDeadline()
	if !ok || !dl.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("next deadline %v %v", dl, ok)
	}
	// B busy: an ignored call rings for the same operator again.
	run(t, m, t0.Add(11*time.Second), "call 2", "answer A")
	expect(t, join(m.Tick(t0.Add(25*time.Second))), `Call 1 ignored by operator B
Call 1 ringing for operator B
`)
	// A late tick ignores each overdue call once; the new deadline counts
	// from the tick.
	expect(t, join(m.Tick(t0.Add(time.Hour))), `Call 1 ignored by operator B
Call 1 ringing for operator B
`)
	if dl, _ := m.NextDeadline(); !dl.Equal(t0.Add(time.Hour + 10*time.Second)) {
		t.Fatalf("deadline %v", dl)
	}
	// Answering stops the timer.
	run(t, m, t0.Add(time.Hour), "answer B")
	if _, ok := m.NextDeadline(); ok {
		t.Fatal("deadline after answer")
	}
	if msgs := m.Tick(t0.Add(2 * time.Hour)); len(msgs) != 0 {
		t.Fatalf("tick: %v", msgs)
	}
}

func TestIgnoredOrderOfSimultaneousDeadlines(t *testing.T) {
	m := newMachine(t, "A,B,C")
	run(t, m, t0, "call 1", "call 2")
	// At t0+10s calls 1 and 2 are due together, in delivery order. C is
	// available: 1 goes to C, then 2 finds A (available again after 1
	// left it).
	expect(t, join(m.Tick(t0.Add(10*time.Second))), `Call 1 ignored by operator A
Call 1 ringing for operator C
Call 2 ignored by operator B
Call 2 ringing for operator A
`)
}

func TestMissed(t *testing.T) {
	m := newMachine(t, "A")
	expect(t, run(t, m, t0, "call 1", "call 2", "call 3", "hangup 2"), `Call 1 received
Call 1 ringing for operator A
Call 2 received
Call 2 waiting in queue
Call 3 received
Call 3 waiting in queue
Call 2 missed
`)
	// Missed from ringing: the operator takes the head of the queue.
	expect(t, run(t, m, t0, "hangup 1"), `Call 1 missed
Call 3 ringing for operator A
`)
	expect(t, run(t, m, t0, "hangup 3"), "Call 3 missed\n")
	if len(m.avail) != 1 {
		t.Fatal("A not available")
	}
	// A finished id may be used again.
	expect(t, run(t, m, t0, "call 1"), "Call 1 received\nCall 1 ringing for operator A\n")
}

func TestErrorsChangeNothing(t *testing.T) {
	m := newMachine(t, "A,B")
	run(t, m, t0, "call 1", "call 2", "answer B", "call 3")
	cases := []struct {
		cmd  Command
		want string
		is   error
	}{
		{Command{Call, "1"}, "call 1 is already in progress (ringing for operator A)", ErrInProgress},
		{Command{Call, "2"}, "call 2 is already in progress (answered by operator B)", ErrInProgress},
		{Command{Call, "3"}, "call 3 is already in progress (waiting in queue)", ErrInProgress},
		{Command{Hangup, "9"}, "unknown call 9", ErrUnknownCall},
		{Command{Answer, "C"}, "unknown operator C", ErrUnknownOperator},
		{Command{Answer, "B"}, "operator B is not ringing (busy on call 2)", ErrNotRinging},
		{Command{Reject, "B"}, "operator B is not ringing (busy on call 2)", ErrNotRinging},
		{Command{Login, "A"}, "operator A is already logged in", ErrLogin},
		{Command{Call, "a b"}, `invalid call id "a b": use 1-64 characters of A-Z a-z 0-9 . _ : -`, ErrSyntax},
		{Command{Call, ""}, `invalid call id "": use 1-64 characters of A-Z a-z 0-9 . _ : -`, ErrSyntax},
		{Command{Status, ""}, "status is not an event", ErrSyntax},
	}
	for _, c := range cases {
		before := m.Snapshot()
		msgs, err := m.Do(c.cmd, t0.Add(time.Minute))
		if err == nil || err.Error() != c.want || !errors.Is(err, c.is) || msgs != nil {
			t.Errorf("%v: got %v %v, want %q", c.cmd, msgs, err, c.want)
		}
		if !m.Changes().Empty() {
			t.Errorf("%v: changes %+v", c.cmd, m.Changes())
		}
		if after := m.Snapshot(); !reflect.DeepEqual(before, after) {
			t.Errorf("%v changed the state", c.cmd)
		}
	}
	run(t, m, t0, "logout A")
	if _, err := m.Logout("A", t0); err == nil || err.Error() != "operator A is already logged out" {
		t.Errorf("logout twice: %v", err)
	}
	if _, err := m.Answer("A", t0); err == nil || err.Error() != "operator A is not ringing (logged out)" {
		t.Errorf("answer logged out: %v", err)
	}
}

func TestParseCommand(t *testing.T) {
	good := map[[2]string]Command{
		{"call", "7"}:         {Call, "7"},
		{"CALL", "c-1.2:x_y"}: {Call, "c-1.2:x_y"},
		{"Answer", "A"}:       {Answer, "A"},
		{"reject", "A"}:       {Reject, "A"},
		{"hangup", "1"}:       {Hangup, "1"},
		{"login", "A"}:        {Login, "A"},
		{"logout", "A"}:       {Logout, "A"},
		{"status", ""}:        {Status, ""},
		{"status", "5"}:       {Status, "5"},
	}
	for in, want := range good {
		got, err := ParseCommand(in[0], in[1])
		if err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	bad := map[[2]string]string{
		{"frob", "1"}:                     `unknown command "frob" (commands: call, answer, reject, hangup, login, logout, status)`,
		{"", ""}:                          `unknown command "" (commands: call, answer, reject, hangup, login, logout, status)`,
		{"call", ""}:                      "call needs an id: call <id>",
		{"hangup", ""}:                    "hangup needs an id: hangup <id>",
		{"answer", ""}:                    "answer needs an operator: answer <operator>",
		{"answer", "A B"}:                 `invalid operator id "A B": use 1-64 characters of A-Z a-z 0-9 . _ : -`,
		{"call", strings.Repeat("x", 65)}: `invalid call id "` + strings.Repeat("x", 65) + `": use 1-64 characters of A-Z a-z 0-9 . _ : -`,
		{"call", "a\nb"}:                  `invalid call id "a\nb": use 1-64 characters of A-Z a-z 0-9 . _ : -`,
	}
	for in, want := range bad {
		_, err := ParseCommand(in[0], in[1])
		if err == nil || err.Error() != want || !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

func TestLoginLogout(t *testing.T) {
	m := newMachine(t, "A,B")
	// Available operator: logs out at once; calls skip it.
	expect(t, run(t, m, t0, "logout A", "call 1"), `Operator A logged out
Call 1 received
Call 1 ringing for operator B
`)
	// Ringing operator, nobody available: the call goes back to the HEAD
	// of the queue.
	expect(t, run(t, m, t0, "call 2", "logout B"), `Call 2 received
Call 2 waiting in queue
Operator B logged out
Call 1 waiting in queue
`)
	if s := m.Snapshot(); !reflect.DeepEqual(s.Queue, []string{"1", "2"}) {
		t.Fatalf("queue %v", s.Queue)
	}
	st, _ := m.Status("2")
	expect(t, strings.Join(st, "\n"), "Call 2 waiting in queue at position 2 of 2")
	// Login: the operator takes the head of the queue.
	expect(t, run(t, m, t0, "login A"), `Operator A logged in
Call 1 ringing for operator A
`)
	expect(t, run(t, m, t0, "login B"), `Operator B logged in
Call 2 ringing for operator B
`)
	// Ringing operator with another one available: the call moves there.
	expect(t, run(t, m, t0, "hangup 2", "logout A"), `Call 2 missed
Operator A logged out
Call 1 ringing for operator B
`)
	// Busy operator: finishes the call first, takes no other call.
	expect(t, run(t, m, t0, "login A", "answer B", "call 3", "call 4", "logout B"), `Operator A logged in
Call 1 answered by operator B
Call 3 received
Call 3 ringing for operator A
Call 4 received
Call 4 waiting in queue
Operator B will log out after call 1
`)
	if _, err := m.Logout("B", t0); err == nil || err.Error() != "operator B already logs out after call 1" {
		t.Fatalf("logout twice: %v", err)
	}
	st, _ = m.Status("")
	expect(t, strings.Join(st, "\n"), `Operator A (operator) ringing with call 3
Operator B (operator) busy on call 1, logging out after it
Queue: 1 call waiting`)
	expect(t, run(t, m, t0, "hangup 1"), `Call 1 finished and operator B available
Operator B logged out
`)
	if s := m.Snapshot(); !reflect.DeepEqual(s.Queue, []string{"4"}) {
		t.Fatalf("queue %v", s.Queue)
	}
	// Login during a pending logout cancels it.
	expect(t, run(t, m, t0, "answer A", "logout A", "login A", "hangup 3"), `Call 3 answered by operator A
Operator A will log out after call 3
Operator A logged in
Call 3 finished and operator A available
Call 4 ringing for operator A
`)
	// Everyone logged out: calls wait.
	expect(t, run(t, m, t0, "logout A", "call 5"), `Operator A logged out
Call 4 waiting in queue
Call 5 received
Call 5 waiting in queue
`)
	if _, ok := m.NextDeadline(); ok {
		t.Fatal("deadline with nobody ringing")
	}
}

func TestStatus(t *testing.T) {
	m := newMachine(t, "A,S:supervisor")
	run(t, m, t0, "call 1", "answer A", "call 2", "call 3", "call 4", "logout S")
	st, err := m.Status("")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, strings.Join(st, "\n"), `Operator A (operator) busy on call 1
Operator S (supervisor) logged out
Queue: 3 calls waiting`)
	for id, want := range map[string]string{
		"1": "Call 1 answered by operator A",
		"2": "Call 2 waiting in queue at position 1 of 3",
		"4": "Call 4 waiting in queue at position 3 of 3",
	} {
		st, err := m.Status(id)
		if err != nil || len(st) != 1 || st[0] != want {
			t.Errorf("status %s: %v %v", id, st, err)
		}
	}
	if _, err := m.Status("9"); err == nil || err.Error() != "unknown call 9" {
		t.Errorf("status 9: %v", err)
	}
	run(t, m, t0, "login S")
	st, _ = m.Status("2")
	expect(t, st[0], "Call 2 ringing for operator S")
}

func TestSnapshotRestore(t *testing.T) {
	m := newMachine(t, "A,B,C")
	run(t, m, t0, "call 1", "answer A", "call 2", "call 3", "answer C", "call 4", "call 5", "logout C")
	snap := m.Snapshot()
	r, msgs, err := Restore(ops("A,B,C"), 10*time.Second, snap, t0.Add(time.Second))
	if err != nil || len(msgs) != 0 {
		t.Fatal(err, msgs)
	}
	if !reflect.DeepEqual(r.Snapshot(), snap) {
		t.Fatalf("restored:\n%+v\nsaved:\n%+v", r.Snapshot(), snap)
	}
	checkInvariants(t, r)
	// The ring deadline survives: B's call is ignored at t0+10s.
	expect(t, join(r.Tick(t0.Add(10*time.Second))), "Call 2 ignored by operator B\nCall 2 ringing for operator B\n")

	// Configuration changed: B removed (ringing), C removed (busy, logging
	// out), D added (takes the call B had, then the queue).
	r, msgs, err = Restore(ops("A,D"), 10*time.Second, snap, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, r)
	expect(t, join(msgs), `Operator B logged out
Call 2 ringing for operator D
`)
	expect(t, run(t, r, t0, "hangup 3"), "Call 3 finished and operator C available\nOperator C logged out\n")
	if _, err := r.Login("C", t0); err == nil || err.Error() != "operator C is not in the configuration" {
		t.Fatalf("login removed: %v", err)
	}
	if !reflect.DeepEqual(r.Operators(), ops("A,D")) {
		t.Fatalf("operators %v", r.Operators())
	}

	// Waiting calls go to operators added since.
	m = newMachine(t, "A")
	run(t, m, t0, "call 1", "call 2", "call 3")
	r, msgs, err = Restore(ops("A,B"), 10*time.Second, m.Snapshot(), t0)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, join(msgs), "Call 2 ringing for operator B\n")
	checkInvariants(t, r)

	// Inconsistent snapshots are refused.
	bad := m.Snapshot()
	bad.Queue = append(bad.Queue, "1")
	if _, _, err := Restore(ops("A"), 0, bad, t0); err == nil {
		t.Fatal("call in two places accepted")
	}
	bad = m.Snapshot()
	bad.Calls = append(bad.Calls, CallInfo{ID: "9", State: Waiting})
	if _, _, err := Restore(ops("A"), 0, bad, t0); err == nil {
		t.Fatal("stray call accepted")
	}
}

func TestChanges(t *testing.T) {
	m := newMachine(t, "A")
	run(t, m, t0, "call 1", "call 2")
	ch := m.Changes()
	if len(ch.Operators) != 0 || len(ch.Calls) != 1 || ch.Calls[0].State != Waiting ||
		!reflect.DeepEqual(ch.Queue, []QueueOp{{QueuePushBack, "2"}}) {
		t.Fatalf("%+v", ch)
	}
	run(t, m, t0, "hangup 1")
	ch = m.Changes()
	want := Changes{
		Operators: []OperatorInfo{{ID: "A", State: Ringing, Call: "2", Since: t0}},
		Calls: []CallInfo{{ID: "1", State: Ended},
			{ID: "2", State: CallRinging, Operator: "A", Received: t0, Since: t0, Deadline: t0.Add(10 * time.Second), Seq: 2}},
		Queue: []QueueOp{{QueuePopFront, "2"}},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Fatalf("got %+v\nwant %+v", ch, want)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(nil, 0); err == nil {
		t.Error("no operators accepted")
	}
	if _, err := New(ops("A,A"), 0); err == nil {
		t.Error("duplicate accepted")
	}
	if _, err := New([]Operator{{ID: "a b"}}, 0); err == nil {
		t.Error("bad id accepted")
	}
	m, _ := New(ops("A"), 0)
	if m.RingTimeout() != DefaultRingTimeout {
		t.Error("default ring timeout")
	}
}

func join(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.String() + "\n")
	}
	return b.String()
}

// checkInvariants checks the machine's internal structures agree and the
// contract's invariants hold.
func checkInvariants(t testing.TB, m *Machine) {
	t.Helper()
	seen := map[*call]string{}
	place := func(c *call, where string) {
		if w, dup := seen[c]; dup {
			t.Fatalf("call %s in two places: %s and %s", c.id, w, where)
		}
		seen[c] = where
		if m.calls[c.id] != c {
			t.Fatalf("call %s (%s) not in the map", c.id, where)
		}
	}
	nAvail := 0
	for _, op := range m.ops {
		switch op.state {
		case Available:
			nAvail++
			if op.call != nil || op.heapIdx < 0 || m.avail[op.heapIdx] != op {
				t.Fatalf("available operator %s: call %v heap %d", op.id, op.call, op.heapIdx)
			}
		case Ringing, Busy:
			if op.call == nil || op.call.op != op || op.heapIdx >= 0 {
				t.Fatalf("operator %s %s: bad call link", op.id, op.state)
			}
			want := CallRinging
			if op.state == Busy {
				want = Answered
			}
			if op.call.state != want {
				t.Fatalf("operator %s %s, call %s %s", op.id, op.state, op.call.id, op.call.state)
			}
			place(op.call, "operator "+op.id)
			if op.state == Ringing && (op.call.ringIdx < 0 || m.rings[op.call.ringIdx] != op.call) {
				t.Fatalf("ringing call %s not in the ring heap", op.call.id)
			}
		case LoggedOut:
			if op.call != nil || op.heapIdx >= 0 {
				t.Fatalf("logged-out operator %s holds something", op.id)
			}
		}
		if op.logoutPending && op.state != Busy {
			t.Fatalf("operator %s %s with logout pending", op.id, op.state)
		}
	}
	if nAvail != len(m.avail) {
		t.Fatalf("%d available, heap %d", nAvail, len(m.avail))
	}
	for i, op := range m.avail {
		if i > 0 && m.avail[(i-1)/2].rank > op.rank {
			t.Fatal("available heap out of order")
		}
	}
	if len(m.rings) != countState(m, Ringing) {
		t.Fatalf("ring heap %d, ringing %d", len(m.rings), countState(m, Ringing))
	}
	for i, c := range m.rings {
		if i > 0 && ringLess(c, m.rings[(i-1)/2]) {
			t.Fatal("ring heap out of order")
		}
	}
	n := 0
	for c := m.queue.front(); c != nil && c != &m.queue.root; c = c.next {
		n++
		if c.state != Waiting || c.op != nil || c.next.prev != c {
			t.Fatalf("queued call %s is %s", c.id, c.state)
		}
		place(c, "queue")
	}
	if n != m.queue.n {
		t.Fatalf("queue length %d, counted %d", m.queue.n, n)
	}
	if len(seen) != len(m.calls) {
		t.Fatalf("%d calls in the map, %d placed", len(m.calls), len(seen))
	}
	if m.queue.n > 0 && nAvail > 0 {
		t.Fatalf("%d available operators while %d calls wait", nAvail, m.queue.n)
	}
}

func countState(m *Machine, s OperatorState) int {
	n := 0
	for _, op := range m.ops {
		if op.state == s {
			n++
		}
	}
	return n
}
