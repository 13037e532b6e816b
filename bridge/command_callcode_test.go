package bridge

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The confirmation's call_code travels in the Variable header beside the
// command's variables: contract section 2 allows 1-64 of A-Za-z0-9._:- and
// nothing else (so no Cc or Cf character either); anything else ends the
// call failed, undialed, with the error.

func TestCheckCallCode(t *testing.T) {
	tests := []struct {
		name string
		code string
		want string // "" = accepted
	}{
		{"digits", "987654", ""},
		{"one", "7", ""},
		{"every allowed character", "Az09._:-", ""},
		{"64", strings.Repeat("9", 64), ""},
		{"empty", "", "must be 1-64 characters, got 0"},
		{"65", strings.Repeat("9", 65), "must be 1-64 characters, got 65"},
		{"comma", "1,DIALBRIDGE_ID=x", `',' at position 1`},
		{"parenthesis", "1(", `'(' at position 1`},
		{"quote", `1"`, `'"' at position 1`},
		{"space", "1 2", `' ' at position 1`},
		{"CRLF", "1\r\nAction: Logoff", "U+000D at position 1"},
		{"NUL", "1\x00", "U+0000 at position 1"},
		{"right-to-left override", "1\u202E2", "U+202E at position 1"},
		{"zero width space", "1\u200B", "U+200B at position 1"},
		{"byte order mark", "\uFEFF1", "U+FEFF at position 0"},
		{"soft hyphen", "1\u00AD2", "U+00AD at position 1"},
		{"no-break space", "1\u00A02", "U+00A0 at position 1"},
		{"fullwidth digit", "１", `'１' at position 0`},
		{"accented letter", "Ação", `'ç' at position 1`},
		{"invalid UTF-8", "1\xff", "U+FFFD at position 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCallCode(tt.code)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if r, i := firstForbiddenRune(err.Error()); i >= 0 {
				t.Fatalf("error carries %U: %q", r, err)
			}
		})
	}
}

// A call whose confirmation carries a bad call code is never dialed and
// ends failed with the error.
func TestBadCallCodeEndsFailedUndialed(t *testing.T) {
	for _, code := range []string{"", "1,A=2", "1\u202E2", "a\r\nAction: Logoff", strings.Repeat("9", 65)} {
		t.Run(strings.ToValidUTF8(code[:min(len(code), 8)], "?"), func(t *testing.T) {
			store := &codeStore{}
			dialer := &codeDialer{}
			c := NewCell(Options{Cell: "101", Instance: "i1", ChannelTemplate: "Local/{number}@lab",
				ACKTimeout: time.Minute}, store, codeConfirms{code}, dialer, zerolog.Nop())
			c.dialing <- struct{}{} // the place handle leaves
			c.handle(context.Background(), []byte(`{"id":"c1","number":"1"}`), nil, func() {})
			if dialer.originates != 0 {
				t.Fatalf("%d Originates sent", dialer.originates)
			}
			if len(store.results) != 1 {
				t.Fatalf("%d results", len(store.results))
			}
			r := store.results[0]
			if r.Status != StatusFailed || r.Attempts != 0 || !strings.Contains(r.Error, "invalid call_code") {
				t.Fatalf("result %+v", r)
			}
		})
	}
}

type codeStore struct {
	Store
	mu      sync.Mutex
	results []*Result
}

func (s *codeStore) Begin(context.Context, *Call) (bool, error) { return false, nil }

func (s *codeStore) Finish(_ context.Context, _ []byte, r *Result) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, r)
	return true, nil
}

type codeConfirms struct{ code string }

func (c codeConfirms) Expect(id string) (<-chan Confirmation, func()) {
	ch := make(chan Confirmation, 1)
	ch <- Confirmation{ID: id, CallCode: c.code, At: time.Now()}
	return ch, func() {}
}

type codeDialer struct {
	Dialer
	originates int
}

func (d *codeDialer) Ready() bool { return true }

func (d *codeDialer) Originate(context.Context, OriginateRequest) (Watch, error) {
	d.originates++
	return nil, ErrInvalidRequest
}
