package amisim

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// eventFilter is manager.conf's eventfilter for the simulator's one user,
// in its two forms. Legacy: a regular expression matched against the whole
// text of an event, a leading "!" excluding instead of including. Advanced
// (Asterisk 21+), name criterion only: "eventfilter(name(Hangup))" or
// "eventfilter(action(exclude),name(Hangup))", matched on the event's name.
// No filters: every event; only includes: an event matching any; only
// excludes: an event matching none; both: matching an include and no
// exclude (manager.c's match_filter).
type eventFilter struct {
	include, exclude []*regexp.Regexp
	// Advanced name filters: event name → include (true) or exclude.
	names        map[string]bool
	nameIncludes bool
}

// parseAdvanced reads "eventfilter(action(include|exclude),name(X))", the
// criteria in any order; other criteria are not simulated.
func (f *eventFilter) parseAdvanced(e string) error {
	inner, ok := strings.CutPrefix(e, "eventfilter(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return fmt.Errorf("eventfilter %q: want eventfilter(name(X)) or eventfilter(action(include|exclude),name(X))", e)
	}
	inner = strings.TrimSuffix(inner, ")")
	include, name := true, ""
	for _, c := range strings.Split(inner, ",") {
		c = strings.TrimSpace(c)
		switch {
		case c == "action(include)":
		case c == "action(exclude)":
			include = false
		case strings.HasPrefix(c, "name(") && strings.HasSuffix(c, ")"):
			name = c[len("name(") : len(c)-1]
		default:
			return fmt.Errorf("eventfilter %q: criterion %q is not simulated (action and name only)", e, c)
		}
	}
	if name == "" {
		return fmt.Errorf("eventfilter %q: no name(...)", e)
	}
	if f.names == nil {
		f.names = map[string]bool{}
	}
	f.names[name] = include
	if include {
		f.nameIncludes = true
	}
	return nil
}

func newEventFilter(exprs []string) (*eventFilter, error) {
	if len(exprs) == 0 {
		return nil, nil
	}
	f := &eventFilter{}
	for _, e := range exprs {
		if strings.HasPrefix(e, "eventfilter(") {
			if err := f.parseAdvanced(e); err != nil {
				return nil, err
			}
			continue
		}
		neg := strings.HasPrefix(e, "!")
		re, err := regexp.Compile(strings.TrimPrefix(e, "!"))
		if err != nil {
			return nil, fmt.Errorf("eventfilter %q: %w", e, err)
		}
		if neg {
			f.exclude = append(f.exclude, re)
		} else {
			f.include = append(f.include, re)
		}
	}
	return f, nil
}

func (f *eventFilter) pass(ev []byte) bool {
	var include, named bool
	if len(f.names) > 0 {
		if rest, ok := bytes.CutPrefix(ev, []byte("Event: ")); ok {
			if i := bytes.IndexByte(rest, '\r'); i >= 0 {
				include, named = f.names[string(rest[:i])] // no allocation: a map index by converted bytes
			}
		}
	}
	if len(f.include) > 0 || f.nameIncludes {
		in := named && include
		for _, re := range f.include {
			if in {
				break
			}
			in = re.Match(ev)
		}
		if !in {
			return false
		}
	}
	if named && !include {
		return false
	}
	for _, re := range f.exclude {
		if re.Match(ev) {
			return false
		}
	}
	return true
}

// drops reports whether an event named name is certain not to pass (name
// filters only decide that without the event's text): the simulator then
// does not render it at all.
func (f *eventFilter) drops(name string) bool {
	if f == nil || len(f.include) > 0 || len(f.exclude) > 0 {
		return false
	}
	include, named := f.names[name]
	if named {
		return !include
	}
	return f.nameIncludes
}

// apply keeps the events of b (messages, each ending in an empty line)
// that pass, and returns them with their number. When all pass, b itself
// comes back: the usual case once dropped events are not rendered at all.
func (f *eventFilter) apply(b []byte) ([]byte, int) {
	var out []byte // nil until an event is dropped: then the kept ones so far are copied
	kept := 0
	for off := 0; off < len(b); {
		end := off + eventEnd(b[off:])
		switch {
		case f.pass(b[off:end]):
			if out != nil {
				out = append(out, b[off:end]...)
			}
			kept++
		case out == nil:
			out = append(make([]byte, 0, len(b)), b[:off]...)
		}
		off = end
	}
	if out == nil {
		return b, kept
	}
	return out, kept
}

// eventEnd is the length of the first message of b, its empty line included.
func eventEnd(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return len(b)
	}
	return end + 4
}
