package bridge

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand checks the parser's safety promise on any input (make
// fuzz runs it; the seeds below and testdata/fuzz/FuzzParseCommand run as a
// normal test). It never panics, its errors are safe to log, and whatever it
// accepts
//   - renders into Channel, CallerID and Variable lines with no control or
//     format character, each under Asterisk's 1,024-byte line, even with a
//     64-character call code;
//   - is read back by Asterisk's argument parser as exactly the variables
//     we sent, ours first, none of the command's taking one of our names;
//   - means the same to encoding/json (case-insensitive, last key wins) as
//     to us: no key smuggled past either reader.
func FuzzParseCommand(f *testing.F) {
	seeds := []string{
		`{"id":"c1","number":"5511999990000"}`,
		`{"id":"c1","number":"1\r\nAction: Command\r\nCommand: core stop now"}`,
		`{"id":"c-1","number":"+1*2#","caller_id":"A <1>","timeout_s":30,"variables":{"K":"v"}}`,
		`{"id":"c1","number":"1","variables":{"A":"x,y"}}`,
		`{"id":1,"number":[]}`,
		"{\"id\":\"c\u0000\",\"number\":\"1\"}",
		`{"id":"c1","number":"１２３"}`,
		`null`, `{}`, `{"id":"c1","number":"1","timeout_s":1e308}`,
		`{"id":"c1","number":"1","variables":{"__DIALBRIDGE_CALL_CODE":"999999","zz":"("}}`,
		`{"id":"c1","number":"1","variables":{"_X":"a","X":"b","__Y":"[","Z":"\\"}}`,
		`{"ID":"c1","number":"1"}`, `{"id":"c1","Number":"2","number":"1"}`,
		`{"id":"c1","id":"c2","number":"1"}`, `{"id":"c1","number":"1","variables":{"A":"1","A":"2"}}`,
		`{"id":"c1","number":"1","variableſ":{"A":"1"}}`,
		`{"id":"c1","number":"1","caller_id":"\u202Eevil","x":{"a":1,"a":[{"b":1}]}}`,
		`{"id":"c1","number":"1","variables":` + varsOfSize(799) + `}`,
		`{"id":"c1","number":"1","variables":` + spreadVars(799, 32) + `}`,
		`{"id":"c1","number":"1","variables":` + varsOfSize(800) + `}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cmd, err := ParseCommand(raw)
		if err != nil {
			checkRefusal(t, raw, err)
			return
		}
		checkAccepted(t, cmd)
		checkSameForEncodingJSON(t, raw, cmd)
		checkRendered(t, cmd)
	})
}

func checkRefusal(t *testing.T, raw []byte, err error) {
	msg := err.Error()
	if r, i := firstForbiddenRune(msg); i >= 0 || !utf8.ValidString(msg) || len(msg) > 400 {
		t.Fatalf("unsafe error message (%U, %d bytes): %q", r, len(msg), msg)
	}
	id := IDOf(err)
	if id == "" {
		return
	}
	if checkID(id) != nil {
		t.Fatalf("usable id %q is not a valid id", id)
	}
	// A usable id is the value of the one exact "id" key: a reader that
	// matches keys case-insensitively with the last one winning agrees.
	var w struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &w) == nil && w.ID != id {
		t.Fatalf("usable id %q, but encoding/json reads id %q", id, w.ID)
	}
}

func checkAccepted(t *testing.T, cmd *Command) {
	if checkID(cmd.ID) != nil || checkNumber(cmd.Number) != nil {
		t.Fatalf("accepted invalid id/number: %+v", cmd)
	}
	if len(cmd.CallerID) > MaxCallerIDLen || !utf8.ValidString(cmd.CallerID) {
		t.Fatalf("accepted caller_id %q", cmd.CallerID)
	}
	if cmd.TimeoutS != 0 && (cmd.TimeoutS < MinTimeoutS || cmd.TimeoutS > MaxTimeoutS) {
		t.Fatalf("timeout out of range: %d", cmd.TimeoutS)
	}
	if len(cmd.Variables) > MaxVariables {
		t.Fatalf("%d variables", len(cmd.Variables))
	}
	if n := len(JoinVariables(cmd.Variables)); n >= MaxVariablesBytes {
		t.Fatalf("variables of %d bytes", n)
	}
	for _, v := range cmd.Variables {
		if v.Name == "" || len(v.Name) > MaxVarNameLen || strings.Trim(v.Name, "_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Fatalf("accepted variable name %q", v.Name)
		}
		if strings.HasPrefix(strings.ToUpper(strings.TrimLeft(v.Name, "_")), ReservedVarPrefix) {
			t.Fatalf("accepted reserved name %q", v.Name)
		}
		if utf8.RuneCountInString(v.Value) > MaxVarValueLen || strings.ContainsAny(v.Value, variableValueForbidden) {
			t.Fatalf("accepted value %q", v.Value)
		}
	}
}

func checkSameForEncodingJSON(t *testing.T, raw []byte, cmd *Command) {
	var w struct {
		ID        string            `json:"id"`
		Number    string            `json:"number"`
		CallerID  string            `json:"caller_id"`
		TimeoutS  float64           `json:"timeout_s"`
		Variables map[string]string `json:"variables"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatalf("accepted, but encoding/json refuses it: %v", err)
	}
	ours := map[string]string{}
	for _, v := range cmd.Variables {
		ours[v.Name] = v.Value
	}
	if w.ID != cmd.ID || w.Number != cmd.Number || w.CallerID != cmd.CallerID ||
		int(w.TimeoutS) != cmd.TimeoutS || !maps.Equal(w.Variables, ours) {
		t.Fatalf("encoding/json reads %+v, we read %+v", w, cmd)
	}
}

func checkRendered(t *testing.T, cmd *Command) {
	call := &Call{Cmd: cmd, CallCode: strings.Repeat("9", MaxCallCodeLen), ChannelID: "db-pbx1-4711-m3x9k2-17-1"}
	req := testCell().originateRequest(call, cmd.Timeout(0))
	joined := JoinVariables(req.Variables)
	for _, line := range []string{"Channel: " + req.Channel, "CallerID: " + req.CallerID, "Variable: " + joined} {
		if r, i := firstForbiddenRune(line); i >= 0 {
			t.Fatalf("%U in %q", r, line)
		}
		if len(line)+2 >= asteriskLineMax {
			t.Fatalf("line of %d bytes: %.60q", len(line)+2, line)
		}
	}
	got := asteriskVariables(joined)
	if !slices.Equal(got, req.Variables) {
		t.Fatalf("Asterisk reads %v, we sent %v", got, req.Variables)
	}
	if got[0].Name != "DIALBRIDGE_ID" || got[1].Name != "DIALBRIDGE_CALL_CODE" {
		t.Fatalf("ours are not first: %v", got)
	}
	for _, v := range got[2:] {
		if strings.HasPrefix(strings.ToUpper(asteriskVarName(v.Name)), ReservedVarPrefix) {
			t.Fatalf("the command sets %s", v.Name)
		}
	}
}
