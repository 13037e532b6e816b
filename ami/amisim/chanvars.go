package amisim

import (
	"slices"
	"strings"
)

// maxVariableItems is the size of man_do_variable_value's argument array
// (AST_APP_ARG(vars)[64]): a Variable header yields at most 64 items, the
// last being the unparsed rest of the header.
const maxVariableItems = 64

// FunctionWrite is a Variable item whose name ends in ")": Asterisk writes
// it through a dialplan function (ast_func_write, e.g. CDR(userfield)=x)
// instead of setting a channel variable.
type FunctionWrite struct {
	Name, Value string
}

// chanVar is one channel variable as stored: name as set, with its leading
// underscores (inheritance).
type chanVar struct {
	name, value string
}

// originateVars is what an Originate's Variable headers leave on the new
// channel (manager.c astman_get_variables, channel.c ast_set_variables,
// pbx_variables.c pbx_builtin_setvar_helper):
//
//  1. each header, after its leading blanks, is split by separateArgs;
//  2. each item is split at its first "="; an item without "=" or with an
//     empty name is dropped; nothing is trimmed;
//  3. the items are put in a list by prepending, header after header, so
//     they are set in reverse order of appearance;
//  4. setting a name ending in ")" writes a function; otherwise any
//     variable with the same name once up to two leading "_" are stripped
//     from both is deleted, and the new one is added.
//
// So when a name appears twice, the FIRST appearance in the headers is what
// the dialplan reads, and "__X" and "X" are the same variable. That is how
// the set is built here, in order of appearance, without replaying the
// deletions.
type originateVars struct {
	vars  []chanVar // in order of appearance, one per name as read
	funcs []FunctionWrite
}

func parseOriginateVars(headers []string) originateVars {
	var ov originateVars
	for _, h := range headers {
		names, values := VariableItems(h)
		for i, name := range names {
			value := values[i]
			if strings.HasSuffix(name, ")") {
				ov.funcs = append(ov.funcs, FunctionWrite{Name: name, Value: value})
				continue
			}
			if !ov.has(varName(name)) {
				ov.vars = append(ov.vars, chanVar{name, value})
			}
		}
	}
	// Function writes are not replaced: all happen, last item first.
	slices.Reverse(ov.funcs)
	return ov
}

func (ov *originateVars) has(readName string) bool {
	for _, v := range ov.vars {
		if varName(v.name) == readName {
			return true
		}
	}
	return false
}

// read returns the variables by the name the dialplan reads them with
// (${NAME}), and, for those set with leading underscores, the name they
// were set with.
func (ov *originateVars) read() (values, setAs map[string]string) {
	if len(ov.vars) == 0 {
		return nil, nil
	}
	values = make(map[string]string, len(ov.vars))
	for _, v := range ov.vars {
		rn := varName(v.name)
		values[rn] = v.value
		if rn != v.name {
			if setAs == nil {
				setAs = make(map[string]string)
			}
			setAs[rn] = v.name
		}
	}
	return values, setAs
}

// varName is chanvars.c ast_var_name: the name without up to two leading
// underscores.
func varName(name string) string {
	for range 2 {
		if strings.HasPrefix(name, "_") {
			name = name[1:]
		}
	}
	return name
}

// skipBlanks is ast_skip_blanks: every byte below 33 is a blank.
func skipBlanks(s string) string {
	i := 0
	for i < len(s) && s[i] < 33 {
		i++
	}
	return s[i:]
}
