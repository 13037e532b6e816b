package bridge

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// testCell is just enough of a Cell to build Originate requests.
func testCell() *Cell {
	return &Cell{opt: Options{
		Cell: "101", Instance: "pbx1-4711", ChannelTemplate: "PJSIP/{number}@trunk",
		Context: "agents", Exten: "s", Priority: 1, CallerID: "Multcall <1133334444>",
	}}
}

// originateFor is the Originate request of an accepted command.
func originateFor(t testing.TB, raw, callCode string) OriginateRequest {
	t.Helper()
	cmd, err := ParseCommand([]byte(raw))
	if err != nil {
		t.Fatalf("ParseCommand: %v", err)
	}
	call := &Call{Cmd: cmd, CallCode: callCode, ChannelID: "db-pbx1-4711-m3x9k2-17-1"}
	return testCell().originateRequest(call, 30*time.Second)
}

func variableLine(req OriginateRequest) string {
	return "Variable: " + JoinVariables(req.Variables) + "\r\n"
}

// longestAccepted is the largest variables size ParseCommand accepts, found
// by asking it rather than by reading its constant.
func longestAccepted(t *testing.T) int {
	for n := 1200; n > 0; n-- {
		raw := `{"id":"x","number":"1","variables":` + varsOfSize(n) + `}`
		if _, err := ParseCommand([]byte(raw)); err == nil {
			return n
		}
	}
	t.Fatal("no variables size accepted")
	return 0
}

// Issue 13 item 5: a contract-valid command must never make a line Asterisk
// discards (the action would be lost and the call end unknown).
func TestLongestValidCommandFitsAsteriskLine(t *testing.T) {
	n := longestAccepted(t)
	id := strings.Repeat("i", MaxIDLen)
	code := strings.Repeat("9", 64)
	tests := []struct {
		name string
		vars string
	}{
		{"longest, in few variables", varsOfSize(n)},
		{"longest, in 32 variables", spreadVars(n, MaxVariables)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := `{"id":"` + id + `","number":"` + strings.Repeat("5", MaxNumberLen) +
				`","caller_id":"` + strings.Repeat("c", MaxCallerIDLen) + `","variables":` + tt.vars + `}`
			req := originateFor(t, raw, code)
			line := variableLine(req)
			if len(line) >= asteriskLineMax {
				t.Fatalf("Variable line of %d bytes (variables of %d), Asterisk reads at most %d", len(line), n, asteriskLineMax)
			}
			if got := asteriskVariables(JoinVariables(req.Variables)); !slices.Equal(got, req.Variables) {
				t.Fatalf("Asterisk reads %v, we sent %v", got, req.Variables)
			}
			for _, h := range []string{"CallerID: " + req.CallerID, "Channel: " + req.Channel} {
				if len(h)+2 >= asteriskLineMax {
					t.Fatalf("line of %d bytes: %.40q", len(h)+2, h)
				}
			}
			t.Logf("variables of %d bytes: Variable line of %d bytes", n, len(line))
		})
	}
}

// Issue 13 item 4: ours come first, then the command's, and Asterisk reads
// them as we sent them.
func TestOriginateVariablesOursFirst(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []Variable
	}{
		{"no variables", `{"id":"c1","number":"1"}`,
			[]Variable{{"DIALBRIDGE_ID", "c1"}, {"DIALBRIDGE_CALL_CODE", "987654"}}},
		{"variables sorting before ours", `{"id":"c1","number":"1","variables":{"A":"1","CAMPAIGN":"spring"}}`,
			[]Variable{{"DIALBRIDGE_ID", "c1"}, {"DIALBRIDGE_CALL_CODE", "987654"}, {"A", "1"}, {"CAMPAIGN", "spring"}}},
		{"inherited variables", `{"id":"c1","number":"1","variables":{"__LIST":"42","_Z":"z"}}`,
			[]Variable{{"DIALBRIDGE_ID", "c1"}, {"DIALBRIDGE_CALL_CODE", "987654"}, {"_Z", "z"}, {"__LIST", "42"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := originateFor(t, tt.raw, "987654")
			if !slices.Equal(req.Variables, tt.want) {
				t.Fatalf("variables %v, want %v", req.Variables, tt.want)
			}
			if got := asteriskVariables(JoinVariables(req.Variables)); !slices.Equal(got, tt.want) {
				t.Fatalf("Asterisk reads %v, want %v", got, tt.want)
			}
		})
	}
}

// The splitter port itself, on what the contract forbids: this is how the
// issue 13 smuggling worked, and why those characters are refused.
func TestAsteriskVariables(t *testing.T) {
	tests := []struct {
		header string
		want   []Variable
	}{
		{"A=1,B=2", []Variable{{"A", "1"}, {"B", "2"}}},
		{"DIALBRIDGE_ID=c1,zz=(,__DIALBRIDGE_CALL_CODE=999999", []Variable{{"DIALBRIDGE_ID", "c1"}, {"zz", "(,__DIALBRIDGE_CALL_CODE=999999"}}},
		{`A="x,y",B=\,`, []Variable{{"A", "x,y"}, {"B", ","}}},
		{"A=[1,2],B", []Variable{{"A", "[1,2]"}}},
		{"  A=1,", []Variable{{"A", "1"}}},
	}
	for _, tt := range tests {
		if got := asteriskVariables(tt.header); !slices.Equal(got, tt.want) {
			t.Errorf("asteriskVariables(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
	if got := asteriskSplitArgs(strings.Repeat("a,", 70)); len(got) != asteriskArgsMax || !strings.Contains(got[asteriskArgsMax-1], ",") {
		t.Errorf("past %d arguments the rest must be one: got %d", asteriskArgsMax-1, len(got))
	}
}
