package bridge

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The contract v2 rules of section 2 (issue 13 items 4 and 10): Unicode Cc
// and Cf in every field, what Asterisk's argument parser would interpret in
// a value, names that become ours once Asterisk drops their underscores,
// and strict JSON.

// varsOfSize is a variables object whose k=v,… text is exactly n bytes, in
// as few variables as values of at most 250 characters allow.
func varsOfSize(n int) string {
	return spreadVars(n, max(1, (n+255)/255))
}

// spreadVars is a variables object of count entries whose k=v,… text is
// exactly n bytes.
func spreadVars(n, count int) string {
	per := (n - (count - 1)) / count // each k=v
	extra := (n - (count - 1)) % count
	var parts []string
	for i := range count {
		name := "V" + string(rune('A'+i/26)) + string(rune('A'+i%26))
		v := per - len(name) - 1
		if i == 0 {
			v += extra
		}
		parts = append(parts, `"`+name+`":"`+strings.Repeat("y", v)+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// parseVars is the variables of a JSON object, sorted as ParseCommand sorts them.
func parseVars(obj string) []Variable {
	var m map[string]string
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		panic(err)
	}
	var vars []Variable
	for k, v := range m {
		vars = append(vars, Variable{k, v})
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars
}

// manyKeys is n members "k0":0,"k1":0,….
func manyKeys(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, `"k`+strconv.Itoa(i)+`":0`)
	}
	return strings.Join(parts, ",")
}

func TestVarsOfSize(t *testing.T) {
	for _, n := range []int{4, 254, 799, 800} {
		if got := len(JoinVariables(parseVars(varsOfSize(n)))); got != n {
			t.Errorf("varsOfSize(%d) joins to %d bytes", n, got)
		}
	}
}

// invalidCase is one refused command: the usable id and a part of the error.
type invalidCase struct {
	name   string
	raw    string
	wantID string
	want   string
}

func runInvalid(t *testing.T, tests []invalidCase) {
	t.Helper()
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
			if r, i := firstForbiddenRune(err.Error()); i >= 0 {
				t.Fatalf("error message carries %U: %q", r, err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestParseCommandControlAndFormatCharacters(t *testing.T) {
	cmd := func(field string) string { return `{"id":"c1","number":"1",` + field + `}` }
	runInvalid(t, []invalidCase{
		{"caller_id right-to-left override", cmd(`"caller_id":"Bank \u202Eknil"`), "c1", "caller_id contains a control character (U+202E, category Cf)"},
		{"caller_id left-to-right embedding", cmd(`"caller_id":"a\u202Ab"`), "c1", "U+202A, category Cf"},
		{"caller_id first strong isolate", cmd(`"caller_id":"a\u2068b"`), "c1", "U+2068, category Cf"},
		{"caller_id pop directional isolate", cmd(`"caller_id":"a\u2069b"`), "c1", "U+2069, category Cf"},
		{"caller_id zero width space", cmd(`"caller_id":"a\u200Bb"`), "c1", "U+200B, category Cf"},
		{"caller_id zero width joiner", cmd(`"caller_id":"a\u200Db"`), "c1", "U+200D, category Cf"},
		{"caller_id left-to-right mark", cmd(`"caller_id":"a\u200Eb"`), "c1", "U+200E, category Cf"},
		{"caller_id byte order mark", cmd(`"caller_id":"\uFEFFMulticall"`), "c1", "U+FEFF, category Cf"},
		{"caller_id soft hyphen", cmd(`"caller_id":"Mult\u00ADcall"`), "c1", "U+00AD, category Cf"},
		{"caller_id arabic letter mark", cmd(`"caller_id":"a\u061Cb"`), "c1", "U+061C, category Cf"},
		{"caller_id escape", cmd(`"caller_id":"a\u001B]0;pwned\u0007"`), "c1", "U+001B, category Cc"},
		{"caller_id raw bidi override", cmd("\"caller_id\":\"a\u202Eb\""), "c1", "U+202E, category Cf"},
		{"variable value bidi override", cmd(`"variables":{"A":"x\u202Ey"}`), "c1", "variable A contains a control character (U+202E, category Cf)"},
		{"variable value zero width space", cmd(`"variables":{"A":"x\u200By"}`), "c1", "U+200B, category Cf"},
		{"variable value delete", cmd(`"variables":{"A":"x\u007Fy"}`), "c1", "U+007F, category Cc"},
		{"id bidi override", `{"id":"c\u202E1","number":"1"}`, "", `id may only contain A-Z a-z 0-9 . _ : -, found U+202E`},
		{"number zero width space", `{"id":"c1","number":"1\u200B2"}`, "c1", "number may only contain 0-9 + * #, found U+200B"},
		{"variable name zero width space", cmd(`"variables":{"A\u200BB":"1"}`), "c1", `variable name "A\u200bB" may only contain`},
		{"unknown key with zero width space", `{"i\u200Bd":"c2","id":"c1","number":"1"}`, "c1", "a key contains a control character (U+200B, category Cf)"},
	})
}

func TestParseCommandVariableRules(t *testing.T) {
	cmd := func(vars string) string { return `{"id":"c1","number":"1","variables":{` + vars + `}}` }
	runInvalid(t, []invalidCase{
		// Issue 13 item 4: the dialplan read the attacker's call code.
		{"issue 13 smuggling", cmd(`"__DIALBRIDGE_CALL_CODE":"999999","zz":"("`), "c1", `variable name "__DIALBRIDGE_CALL_CODE" is reserved`},
		{"reserved after one underscore", cmd(`"_DIALBRIDGE_ID":"x"`), "c1", "is reserved"},
		{"reserved after three underscores", cmd(`"___dialbridge_x":"x"`), "c1", "is reserved"},
		{"open parenthesis", cmd(`"zz":"("`), "c1", `may not contain '('`},
		{"close parenthesis", cmd(`"zz":"a)"`), "c1", `may not contain ')'`},
		{"open bracket", cmd(`"zz":"[a"`), "c1", `may not contain '['`},
		{"close bracket", cmd(`"zz":"a]"`), "c1", `may not contain ']'`},
		{"double quote", cmd(`"zz":"say \"hi\""`), "c1", `may not contain '"'`},
		{"backslash", cmd(`"zz":"C:\\x"`), "c1", `may not contain '\\'`},
		{"the error says why", cmd(`"zz":"("`), "c1", "Asterisk parses the Variable header with its application-argument parser"},
		{"value of 257 characters", cmd(`"A":"` + strings.Repeat("é", 257) + `"`), "c1", "variable A is 257 characters, at most 256 allowed"},
		{"name of underscores only", cmd(`"__":"x"`), "c1", `variable name "__" needs a character other than _`},
		{"name and its inherited form", cmd(`"CAMPAIGN":"a","_CAMPAIGN":"b"`), "c1", "variables CAMPAIGN and _CAMPAIGN are the same Asterisk variable"},
		{"both inherited forms", cmd(`"__X":"a","_X":"b"`), "c1", "variables _X and __X are the same Asterisk variable"},
		{"name of 65", cmd(`"` + strings.Repeat("N", 65) + `":"x"`), "c1", "variable name must be 1-64 characters, got 65"},
		{"empty name", cmd(`"":"x"`), "c1", "variable name must be 1-64 characters, got 0"},
	})
}

func TestParseCommandStrictJSON(t *testing.T) {
	runInvalid(t, []invalidCase{
		{"ID for id", `{"ID":"c1","number":"1"}`, "", `key "ID" is not a field of a dial command: keys are case-sensitive (the field is "id")`},
		{"Number for number", `{"id":"c1","Number":"5511999990000"}`, "c1", `key "Number" is not a field`},
		{"NUMBER beside number", `{"id":"c1","number":"1","NUMBER":"2"}`, "c1", `key "NUMBER" is not a field`},
		{"Variables beside variables", `{"id":"c1","number":"1","variables":{},"Variables":{"X":"1"}}`, "c1", `key "Variables" is not a field`},
		{"Id beside id: no usable id", `{"id":"c1","Id":"c2","number":"1"}`, "", `key "Id" is not a field`},
		{"iD before id: no usable id", `{"iD":"c2","id":"c1","number":"1"}`, "", `key "iD" is not a field`},
		// encoding/json folds U+017F (long s) with s.
		{"long s folds to variables", `{"id":"c1","number":"1","variable\u017F":{"X":"1"}}`, "c1", `key "variable\u017f" is not a field`},
		{"number twice", `{"id":"c1","number":"1","number":"2"}`, "c1", `key "number" appears more than once`},
		{"id twice: no usable id", `{"id":"c1","id":"c2","number":"1"}`, "", `key "id" appears more than once`},
		{"id twice, same value", `{"id":"c1","number":"1","id":"c1"}`, "", `key "id" appears more than once`},
		{"escaped id twice", `{"id":"c1","\u0069d":"c2","number":"1"}`, "", `key "id" appears more than once`},
		{"unknown key twice", `{"id":"c1","number":"1","x":1,"x":2}`, "c1", `key "x" appears more than once`},
		{"variable twice", `{"id":"c1","number":"1","variables":{"A":"1","A":"2"}}`, "c1", `key "A" appears more than once in variables`},
		{"nested key twice", `{"id":"c1","number":"1","extra":{"a":[{"b":1,"b":2}]}}`, "c1", `key "b" appears more than once inside "extra"`},
		{"caller_id twice", `{"id":"c1","number":"1","caller_id":"A","caller_id":"B"}`, "c1", `key "caller_id" appears more than once`},
		{"timeout_s twice", `{"id":"c1","number":"1","timeout_s":30,"timeout_s":300}`, "c1", `key "timeout_s" appears more than once`},
		{"variables twice", `{"id":"c1","number":"1","variables":{},"variables":{"A":"1"}}`, "c1", `key "variables" appears more than once`},
		{"escaped ID beside id", `{"id":"c1","number":"1","I\u0044":"x"}`, "", `key "ID" is not a field`},
		{"unknown key repeated among many", `{"id":"c1","number":"1",` + manyKeys(20) + `,"k3":0}`, "c1", `key "k3" appears more than once`},
		{"nested key repeated among many", `{"id":"c1","number":"1","x":{` + manyKeys(20) + `,"k19":0}}`, "c1", `key "k19" appears more than once inside "x"`},
		{"malformed after a good id", `{"id":"c1","number":"1",}`, "", "malformed JSON"},
	})
}
