package bridge

import "strings"

// What Asterisk 22 makes of an Originate's Variable header, ported from
// main/manager.c (man_do_variable_value) and main/app.c
// (__ast_app_separate_args with remove_chars set), so tests can check that
// Asterisk reads exactly the variables we meant.

// asteriskLineMax is the longest AMI line Asterisk reads, CRLF included
// (main/manager.c: inbuf[1025], one byte kept for the NUL); a longer line
// is discarded and what follows it read as new lines.
const asteriskLineMax = 1024

// asteriskArgsMax is AST_APP_ARG(vars)[64]: past 63 arguments the rest of
// the header is one argument, commas and all.
const asteriskArgsMax = 64

// asteriskVariables returns the variables Asterisk sets from one Variable
// header value, in the order it sets them.
func asteriskVariables(header string) []Variable {
	header = strings.TrimLeft(header, " \t") // ast_skip_blanks
	var vars []Variable
	for _, arg := range asteriskSplitArgs(header) {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			continue
		}
		vars = append(vars, Variable{Name: name, Value: value})
	}
	return vars
}

func asteriskSplitArgs(s string) []string {
	var args []string
	var cur []byte
	paren, bracket, quote := 0, 0, false
	i := 0
	for len(args) < asteriskArgsMax-1 && i < len(s) {
		cur = cur[:0]
		split := false
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '(':
				paren++
			case c == ')':
				if paren > 0 {
					paren--
				}
			case c == '[':
				bracket++
			case c == ']':
				if bracket > 0 {
					bracket--
				}
			case c == '"':
				quote = !quote
				continue // removed
			case c == '\\':
				// Removed; the next character is kept as it is and
				// still looked at by the loop, as in C (the memmove
				// shifts it under scan, which then moves on).
				if i+1 < len(s) {
					i++
					c = s[i]
				} else {
					continue
				}
			case c == ',' && paren == 0 && bracket == 0 && !quote:
				split = true
			}
			if split {
				i++
				break
			}
			cur = append(cur, c)
		}
		args = append(args, string(cur))
		if split && i == len(s) {
			args = append(args, "") // a trailing comma makes one more, empty
		}
	}
	if i < len(s) {
		args = append(args, s[i:])
	}
	return args
}
