package amisim

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The cases follow main/app.c __ast_app_separate_args step by step (its
// in-place memmove and pointer arithmetic included).
func TestSeparateArgs(t *testing.T) {
	var seventy, first63 []string
	for i := range 70 {
		seventy = append(seventy, fmt.Sprintf("v%d", i))
	}
	first63 = append(first63, seventy[:63]...)
	tests := []struct {
		name string
		in   string
		raw  bool // removeChars off (AST_STANDARD_RAW_ARGS)
		max  int
		want []string
	}{
		{"empty", "", false, 64, nil},
		{"plain", "a=1,b=2", false, 64, []string{"a=1", "b=2"}},
		{"empty items", "a,,b", false, 64, []string{"a", "", "b"}},
		{"trailing delimiter adds an empty item", "a,", false, 64, []string{"a", ""}},
		{"lone delimiter", ",", false, 64, []string{"", ""}},
		{"parentheses group", "a=(x,y),b=2", false, 64, []string{"a=(x,y)", "b=2"}},
		{"unclosed ( swallows the rest", "a=(,b=2,c=3", false, 64, []string{"a=(,b=2,c=3"}},
		{"nesting outlives its item", "a=((x),b=2", false, 64, []string{"a=((x),b=2"}},
		{"unmatched ) is ignored", "a=),b=2", false, 64, []string{"a=)", "b=2"}},
		{"brackets group", "a=[1,2],b", false, 64, []string{"a=[1,2]", "b"}},
		{"unclosed [ swallows the rest", "a=[,b=2", false, 64, []string{"a=[,b=2"}},
		{"quotes group and are removed", `a="x,y",b=2`, false, 64, []string{"a=x,y", "b=2"}},
		{"unclosed quote swallows the rest", `a=",b=2`, false, 64, []string{"a=,b=2"}},
		{"( counts inside quotes", `a="(",b=2`, false, 64, []string{"a=(,b=2"}},
		{"backslash escapes a comma", `a=\,b=2`, false, 64, []string{"a=,b=2"}},
		{"escaped ( does not count", `a=\(,b=2`, false, 64, []string{"a=(", "b=2"}},
		{"escaped quote is kept", `a=\",b=2`, false, 64, []string{`a="`, "b=2"}},
		{"escaped backslash", `a=\\,b`, false, 64, []string{`a=\`, "b"}},
		{"trailing backslash vanishes", `a=1\`, false, 64, []string{"a=1"}},
		{"quote right after the last comma", `a,"`, false, 64, []string{"a", "", ""}},
		{"backslash right after the last comma", `a,\`, false, 64, []string{"a", ""}},
		{"64th item is the raw rest", strings.Join(seventy, ","), false, 64,
			append(first63, strings.Join(seventy[63:], ","))},
		{"raw rest keeps quotes and backslashes", strings.Join(first63, ",") + `,"x",\y,(`, false, 64,
			append(first63, `"x",\y,(`)},
		{"raw mode keeps quotes", `a="x,y",b`, true, 64, []string{`a="x,y"`, "b"}},
		{"raw mode keeps backslashes", `a\,b,c`, true, 64, []string{`a\,b`, "c"}},
		{"max 1 is the whole string", "a,b", false, 1, []string{"a,b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := separateArgs(tt.in, ',', !tt.raw, tt.max)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("separateArgs(%q) =\n  %q\nwant\n  %q", tt.in, got, tt.want)
			}
		})
	}
}
