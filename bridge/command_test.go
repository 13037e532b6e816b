package bridge

import (
	"strings"
	"testing"
)

func TestParseCommandValid(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Command
	}{
		{"minimal", `{"id":"c1","number":"5511999990000"}`, Command{ID: "c1", Number: "5511999990000"}},
		{"full", `{"id":"c-000123","number":"+55*11#9","caller_id":"Multcall <1133334444>","timeout_s":30,"variables":{"CAMPAIGN":"spring","B":"x y"}}`,
			Command{ID: "c-000123", Number: "+55*11#9", CallerID: "Multcall <1133334444>", TimeoutS: 30,
				Variables: []Variable{{"B", "x y"}, {"CAMPAIGN", "spring"}}}},
		{"unknown fields ignored", `{"id":"a.b_c:d-e","number":"1","extra":{"x":[1,2]},"priority":9}`, Command{ID: "a.b_c:d-e", Number: "1"}},
		{"nulls are absent", `{"id":"x","number":"1","caller_id":null,"timeout_s":null,"variables":null}`, Command{ID: "x", Number: "1"}},
		{"whitespace around", " \n{\"id\":\"x\",\"number\":\"1\"}\n ", Command{ID: "x", Number: "1"}},
		{"timeout as 30.0", `{"id":"x","number":"1","timeout_s":30.0}`, Command{ID: "x", Number: "1", TimeoutS: 30}},
		{"unicode caller id", `{"id":"x","number":"1","caller_id":"São Paulo ☎"}`, Command{ID: "x", Number: "1", CallerID: "São Paulo ☎"}},
		{"id of 64", `{"id":"` + strings.Repeat("a", 64) + `","number":"1"}`, Command{ID: strings.Repeat("a", 64), Number: "1"}},
		{"inherited variables", `{"id":"x","number":"1","variables":{"_CAMPAIGN":"a","__LIST":"b"}}`,
			Command{ID: "x", Number: "1", Variables: []Variable{{"_CAMPAIGN", "a"}, {"__LIST", "b"}}}},
		{"value with = and accents", `{"id":"x","number":"1","variables":{"CITY":"São Paulo=SP"}}`,
			Command{ID: "x", Number: "1", Variables: []Variable{{"CITY", "São Paulo=SP"}}}},
		{"value of 256 characters in 512 bytes", `{"id":"x","number":"1","variables":{"A":"` + strings.Repeat("é", 256) + `"}}`,
			Command{ID: "x", Number: "1", Variables: []Variable{{"A", strings.Repeat("é", 256)}}}},
		{"variables of 799 bytes", `{"id":"x","number":"1","variables":` + varsOfSize(799) + `}`,
			Command{ID: "x", Number: "1", Variables: parseVars(varsOfSize(799))}},
		{"equal keys in different nested objects", `{"id":"x","number":"1","extra":{"a":{"b":[1,{"c":2}]},"x":[{"k":1},{"k":2}]}}`, Command{ID: "x", Number: "1"}},
		{"many unknown keys", `{"id":"x","number":"1",` + manyKeys(40) + `,"x":{` + manyKeys(40) + `}}`, Command{ID: "x", Number: "1"}},
		{"escaped key is the same key", `{"\u0069d":"x","number":"1"}`, Command{ID: "x", Number: "1"}},
		{"command of 16 KiB", `{"id":"x","number":"1","pad":"` + strings.Repeat("p", MaxCommandBytes-len(`{"id":"x","number":"1","pad":""}`)) + `"}`, Command{ID: "x", Number: "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.raw))
			if err != nil {
				t.Fatalf("ParseCommand: %v", err)
			}
			if got.ID != tt.want.ID || got.Number != tt.want.Number || got.CallerID != tt.want.CallerID || got.TimeoutS != tt.want.TimeoutS {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if len(got.Variables) != len(tt.want.Variables) {
				t.Fatalf("variables %v, want %v", got.Variables, tt.want.Variables)
			}
			for i := range got.Variables {
				if got.Variables[i] != tt.want.Variables[i] {
					t.Fatalf("variables %v, want %v", got.Variables, tt.want.Variables)
				}
			}
		})
	}
}

func TestParseCommandInvalid(t *testing.T) {
	big := `{"id":"big","number":"1","pad":"` + strings.Repeat("x", MaxCommandBytes) + `"}`
	huge := `{"id":"huge","number":"1","pad":"` + strings.Repeat("x", MaxItemBytes) + `"}`
	manyVars := `{"id":"v","number":"1","variables":{`
	for i := 0; i < 33; i++ {
		if i > 0 {
			manyVars += ","
		}
		manyVars += `"V` + strings.Repeat("x", i) + `":"1"`
	}
	manyVars += `}}`
	longVars := `{"id":"v","number":"1","variables":{`
	for i := 0; i < 4; i++ {
		if i > 0 {
			longVars += ","
		}
		longVars += `"V` + string(rune('A'+i)) + `":"` + strings.Repeat("y", 250) + `"`
	}
	longVars += `}}`

	tests := []struct {
		name   string
		raw    string
		wantID string // usable id in the error ("" = none)
		want   string // substring of the error
	}{
		{"empty", ``, "", "not a JSON object"},
		{"not json", `hello`, "", "not a JSON object"},
		{"array", `[1,2]`, "", "not a JSON object"},
		{"truncated", `{"id":"c1","number":"1"`, "", "malformed JSON"},
		{"trailing data", `{"id":"c1","number":"1"} {"id":"c2"}`, "", "data after the object"},
		{"missing id", `{"number":"1"}`, "", "id is required"},
		{"id number", `{"id":42,"number":"1"}`, "", "id must be a string, got a number"},
		{"id too long", `{"id":"` + strings.Repeat("a", 65) + `","number":"1"}`, "", "id must be 1-64"},
		{"id with space", `{"id":"a b","number":"1"}`, "", "id may only contain"},
		{"id with CRLF", `{"id":"a\r\nAction: Logoff","number":"1"}`, "", "id may only contain"},
		{"id fullwidth digit", `{"id":"c１","number":"1"}`, "", "id may only contain"},
		{"missing number", `{"id":"c1"}`, "c1", "number is required"},
		{"number as int", `{"id":"c1","number":5511}`, "c1", "number must be a string, got a number"},
		{"number empty", `{"id":"c1","number":""}`, "c1", "number must be 1-32"},
		{"number letters", `{"id":"c1","number":"55a"}`, "c1", "number may only contain"},
		{"number injection", `{"id":"c1","number":"1\r\nAction: Command\r\nCommand: core stop now"}`, "c1", "number may only contain"},
		{"number arabic-indic digits", `{"id":"c1","number":"١٢٣"}`, "c1", "number may only contain"},
		{"number NUL", `{"id":"c1","number":"1\u00002"}`, "c1", "number may only contain"},
		{"number too long", `{"id":"c1","number":"` + strings.Repeat("1", 33) + `"}`, "c1", "number must be 1-32"},
		{"caller id CRLF", `{"id":"c1","number":"1","caller_id":"x\r\nAction: Logoff"}`, "c1", "caller_id contains a control character"},
		{"caller id tab", `{"id":"c1","number":"1","caller_id":"x\ty"}`, "c1", "control character"},
		{"caller id C1 control", `{"id":"c1","number":"1","caller_id":"x\u0085y"}`, "c1", "control character"},
		{"caller id line separator", `{"id":"c1","number":"1","caller_id":"x\u2028y"}`, "c1", "control character"},
		{"caller id object", `{"id":"c1","number":"1","caller_id":{}}`, "c1", "caller_id must be a string, got an object"},
		{"timeout zero", `{"id":"c1","number":"1","timeout_s":0}`, "c1", "timeout_s must be 1-300"},
		{"timeout big", `{"id":"c1","number":"1","timeout_s":301}`, "c1", "timeout_s must be 1-300"},
		{"timeout fraction", `{"id":"c1","number":"1","timeout_s":1.5}`, "c1", "whole number"},
		{"timeout string", `{"id":"c1","number":"1","timeout_s":"30"}`, "c1", "whole number of seconds, got a string"},
		{"timeout huge exponent", `{"id":"c1","number":"1","timeout_s":1e400}`, "c1", "timeout_s"},
		{"variables array", `{"id":"c1","number":"1","variables":["a"]}`, "c1", "variables must be an object"},
		{"variable number value", `{"id":"c1","number":"1","variables":{"A":1}}`, "c1", "variable A must be a string"},
		{"variable comma", `{"id":"c1","number":"1","variables":{"A":"1,B=2"}}`, "c1", "may not contain ','"},
		{"variable CRLF", `{"id":"c1","number":"1","variables":{"A":"1\r\nAction: Logoff"}}`, "c1", "control character"},
		{"variable bad name", `{"id":"c1","number":"1","variables":{"A-B":"1"}}`, "c1", "may only contain A-Z"},
		{"variable name CRLF", `{"id":"c1","number":"1","variables":{"A\r\nB":"1"}}`, "c1", "may only contain A-Z"},
		{"variable reserved", `{"id":"c1","number":"1","variables":{"DIALBRIDGE_ID":"x"}}`, "c1", "reserved"},
		{"variable reserved lower", `{"id":"c1","number":"1","variables":{"dialbridge_x":"x"}}`, "c1", "reserved"},
		{"variable value long", `{"id":"c1","number":"1","variables":{"A":"` + strings.Repeat("v", 257) + `"}}`, "c1", "at most 256"},
		{"too many variables", manyVars, "v", "at most 32"},
		{"variables over 800 bytes", longVars, "v", "must stay under 800"},
		{"variables of exactly 800 bytes", `{"id":"v","number":"1","variables":` + varsOfSize(800) + `}`, "v", "are 800 bytes, must stay under 800"},
		{"over 16 KiB: id still usable", big, "big", "more than the 16384 allowed"},
		{"over 64 KiB: not read", huge, "", "more than the 16384 allowed"},
		{"ten megabytes", `{"id":"huge","number":"1","pad":"` + strings.Repeat("\r\n", 5<<20) + `"}`, "", "more than the 16384 allowed"},
		{"leading no-break space", "\u00a0{\"id\":\"c1\",\"number\":\"1\"}", "", "not a JSON object"},
		{"invalid utf8", "{\"id\":\"c1\",\"number\":\"1\",\"caller_id\":\"\xff\"}", "", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.raw))
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if id := IDOf(err); id != tt.wantID {
				t.Fatalf("IDOf = %q, want %q", id, tt.wantID)
			}
			// An error message must never carry a line break into logs or results.
			if strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Fatalf("error message contains control characters: %q", err)
			}
		})
	}
}
