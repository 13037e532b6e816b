package bridge

import "github.com/multcall/dialbridge/ami/amisim"

// What Asterisk 22 makes of an Originate's Variable header (main/manager.c
// man_do_variable_value, main/app.c __ast_app_separate_args with
// remove_chars set), so tests can check that Asterisk reads exactly the
// variables we meant.

// asteriskLineMax is the longest AMI line Asterisk reads, CRLF included
// (main/manager.c: inbuf[1025], one byte kept for the NUL); a longer line
// is discarded and what follows it read as new lines.
const asteriskLineMax = 1024

// asteriskArgsMax is AST_APP_ARG(vars)[64]: past 63 arguments the rest of
// the header is one argument, commas and all.
const asteriskArgsMax = 64

// asteriskVariables returns the variables Asterisk sets from one Variable
// header value, in order of appearance: the simulator's port of Asterisk's
// parser (ami/amisim), so the simulator and these checks cannot disagree.
func asteriskVariables(header string) []Variable {
	names, values := amisim.VariableItems(header)
	var vars []Variable
	for i := range names {
		vars = append(vars, Variable{Name: names[i], Value: values[i]})
	}
	return vars
}

func asteriskSplitArgs(s string) []string { return amisim.SeparateVariableArgs(s) }
