package httpapi

import (
	"unicode/utf8"

	"github.com/multcall/dialbridge/monitor/termsafe"
)

// maxMessageBytes bounds an error message: it may quote the client's input.
const maxMessageBytes = 512

// safeText is s made safe to print on a terminal or in a log viewer
// (termsafe.Escape: escape sequences, bidi overrides and bytes that are not
// UTF-8 are written as visible escapes), cut at maxMessageBytes.
func safeText(s string) string {
	const cut = "…"
	s = termsafe.Escape(s)
	if len(s) <= maxMessageBytes {
		return s
	}
	end := maxMessageBytes - len(cut)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + cut
}
