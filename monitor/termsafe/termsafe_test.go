package termsafe_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/multcall/dialbridge/monitor/termsafe"
	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"c-000123":                      "c-000123",
		"Call 7 ringing for operator A": "Call 7 ringing for operator A",
		`back\slash "quoted" é 中文 🙂`:    `back\slash "quoted" é 中文 🙂`,
		"a\x1b]0;pwned\x07b":            `a\x1b]0;pwned\ab`,
		"a\x1b[2J":                      `a\x1b[2J`,
		"a\rb\nc\td\x00\x7f":            `a\rb\nc\td\x00\x7f`,
		"a\u009b2J":                     `a\u009b2J`,
		"a\x9b2J\xff":                   `a\x9b2J\xff`,
		"a\u202egnp\u202c":              `a\u202egnp\u202c`,
		"a\u200b\ufeff\u00ad":           `a\u200b\ufeff\u00ad`,
		"a\U000e0041":                   `a\U000e0041`,
		"a\u2028b\u2029":                `a\u2028b\u2029`,
		"\xe2\x80":                      `\xe2\x80`, // a cut UTF-8 sequence
	} {
		if got := termsafe.Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscapeAttacks(t *testing.T) {
	for name, a := range termsafetest.Attacks {
		got := termsafe.Escape(a)
		if bad := termsafetest.Unsafe(got); bad != "" {
			t.Errorf("%s: %q escaped to %q: %s", name, a, got, bad)
		}
		if bad := termsafetest.Unsafe(a); bad == "" {
			t.Errorf("%s: the check does not see the attack %q", name, a)
		}
	}
}

func TestEscapeDoesNotCopySafeText(t *testing.T) {
	s := strings.Repeat("Call c-1 ringing for operator A ", 10)
	if n := testing.AllocsPerRun(100, func() { _ = termsafe.Escape(s) }); n != 0 {
		t.Errorf("%v allocations for text with nothing to escape", n)
	}
}

func FuzzEscape(f *testing.F) {
	for _, a := range termsafetest.Attacks {
		f.Add(a)
	}
	f.Add("c-000123")
	f.Fuzz(func(t *testing.T, s string) {
		got := termsafe.Escape(s)
		if i := termsafe.FirstUnsafe(got); i >= 0 {
			t.Fatalf("Escape(%q) = %q: unsafe at %d", s, got, i)
		}
		if termsafe.FirstUnsafe(s) < 0 && got != s {
			t.Fatalf("safe %q changed to %q", s, got)
		}
	})
}

func TestJSONKeepsTheDataAndEscapesTheRest(t *testing.T) {
	for name, a := range termsafetest.Attacks {
		doc, err := json.MarshalIndent(map[string]any{"id": a, "list": []string{a, "ok"}}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		safe := termsafe.JSON(doc)
		if bad := termsafetest.Unsafe(string(safe)); bad != "" {
			t.Errorf("%s: %s in %s", name, bad, safe)
		}
		var before, after any
		if err := json.Unmarshal(doc, &before); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(safe, &after); err != nil {
			t.Fatalf("%s: %v in %s", name, err, safe)
		}
		b1, _ := json.Marshal(before)
		b2, _ := json.Marshal(after)
		if string(b1) != string(b2) {
			t.Errorf("%s: %s decodes differently from %s", name, safe, doc)
		}
	}
	plain := []byte(`{"a": "c-1"}`)
	if got := termsafe.JSON(plain); &got[0] != &plain[0] {
		t.Error("a safe document was copied")
	}
}
