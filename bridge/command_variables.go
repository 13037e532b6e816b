package bridge

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Asterisk reads the Originate's Variable header with its application-
// argument parser (main/app.c, __ast_app_separate_args): a comma splits,
// parentheses, brackets and double quotes group (a "(" swallows the
// variables after it), a backslash escapes, and quotes and backslashes are
// removed. None of that is ever what a dial command means, so a value may
// contain none of them (contract section 2).
const variableValueForbidden = `,()[]"\`

// JoinVariables is the text of the Variable header: k=v joined by commas,
// in order. Nothing is escaped: ParseCommand refused whatever Asterisk
// would interpret.
func JoinVariables(vars []Variable) string {
	var b strings.Builder
	for i, v := range vars {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(v.Value)
	}
	return b.String()
}

func variablesField(v jvalue) ([]Variable, error) {
	if v.absent() {
		return nil, nil
	}
	if v.kind != '{' {
		return nil, fmt.Errorf("variables must be an object of strings, got %s", v.kindName())
	}
	if len(v.pairs) > MaxVariables {
		return nil, fmt.Errorf("variables has %d entries, at most %d allowed", len(v.pairs), MaxVariables)
	}
	vars := make([]Variable, 0, len(v.pairs))
	size := 0
	for _, p := range v.pairs {
		if err := checkVarName(p.name); err != nil {
			return nil, err
		}
		value, err := stringField(p.val, "variable "+p.name, true)
		if err != nil {
			return nil, err
		}
		if err := checkVarValue(p.name, value); err != nil {
			return nil, err
		}
		if size > 0 {
			size++ // the comma
		}
		size += len(p.name) + 1 + len(value)
		vars = append(vars, Variable{Name: p.name, Value: value})
	}
	// Under 800 bytes, the one Variable line (ours first, whatever their
	// length) always fits Asterisk's 1,024-byte line: a longer line is
	// discarded, and its tail read as new header lines.
	if size >= MaxVariablesBytes {
		return nil, fmt.Errorf("variables joined as k=v,… are %d bytes, must stay under %d", size, MaxVariablesBytes)
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	if err := checkSameAsteriskName(vars); err != nil {
		return nil, err
	}
	return vars, nil
}

func checkVarName(k string) error {
	if k == "" || len(k) > MaxVarNameLen {
		return fmt.Errorf("variable name must be 1-%d characters, got %d", MaxVarNameLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if !(isAlnum(k[i]) || k[i] == '_') {
			return fmt.Errorf("variable name %s may only contain A-Z a-z 0-9 _", quoteKey(k))
		}
	}
	// A leading _ or __ asks Asterisk to pass the variable on to the
	// channels this one creates; the name Asterisk and the dialplan use is
	// what follows, so that is the name checked against ours.
	base := strings.TrimLeft(k, "_")
	if base == "" {
		return fmt.Errorf("variable name %s needs a character other than _", quoteKey(k))
	}
	if strings.HasPrefix(strings.ToUpper(base), ReservedVarPrefix) {
		return fmt.Errorf("variable name %s is reserved (a name that begins with %s once its leading underscores are removed, in any case, is dialbridge's)", quoteKey(k), ReservedVarPrefix)
	}
	return nil
}

func checkVarValue(name, v string) error {
	if n := utf8.RuneCountInString(v); n > MaxVarValueLen {
		return fmt.Errorf("variable %s is %d characters, at most %d allowed", name, n, MaxVarValueLen)
	}
	if err := checkRunes("variable "+name, v); err != nil {
		return err
	}
	if i := strings.IndexAny(v, variableValueForbidden); i >= 0 {
		return fmt.Errorf("variable %s may not contain %q (found at byte %d): Asterisk parses the Variable header with its application-argument parser, where a comma splits, ( ) [ ] and \" group and \\ escapes",
			name, v[i], i)
	}
	return nil
}

// checkSameAsteriskName refuses two names Asterisk takes for one variable
// (it drops up to two leading underscores, main/chanvars.c ast_var_name):
// the one set last would silently win, a repeated key in disguise.
func checkSameAsteriskName(sorted []Variable) error {
	if len(sorted) < 2 {
		return nil
	}
	seen := make(map[string]string, len(sorted))
	for _, v := range sorted {
		base := asteriskVarName(v.Name)
		if other, ok := seen[base]; ok {
			return fmt.Errorf("variables %s and %s are the same Asterisk variable (Asterisk drops up to two leading underscores)", other, v.Name)
		}
		seen[base] = v.Name
	}
	return nil
}

func asteriskVarName(name string) string {
	for range 2 {
		name = strings.TrimPrefix(name, "_")
	}
	return name
}
