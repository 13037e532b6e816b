package ami

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
)

// contractVars are n command variables (contract §2: names A-Za-z0-9_ with
// an optional leading "_"/"__", values without , ( ) [ ] " \) whose "k=v"
// joined by commas is exactly size bytes.
func contractVars(t *testing.T, n, size int) []bridge.Variable {
	t.Helper()
	vars := make([]bridge.Variable, n)
	used := n - 1 // commas
	for i := range vars {
		vars[i] = bridge.Variable{Name: fmt.Sprintf("__V%02d", i), Value: "a b=<ç>${X};|&"}
		if i == n-1 {
			vars[i].Name = "_" + strings.Repeat("L", 63) // the longest name
		}
		used += len(vars[i].Name) + 1 + len(vars[i].Value)
	}
	pad := size - used
	if pad < 0 || pad > 256 {
		t.Fatalf("cannot make %d variables of %d bytes (pad %d)", n, size, pad)
	}
	vars[n-1].Value += strings.Repeat("v", pad)
	if got := len(joinVars(vars)); got != size {
		t.Fatalf("variables are %d bytes, want %d", got, size)
	}
	return vars
}

// manyVars are n short variables.
func manyVars(n int) []bridge.Variable {
	vars := make([]bridge.Variable, n)
	for i := range vars {
		vars[i] = bridge.Variable{Name: fmt.Sprintf("M%02d", i), Value: "1"}
	}
	return vars
}

func joinVars(vars []bridge.Variable) string {
	parts := make([]string, len(vars))
	for i, v := range vars {
		parts[i] = v.Name + "=" + v.Value
	}
	return strings.Join(parts, ",")
}

// longestRequest is the Originate the bridge makes for the longest command
// the contract allows: 64-byte id and call code (ours, first), commandVars
// of the command, a 128-byte caller id, a 32-character number.
func longestRequest(commandVars []bridge.Variable) bridge.OriginateRequest {
	id := strings.Repeat("i", 60) + "-:._"
	code := strings.Repeat("C", 60) + "-:._"
	chanID := "db-" + strings.Repeat("h", 40) + "-mbq7x2k1-1234567-1"
	callerID := `"` + strings.Repeat("N", 128-len(`"" <1133334444>`)) + `" <1133334444>`
	return bridge.OriginateRequest{
		ActionID:  "o-" + chanID,
		ChannelID: chanID,
		Channel:   "PJSIP/+" + strings.Repeat("9", 31) + "@trunk",
		Context:   "agents",
		Exten:     "s",
		Priority:  1,
		Timeout:   300 * time.Second,
		CallerID:  callerID,
		Variables: append([]bridge.Variable{
			{Name: "DIALBRIDGE_ID", Value: id},
			{Name: "DIALBRIDGE_CALL_CODE", Value: code},
		}, commandVars...),
	}
}

// Issue 13 item 5: the longest contract-valid command makes an Originate
// whose every line fits Asterisk's 1,024 bytes, and Asterisk (the
// simulator) reads back every variable as given.
func TestLongestValidCommandFitsAsteriskLine(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	req := longestRequest(contractVars(t, 32, 799))
	if len(req.CallerID) != 128 || len(numberOf(req.Channel)) != 32 {
		t.Fatalf("caller id %d bytes, number %d", len(req.CallerID), len(numberOf(req.Channel)))
	}
	w, err := c.Originate(context.Background(), req)
	if err != nil {
		t.Fatalf("Originate: %v", err)
	}
	w.Close()

	recs := srv.Originates()
	if len(recs) != 1 || srv.Stats().ParseErrors != 0 {
		t.Fatalf("records %d, stats %+v", len(recs), srv.Stats())
	}
	longest := ""
	for k, v := range recs[0].Headers {
		if n := len(k) + len(v) + 4; n > maxLine {
			t.Errorf("header %s is a %d-byte line", k, n)
		}
		if len(k)+len(v) > len(longest) {
			longest = k + ": " + v + "\r\n"
		}
	}
	t.Logf("longest line: %d bytes", len(longest))
	if !strings.HasPrefix(recs[0].Headers["Variable"], "DIALBRIDGE_ID=") {
		t.Errorf("ours are not first: %.40s", recs[0].Headers["Variable"])
	}
	got := recs[0].Variables
	if len(got) != len(req.Variables) {
		t.Errorf("%d variables read, want %d", len(got), len(req.Variables))
	}
	for _, v := range req.Variables {
		name := strings.TrimLeft(v.Name, "_")
		if got[name] != v.Value {
			t.Errorf("${%s} = %q, want %q", name, got[name], v.Value)
		}
	}
}

func numberOf(channel string) string {
	_, rest, _ := strings.Cut(channel, "/")
	n, _, _ := strings.Cut(rest, "@")
	return n
}

// The client refuses, before writing anything, an Originate with a line
// Asterisk could not read; up to the limit, Asterisk takes it.
func TestOriginateLineLimit(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	// "Variable: " + ours (64 + 64) + "," + command's + CRLF.
	overhead := len("Variable: DIALBRIDGE_ID=,DIALBRIDGE_CALL_CODE=,\r\n") + 64 + 64
	tests := []struct {
		name string
		req  bridge.OriginateRequest
		ok   bool
	}{
		{"Variable line of exactly 1,024 bytes", longestRequest(contractVars(t, 32, maxLine-overhead)), true},
		{"Variable line of 1,025 bytes", longestRequest(contractVars(t, 32, maxLine-overhead+1)), false},
		// Contract v1 allowed 899 bytes of variables: the action would
		// have been refused by Asterisk.
		{"contract v1's 899 bytes of variables", longestRequest(contractVars(t, 32, 899)), false},
		{"CallerID line of 1,025 bytes", func() bridge.OriginateRequest {
			r := request("200")
			r.CallerID = strings.Repeat("n", maxLine-len("CallerID: \r\n")+1)
			return r
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, sent := len(srv.Originates()), c.State().Sent
			w, err := c.Originate(context.Background(), tt.req)
			if tt.ok {
				if err != nil {
					t.Fatalf("Originate: %v", err)
				}
				w.Close()
				if srv.Stats().ParseErrors != 0 {
					t.Fatalf("Asterisk could not parse it: %+v", srv.Stats())
				}
				return
			}
			if err == nil {
				w.Close()
				t.Fatal("sent")
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if len(srv.Originates()) != before || c.State().Sent != sent || srv.Stats().ParseErrors != 0 {
				t.Fatalf("something was written: %+v", srv.Stats())
			}
		})
	}
}

// Issue 13 item 4, client side: a variable Asterisk would not read back as
// given is refused before anything is written, so the smuggling payload
// cannot reach the PBX through the client; what is allowed comes back
// exactly, ours winning over a look-alike that comes after them.
func TestOriginateVariablesReadBackExactly(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	ours := []bridge.Variable{{Name: "DIALBRIDGE_ID", Value: "c-1"}, {Name: "DIALBRIDGE_CALL_CODE", Value: "987654"}}
	with := func(vs ...bridge.Variable) []bridge.Variable {
		return append(append([]bridge.Variable{}, ours...), vs...)
	}
	refused := map[string][]bridge.Variable{
		"issue 13 payload":   with(bridge.Variable{Name: "__DIALBRIDGE_CALL_CODE", Value: "999999"}, bridge.Variable{Name: "zz", Value: "("}),
		"name with a space":  with(bridge.Variable{Name: "A B", Value: "1"}),
		"name with (":        with(bridge.Variable{Name: "CDR(userfield)", Value: "1"}),
		"name with =":        with(bridge.Variable{Name: "A=B", Value: "1"}),
		"name with a tab":    with(bridge.Variable{Name: "\tA", Value: "1"}),
		"empty name":         with(bridge.Variable{Name: "", Value: "1"}),
		"64 variables":       with(manyVars(62)...),
		"value with a quote": with(bridge.Variable{Name: "A", Value: `"`}),
	}
	for _, ch := range variableSpecials {
		refused[fmt.Sprintf("value with %c", ch)] = with(bridge.Variable{Name: "A", Value: "x" + string(ch) + "y"})
	}
	for name, vars := range refused {
		t.Run(name, func(t *testing.T) {
			req := request("300")
			req.Variables = vars
			w, err := c.Originate(context.Background(), req)
			if err == nil {
				w.Close()
				t.Fatalf("sent; Asterisk read %q", srv.Originates()[len(srv.Originates())-1].Variables)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if n := len(srv.Originates()); n != 0 {
		t.Fatalf("%d originates reached the simulator", n)
	}

	req := request("300")
	req.Variables = with(
		bridge.Variable{Name: "__DIALBRIDGE_CALL_CODE", Value: "999999"},
		bridge.Variable{Name: "_INHERITED", Value: "a b=c <d> ${E} ção"},
		bridge.Variable{Name: "EMPTY", Value: ""},
	)
	req.Variables = append(req.Variables, manyVars(58)...) // 63 in all
	w, err := c.Originate(context.Background(), req)
	if err != nil {
		t.Fatalf("Originate: %v", err)
	}
	w.Close()
	got := srv.Originates()[0].Variables
	want := map[string]string{}
	for _, v := range req.Variables {
		// The first appearance of a name wins.
		if name := strings.TrimLeft(v.Name, "_"); !has(want, name) {
			want[name] = v.Value
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d variables read, want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("${%s} = %q, want %q", k, got[k], v)
		}
	}
}

func has(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
