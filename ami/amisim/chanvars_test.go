package amisim

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// What the dialplan reads after an Originate with these Variable headers:
// manager.c man_do_variable_value (parse, split at "=", prepend) and
// pbx_variables.c pbx_builtin_setvar_helper (strip "_"/"__" to compare,
// replace).
func TestOriginateVars(t *testing.T) {
	var many []string
	for i := range 70 {
		many = append(many, fmt.Sprintf("v%d=%d", i, i))
	}
	manyWant := map[string]string{}
	for i := range 63 {
		manyWant[fmt.Sprintf("v%d", i)] = fmt.Sprint(i)
	}
	manyWant["v63"] = "63," + strings.Join(many[64:], ",")

	tests := []struct {
		name    string
		headers []string
		want    map[string]string // by the name ${NAME} reads
		setAs   map[string]string // only the names that differ from their key
		funcs   []FunctionWrite
	}{
		{name: "none"},
		{name: "one header, two variables", headers: []string{"A=1,B=2"}, want: map[string]string{"A": "1", "B": "2"}},
		{name: "headers add up", headers: []string{"A=1", "B=2"}, want: map[string]string{"A": "1", "B": "2"}},
		{name: "leading blanks skipped", headers: []string{" \tA=1"}, want: map[string]string{"A": "1"}},
		{name: "nothing trimmed", headers: []string{"A = 1, B=2"}, want: map[string]string{"A ": " 1", " B": "2"}},
		{name: "split at the first =", headers: []string{"A=b=c"}, want: map[string]string{"A": "b=c"}},
		{name: "empty value is set", headers: []string{"A="}, want: map[string]string{"A": ""}},
		{name: "no = or no name: dropped", headers: []string{"noequals,=v,A=1"}, want: map[string]string{"A": "1"}},
		{name: "first appearance wins in a header", headers: []string{"A=1,A=2"}, want: map[string]string{"A": "1"}},
		{name: "first appearance wins across headers", headers: []string{"A=1", "A=2"}, want: map[string]string{"A": "1"}},
		{name: "__X is X", headers: []string{"__X=1,X=2"}, want: map[string]string{"X": "1"}, setAs: map[string]string{"X": "__X"}},
		{name: "X then _X", headers: []string{"X=2,_X=1"}, want: map[string]string{"X": "2"}},
		{name: "only two underscores are stripped", headers: []string{"_X=1,___X=2"},
			want: map[string]string{"X": "1", "_X": "2"}, setAs: map[string]string{"X": "_X", "_X": "___X"}},
		{name: "quotes removed", headers: []string{`A="x y",B=\"`}, want: map[string]string{"A": "x y", "B": `"`}},
		{name: "name ending in ) writes a function", headers: []string{"CDR(userfield)=x,A=1"},
			want: map[string]string{"A": "1"}, funcs: []FunctionWrite{{"CDR(userfield)", "x"}}},
		{name: "function writes all happen, last first", headers: []string{"F(a)=1", "F(a)=2"},
			funcs: []FunctionWrite{{"F(a)", "2"}, {"F(a)", "1"}}},
		{name: "64 items at most per header", headers: []string{strings.Join(many, ",")}, want: manyWant},
		{
			// Issue 13 item 4, as the bridge rendered it (ours last): the
			// "(" swallows ours, and __ makes the attacker's the one
			// ${DIALBRIDGE_CALL_CODE} reads.
			name:    "smuggled call code, ours last",
			headers: []string{"__DIALBRIDGE_CALL_CODE=999999,zz=(,DIALBRIDGE_ID=c-1,DIALBRIDGE_CALL_CODE=987654"},
			want: map[string]string{
				"DIALBRIDGE_CALL_CODE": "999999",
				"zz":                   "(,DIALBRIDGE_ID=c-1,DIALBRIDGE_CALL_CODE=987654",
			},
			setAs: map[string]string{"DIALBRIDGE_CALL_CODE": "__DIALBRIDGE_CALL_CODE"},
		},
		{
			name:    "smuggled call code, ours first",
			headers: []string{"DIALBRIDGE_ID=c-1,DIALBRIDGE_CALL_CODE=987654,__DIALBRIDGE_CALL_CODE=999999,zz=("},
			want:    map[string]string{"DIALBRIDGE_ID": "c-1", "DIALBRIDGE_CALL_CODE": "987654", "zz": "("},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ov := parseOriginateVars(tt.headers)
			got, setAs := ov.read()
			if len(got) != 0 || len(tt.want) != 0 {
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("variables\n  %q\nwant\n  %q", got, tt.want)
				}
			}
			if len(setAs) != 0 || len(tt.setAs) != 0 {
				if !reflect.DeepEqual(setAs, tt.setAs) {
					t.Errorf("set as %q, want %q", setAs, tt.setAs)
				}
			}
			if !reflect.DeepEqual(ov.funcs, tt.funcs) {
				t.Errorf("functions %q, want %q", ov.funcs, tt.funcs)
			}
		})
	}
}

// The simulator shows what a PBX would: an Originate sent with the
// smuggling payload of issue 13 (the bridge's old rendering, command
// variables before ours) makes the dialplan read the attacker's call code.
func TestOriginateRecordsVariablesAsDialplanReads(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeFailed}}})
	c := dial(t, srv)
	c.login("off")
	c.send("Action", "Originate", "Channel", "PJSIP/5511999990000@trunk", "Context", "agents", "Exten", "s",
		"Priority", "1", "Async", "true", "ActionID", "o-1",
		"Variable", "__DIALBRIDGE_CALL_CODE=999999,zz=(,DIALBRIDGE_ID=c-1,DIALBRIDGE_CALL_CODE=987654")
	if r := c.response("o-1"); r.get("Response") != "Success" {
		t.Fatalf("got %s", r)
	}
	recs := srv.Originates()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Variables["DIALBRIDGE_CALL_CODE"] != "999999" || r.VariableNames["DIALBRIDGE_CALL_CODE"] != "__DIALBRIDGE_CALL_CODE" {
		t.Errorf("the dialplan would read DIALBRIDGE_CALL_CODE=999999 (set as __DIALBRIDGE_CALL_CODE); the record says %q (set as %q)",
			r.Variables["DIALBRIDGE_CALL_CODE"], r.VariableNames["DIALBRIDGE_CALL_CODE"])
	}
	if v, ok := r.Variables["DIALBRIDGE_ID"]; ok {
		t.Errorf("DIALBRIDGE_ID=%q: it was swallowed by zz's value", v)
	}
	if len(r.Variables) != 2 {
		t.Errorf("variables %q", r.Variables)
	}
}
