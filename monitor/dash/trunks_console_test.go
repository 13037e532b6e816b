package dash

import (
	"errors"
	"reflect"
	"testing"
)

func TestWithCommand(t *testing.T) {
	var passed []string
	var shown []ConsoleMsg
	sink := func(m ConsoleMsg) { shown = append(shown, m) }
	inner := &Console{exec: func(l string) { passed = append(passed, l) }, close: func() {}, done: make(chan error)}
	c := WithCommand(inner, "amisim", func(args string) (string, error) {
		if args == "bad" {
			return "", errors.New("unknown command")
		}
		return "did " + args + "\nsecond line\n", nil
	}, sink)
	c.Exec("call 7")
	c.Exec("AMISIM kill gw1")
	c.Exec("amisim bad")
	c.Exec("amisimx kill")
	if want := []string{"call 7", "amisimx kill"}; !reflect.DeepEqual(passed, want) {
		t.Errorf("passed on %q, want %q", passed, want)
	}
	want := []ConsoleMsg{{Lines: []string{"did kill gw1", "second line"}}, {Lines: []string{"error: unknown command"}, Err: true}}
	if !reflect.DeepEqual(shown, want) {
		t.Errorf("shown %+v, want %+v", shown, want)
	}
	if c.Done() != inner.Done() {
		t.Error("Done is not the inner console's")
	}
}
