package ami

import (
	"strings"
	"testing"
)

func TestLineGuard(t *testing.T) {
	long := strings.Repeat("x", maxEventLine)
	tests := []struct {
		name   string
		chunks []string
		safe   int    // bytes of the last chunk passed on
		err    string // "" when within bounds
	}{
		{"short lines", []string{"Event: A\r\nX: y\r\n\r\n"}, 18, ""},
		// The bound counts a line's bytes before its "\n", a CR included.
		{"longest line, CRLF", []string{"D: " + long[4:] + "\r\n"}, maxEventLine + 1, ""},
		{"longest line in pieces", []string{"D: " + long[3:100], long[100:] + "\n"}, maxEventLine - 100 + 1, ""},
		{"one byte over", []string{"a\r\n", "D: " + long[3:] + "\r\n"}, 0, "line over"},
		{"over without a line end", []string{"Event: A\r\n", long, "x"}, 0, "line over"},
		{"whole lines before the long one pass", []string{"Event: A\r\nD: " + long}, 10, "line over"},
		{"message bound", []string{strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", maxEventMessage/1025+1)}, (maxEventMessage / 1025) * 1025, "message over"},
		{"an empty line ends a message", []string{strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", maxEventMessage/1025) + "\r\n" +
			strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", 10)}, (maxEventMessage/1025+10)*1025 + 2, ""},
		{"CR and LF in two chunks end a message", []string{strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", maxEventMessage/1025) + "\r", "\n" +
			strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", 10)}, 1 + 10*1025, ""},
		{"a lone LF ends a message too", []string{strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", maxEventMessage/1025) + "\n" +
			strings.Repeat("H: "+strings.Repeat("v", 1020)+"\r\n", 10)}, (maxEventMessage/1025+10)*1025 + 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g lineGuard
			var safe int
			var err error
			for i, c := range tt.chunks {
				safe, err = g.check([]byte(c))
				if err != nil && i < len(tt.chunks)-1 {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("err %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if safe != tt.safe {
				t.Fatalf("passed on %d bytes, want %d", safe, tt.safe)
			}
		})
	}
}
