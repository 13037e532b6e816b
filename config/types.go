package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as "5s", "250ms" or "1m30s".
// A bare number is refused: "5" could mean seconds or nanoseconds.
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration like 5s or 250ms is expected", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write it like 5s or 250ms)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Secret is a password that never prints itself: a Settings value logged by
// mistake shows "***" instead of the secret.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// GoString hides the secret from %#v too.
func (s Secret) GoString() string { return `"***"` }

// MarshalJSON hides the secret from JSON dumps.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalYAML hides the secret from YAML dumps.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Fraction is a rate between 0 and 1, written in YAML as a percentage ("3%",
// "2.5 %") or as a fraction (0.03). Both spellings appear in regulators'
// texts and in other dialers' settings, and neither is ambiguous; a bare 3
// is, so it parses as 3 (300 %) and the range check tells the writer.
type Fraction float64

// UnmarshalYAML parses "3%", "3 %" or 0.03. The range is Validate's: this
// only refuses what is not a number.
func (f *Fraction) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a percentage like 3%% or a fraction like 0.03 is expected", n.Line)
	}
	v, ok := parseFraction(n.Value)
	if !ok {
		return fmt.Errorf("line %d: %q is not a percentage or a fraction (write it like 3%% or 0.03)", n.Line, n.Value)
	}
	*f = Fraction(v)
	return nil
}

// parseFraction accepts a plain decimal before "%" (no exponent, hex or
// decimal comma: "3,5%" is a typo to report, not to guess) and what
// strconv.ParseFloat accepts without it. The percentage is parsed with an
// exponent rather than divided by 100, so "3.3%" is exactly 0.033.
func parseFraction(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if num, ok := strings.CutSuffix(s, "%"); ok {
		num = strings.TrimSpace(num)
		if !decimalRE.MatchString(num) {
			return 0, false
		}
		v, err := strconv.ParseFloat(num+"e-2", 64)
		return v, err == nil
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

var decimalRE = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$`)

// String writes the rate as a percentage, rounded to 10 digits so that
// 0.03 prints 3% rather than 3.0000000000000004%.
func (f Fraction) String() string {
	return strconv.FormatFloat(float64(f)*100, 'g', 10, 64) + "%"
}

// MarshalYAML writes the percentage (to 10 digits, like String).
func (f Fraction) MarshalYAML() (any, error) { return f.String(), nil }
