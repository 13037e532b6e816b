package amisim

import "strings"

// separateArgs splits s the way Asterisk's application-argument parser does
// (main/app.c, __ast_app_separate_args), which is also how manager.c reads
// a Variable header (AST_STANDARD_APP_ARGS: delimiter ',', removeChars on,
// at most 64 items):
//
//   - delim splits, except inside ( ), [ ] or "quotes". The nesting
//     counters and the quote flag are not reset between items: an unclosed
//     "(" in one item swallows every delimiter after it. A ")" or "]" with
//     nothing open is ignored; brackets and parentheses stay in the item.
//   - With removeChars, a quote is removed and a backslash is removed and
//     makes the next byte literal (neither a delimiter nor a bracket). The
//     raw mode keeps both.
//   - The last of max items is the rest of s, untouched (no quote or
//     backslash removed), delimiters and all.
//   - A delimiter that ends s (after removals) makes one more, empty, item.
//
// pos mirrors where C's scan pointer stands in its edited buffer, so the
// last rule holds even in C's corner cases: `a,"` gives "a", "", "".
func separateArgs(s string, delim byte, removeChars bool, max int) []string {
	if max <= 0 || s == "" {
		return nil
	}
	var (
		out            []string
		cur            []byte
		paren, bracket int
		quote          bool
		i, pos         int
		lastDelim      = -1
		sawDelim       bool
	)
	for len(out) < max-1 && i < len(s) {
		// An item stays a substring of s until a removal edits it; from
		// then on it is built in cur.
		start, end, edited := i, len(s), false
	item:
		for i < len(s) {
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
			case c == '"' && delim != '"':
				quote = !quote
				if removeChars {
					if !edited {
						cur, edited = append(cur[:0], s[start:i]...), true
					}
					i++
					continue
				}
			case c == '\\':
				if removeChars {
					if !edited {
						cur, edited = append(cur[:0], s[start:i]...), true
					}
					// The escaped byte is kept as is; a trailing backslash
					// escapes C's terminator, which still ends the string.
					if i+1 < len(s) {
						cur = append(cur, s[i+1])
					}
					i += 2
					pos++
					continue
				}
				// Raw mode: both bytes stay, the second is not looked at.
				n := min(2, len(s)-i)
				if edited {
					cur = append(cur, s[i:i+n]...)
				}
				i += n
				pos += n
				continue
			case c == delim && paren == 0 && bracket == 0 && !quote:
				lastDelim, sawDelim = pos, true
				end = i
				i++
				pos++
				break item
			}
			if edited {
				cur = append(cur, c)
			}
			i++
			pos++
		}
		if edited {
			out = append(out, string(cur))
		} else {
			out = append(out, s[start:min(end, len(s))])
		}
	}
	if i < len(s) {
		out = append(out, s[i:])
	} else if sawDelim && pos-1 == lastDelim {
		out = append(out, "")
	}
	return out
}

// VariableItems is what Asterisk 22 reads from one Variable header value
// (manager.c man_do_variable_value): after its leading blanks, the
// header's items split like an application's arguments, each cut at its
// first "="; items without "=" or with an empty name are dropped. They come
// in order of appearance, before the channel-variable rules (see
// originateVars). Exported for other packages' tests: one port of
// Asterisk's parser serves the simulator and the dial command's checks.
func VariableItems(header string) (names, values []string) {
	for _, it := range SeparateVariableArgs(skipBlanks(header)) {
		name, value, ok := strings.Cut(it, "=")
		if !ok || name == "" {
			continue
		}
		names = append(names, name)
		values = append(values, value)
	}
	return names, values
}

// SeparateVariableArgs splits a Variable header as Asterisk does, at most
// 64 items, the last holding the rest.
func SeparateVariableArgs(s string) []string {
	return separateArgs(s, ',', true, maxVariableItems)
}
