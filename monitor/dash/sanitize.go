package dash

import (
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe"
)

// Everything the monitor shows from Redis passes through sanitize on its
// way into the model (and into Plain): ids, names, error texts and log
// entries planted there must not drive the operator's terminal (issue 13
// item 6). The view then draws text it can trust, and stays free of
// escaping.

var esc = termsafe.Escape

// sanitize returns a copy of s with every text escaped; s is not changed
// (its slices and maps are not shared with the copy), so that the JSON
// output can keep the data as it is.
func sanitize(s Snapshot) Snapshot {
	out := Snapshot{At: s.At, Trunks: sanitizeTrunks(s.Trunks)}
	if s.Cells != nil {
		out.Cells = make([]Cell, len(s.Cells))
		for i, c := range s.Cells {
			out.Cells[i] = sanitizeCell(c)
		}
	}
	return out
}

func sanitizeCell(c Cell) Cell {
	c.Name, c.Err, c.ACDLease = esc(c.Name), esc(c.Err), esc(c.ACDLease)
	if c.Stats != nil {
		st := make(map[string]int64, len(c.Stats))
		for k, v := range c.Stats {
			st[esc(k)] += v
		}
		c.Stats = st
	}
	if c.Pacing != nil {
		pc := make(map[string]string, len(c.Pacing))
		for k, v := range c.Pacing {
			pc[esc(k)] = esc(v)
		}
		c.Pacing = pc
	}
	c.Instances = mapSlice(c.Instances, func(in Instance) Instance {
		in.Instance, in.Host, in.Version, in.Hold = esc(in.Instance), esc(in.Host), esc(in.Version), esc(in.Hold)
		return in
	})
	c.ACD.Operators = mapSlice(c.ACD.Operators, func(o acd.OperatorInfo) acd.OperatorInfo {
		o.ID, o.Call = esc(o.ID), esc(o.Call)
		return o
	})
	c.ACD.Calls = mapSlice(c.ACD.Calls, func(ci acd.CallInfo) acd.CallInfo {
		ci.ID, ci.Operator = esc(ci.ID), esc(ci.Operator)
		return ci
	})
	c.ACD.Queue = termsafe.Lines(c.ACD.Queue)
	c.Log = mapSlice(c.Log, func(e LogEntry) LogEntry {
		e.ID, e.Message, e.Kind, e.Call, e.Operator = esc(e.ID), esc(e.Message), esc(e.Kind), esc(e.Call), esc(e.Operator)
		return e
	})
	return c
}

// mapSlice is a new slice of f applied to each element (nil stays nil).
func mapSlice[T any](s []T, f func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}

// sanitizeOptions escapes the texts the caller puts on the screen: they
// carry addresses and error texts (a lease holder's name read from Redis
// ends up in ACDNote).
func sanitizeOptions(o Options) Options {
	o.Title, o.ACDCell, o.ACDMode, o.ACDNote = esc(o.Title), esc(o.ACDCell), esc(o.ACDMode), esc(o.ACDNote)
	o.Banner = termsafe.Lines(o.Banner)
	return o
}
