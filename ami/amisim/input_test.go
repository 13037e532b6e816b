package amisim

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// discardsFor is how many times get_input throws a full buffer away for a
// line of n bytes before its CRLF: the "\n" (at n+1) must fall inside a
// 1,024-byte window, and each discard moves the window 1,023 bytes on.
func discardsFor(n int) int {
	p := n + 1
	if p < maxLineBytes {
		return 0
	}
	return (p-maxLineBytes)/(maxLineBytes-1) + 1
}

// What manager.c (get_input, do_message, handle_parse_error) does with a
// line that does not fit its 1,024-byte buffer: one warning per buffer
// thrown away, the message answered "Failed to parse message: line too
// long" (with the ActionID it still has), and the session kept.
func TestLineTooLong(t *testing.T) {
	line := func(prefix string, n int, c string) string { return prefix + strings.Repeat(c, n-len(prefix)) }
	var tooMany strings.Builder
	tooMany.WriteString(line("X-Long: ", 2000, "l") + "\r\n")
	for i := range maxHeaderLines + 2 {
		fmt.Fprintf(&tooMany, "X-%d: v\r\n", i)
	}
	tests := []struct {
		name     string
		noLogin  bool
		send     string
		want     []string // Response/ActionID/Message of each answer, in order
		discards int
	}{
		{
			name: "1,022 bytes and CRLF fit",
			send: "Action: Ping\r\nActionID: fits\r\n" + line("Variable: A=", 1022, "x") + "\r\n\r\n",
			want: []string{"Success/fits/"},
		},
		{
			name: "1,023 bytes and a bare LF fit",
			send: "Action: Ping\nActionID: lf\n" + line("Variable: A=", 1023, "x") + "\n\n",
			want: []string{"Success/lf/"},
		},
		{
			// The byte kept after the discard is the CR: with the LF it
			// makes an empty line, which ends the message there.
			name: "1,023 bytes and CRLF: the message ends at the long line",
			send: "Action: Ping\r\nActionID: cr\r\n" + line("Variable: A=", 1023, "y") + "\r\nActionID: next\r\n\r\n",
			want: []string{
				"Error/cr/Failed to parse message: line too long",
				"Error/next/Missing action in request",
			},
			discards: 1,
		},
		{
			name: "a long line inside a message: one error, later headers kept",
			send: "Action: Ping\r\n" + line("Variable: A=", 5012, "z") + "\r\nActionID: after\r\n\r\n",
			want: []string{"Error/after/Failed to parse message: line too long"},
			// 5,012 bytes: discarded 4 times, 920 bytes of z left as a
			// header line of their own.
			discards: 4,
		},
		{
			name:     "a one-megabyte line",
			send:     "Action: Originate\r\nActionID: big\r\n" + line("Variable: A=", 1<<20, "w") + "\r\nChannel: PJSIP/1@t\r\nAsync: true\r\n\r\n",
			want:     []string{"Error/big/Failed to parse message: line too long"},
			discards: discardsFor(1 << 20),
		},
		{
			name:     "before login too: not Permission denied",
			noLogin:  true,
			send:     "Action: Login\r\nActionID: l\r\n" + line("Username: ", 3000, "u") + "\r\n\r\n",
			want:     []string{"Error/l/Failed to parse message: line too long"},
			discards: discardsFor(3000),
		},
		{
			// hdr_loss is answered first and leaves MESSAGE_LINE_TOO_LONG
			// set: the next message pays for it.
			name: "too many lines wins; the next message gets the long-line error",
			send: "Action: Ping\r\nActionID: many\r\n" + tooMany.String() + "\r\n" +
				"Action: Ping\r\nActionID: p2\r\n\r\n",
			want: []string{
				"Error/many/Too many lines in message or allocation failure",
				"Error/p2/Failed to parse message: line too long",
			},
			discards: discardsFor(2000),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var warnings []string
			srv := newServer(t, Config{Logf: func(format string, args ...any) {
				if msg := fmt.Sprintf(format, args...); strings.Contains(msg, "Line too long") {
					mu.Lock()
					warnings = append(warnings, msg)
					mu.Unlock()
				}
			}})
			c := dial(t, srv)
			if !tt.noLogin {
				c.login("off")
			}
			c.sendRaw(tt.send)
			for i, want := range tt.want {
				r := c.mustRead()
				got := r.get("Response") + "/" + r.get("ActionID") + "/" + r.get("Message")
				if got != want {
					t.Fatalf("answer %d: %s, want %s", i+1, r, want)
				}
				if r.get("Response") == "Success" && r.get("Ping") != "Pong" {
					t.Fatalf("answer %d: %s", i+1, r)
				}
			}
			// The session is kept.
			c.send("Action", "Ping", "ActionID", "alive")
			if r := c.mustRead(); r.get("ActionID") != "alive" {
				t.Fatalf("after: %s", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(warnings) != tt.discards {
				t.Fatalf("%d warnings, want %d: %q", len(warnings), tt.discards, warnings)
			}
			if tt.discards > 0 {
				if w := warnings[0]; !strings.Contains(w, "Discarding message from 127.0.0.1. Line too long: ") || !strings.HasSuffix(w, "...") {
					t.Errorf("warning %q", w)
				}
				if st := srv.Stats(); st.ParseErrors == 0 {
					t.Errorf("stats %+v", st)
				}
			}
		})
	}
}
