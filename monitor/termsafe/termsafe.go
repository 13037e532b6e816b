// Package termsafe keeps text from outside (Redis, the network) from
// driving the terminal it is shown on.
//
// A terminal acts on control characters: ESC starts sequences that set the
// window title (OSC 0/2), clear the screen (CSI 2J) or write the clipboard
// (OSC 52); a bare CR moves back to the start of the line, so that the rest
// of a message overwrites it and forges another; BEL rings; C1 characters
// (U+0080–U+009F, and the bytes 0x80–0x9F of text that is not UTF-8) are
// the same introducers in one byte for some terminals; format characters
// (Unicode Cf: bidi overrides like U+202E, zero-width characters) make what
// is shown differ from what is stored. Escape writes all of them, with the
// line and paragraph separators, as visible Go-style escapes (\x1b, \r,
// \u202e, \xff) and leaves every other character as it is, so that ids made
// of letters, digits and punctuation are shown unchanged.
package termsafe

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// unsafeRune reports whether a terminal could act on r rather than show it.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f: // C0 and DEL
		return true
	case r < 0x80:
		return false
	case r <= 0x9f: // C1
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

// FirstUnsafe is the byte index of the first character of s a terminal
// could act on (a control or format character, or a byte that is not
// UTF-8), or -1 when there is none.
func FirstUnsafe(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unsafeRune(r) {
			return i
		}
		i += n
	}
	return -1
}

// Escape returns s with every character a terminal could act on written as
// an escape: \a \b \t \n \v \f \r, \x1b for other C0 controls and DEL,
// \u009b for C1, \u202e or \U000e0001 for format characters and the
// separators, \xff for a byte that is not UTF-8. Anything else, backslashes
// included, is left alone: Escape is for showing text, not for quoting it,
// and a printable id reads the same on the screen as in Redis. s itself is
// returned when nothing needs escaping.
func Escape(s string) string {
	i := FirstUnsafe(s)
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\x`...)
			b = appendHex(b, uint32(s[i]), 2)
		case unsafeRune(r):
			b = appendEscape(b, r)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// Lines escapes each of lines (a new slice; lines is not changed).
func Lines(lines []string) []string {
	if lines == nil {
		return nil
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = Escape(l)
	}
	return out
}

func appendEscape(b []byte, r rune) []byte {
	switch r {
	case '\a':
		return append(b, `\a`...)
	case '\b':
		return append(b, `\b`...)
	case '\t':
		return append(b, `\t`...)
	case '\n':
		return append(b, `\n`...)
	case '\v':
		return append(b, `\v`...)
	case '\f':
		return append(b, `\f`...)
	case '\r':
		return append(b, `\r`...)
	}
	switch {
	case r < 0x80:
		return appendHex(append(b, `\x`...), uint32(r), 2)
	case r <= 0xffff:
		return appendHex(append(b, `\u`...), uint32(r), 4)
	default:
		return appendHex(append(b, `\U`...), uint32(r), 8)
	}
}

func appendHex(b []byte, v uint32, width int) []byte {
	h := strconv.FormatUint(uint64(v), 16)
	for range width - len(h) {
		b = append(b, '0')
	}
	return append(b, h...)
}

// JSON rewrites a JSON document (as encoding/json writes it) so that it can
// go to a terminal: the characters Escape would escape that encoding/json
// leaves raw in strings (DEL, C1, format characters) become \u escapes,
// which decode to the same text. Whitespace between values is kept.
func JSON(doc []byte) []byte {
	var out []byte
	last := 0
	for i := 0; i < len(doc); {
		c := doc[i]
		if c < utf8.RuneSelf && c != 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRune(doc[i:])
		bad := r == utf8.RuneError && n == 1
		if !bad && !unsafeRune(r) {
			i += n
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(doc)+16)
		}
		out = append(out, doc[last:i]...)
		if bad {
			r = utf8.RuneError
		}
		if r > 0xffff {
			hi, lo := utf16Pair(r)
			out = appendHex(append(out, `\u`...), hi, 4)
			out = appendHex(append(out, `\u`...), lo, 4)
		} else {
			out = appendHex(append(out, `\u`...), uint32(r), 4)
		}
		i += n
		last = i
	}
	if out == nil {
		return doc
	}
	return append(out, doc[last:]...)
}

func utf16Pair(r rune) (hi, lo uint32) {
	v := uint32(r) - 0x10000
	return 0xd800 + v>>10, 0xdc00 + v&0x3ff
}
