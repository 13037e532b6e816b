package redisq

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster wants every key a script touches in KEYS (contract §2
// "Durability"), all in one slot. This file checks both: statically, every
// key argument of every redis.call in every script of the package is
// KEYS[…] (or a local or a parameter that only ever holds KEYS[…]); at run
// time, every EVAL/EVALSHA of realRedisSteps (a call's whole life,
// recovery, forwarding; on miniredis in TestScriptStepsKeepOneSlot, on real
// servers in TestRealRedis*) has keys sharing one hash tag. On a real
// Cluster (TestRealRedisCluster) Redis itself refuses a script whose keys
// span slots.

// scriptKeyArgs: which arguments (1-based after the command name) of each
// command the scripts use are keys; -1 = all of them. A command missing
// here fails the test: add it with its key positions.
var scriptKeyArgs = map[string][]int{
	"TIME": {}, "EXISTS": {-1}, "DEL": {-1}, "UNLINK": {-1},
	"GET": {1}, "SET": {1}, "INCR": {1}, "INCRBY": {1}, "PTTL": {1}, "TTL": {1},
	"EXPIRE": {1}, "PEXPIRE": {1}, "PEXPIREAT": {1}, "EXPIREAT": {1},
	"HSET": {1}, "HGET": {1}, "HMGET": {1}, "HGETALL": {1}, "HDEL": {1}, "HINCRBY": {1}, "HEXISTS": {1}, "HLEN": {1},
	"LPUSH": {1}, "RPUSH": {1}, "LPOP": {1}, "RPOP": {1}, "LREM": {1}, "LLEN": {1}, "LRANGE": {1},
	"LTRIM": {1}, "LINDEX": {1}, "LPOS": {1}, "LMOVE": {1, 2}, "RPOPLPUSH": {1, 2},
	"SADD": {1}, "SREM": {1}, "SMEMBERS": {1}, "SISMEMBER": {1}, "SCARD": {1},
	"ZADD": {1}, "ZREM": {1}, "ZCARD": {1}, "ZCOUNT": {1}, "ZSCORE": {1}, "ZRANGE": {1}, "ZRANGEBYSCORE": {1},
	"ZREMRANGEBYSCORE": {1}, "ZMSCORE": {1}, "XADD": {1}, "RENAME": {1, 2},
}

var (
	localAssig = regexp.MustCompile(`(?m)^\s*local\s+([A-Za-z_]\w*)\s*=\s*(.+?)\s*$`)
	funcDef    = regexp.MustCompile(`local\s+function\s+([A-Za-z_]\w*)\s*\(([^)]*)\)`)
	callStart  = regexp.MustCompile(`redis\.p?call\(`)
	keysIndex  = keysIndexMatcher{}
)

// keysIndexMatcher matches KEYS[<expression>] and nothing more: the
// bracket opened after KEYS closes at the end.
type keysIndexMatcher struct{}

func (keysIndexMatcher) MatchString(a string) bool {
	if !strings.HasPrefix(a, "KEYS[") || !strings.HasSuffix(a, "]") {
		return false
	}
	depth := 0
	for i := 4; i < len(a); i++ {
		switch a[i] {
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return i == len(a)-1
			}
		}
	}
	return false
}

// packageScripts reads the package's Go files and returns the Lua source
// of every redis.NewScript, by variable name.
func packageScripts(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]ast.Expr{}
	type script struct {
		name string
		expr ast.Expr
	}
	var scripts []script
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				vs, ok := sp.(*ast.ValueSpec)
				if !ok {
					continue
				}
				for i, v := range vs.Values {
					if gd.Tok == token.CONST {
						consts[vs.Names[i].Name] = v
					}
					if c, ok := v.(*ast.CallExpr); ok && isNewScript(c) && len(c.Args) == 1 {
						scripts = append(scripts, script{vs.Names[i].Name, c.Args[0]})
					}
				}
			}
		}
	}
	var eval func(e ast.Expr) (string, error)
	eval = func(e ast.Expr) (string, error) {
		switch e := e.(type) {
		case *ast.BasicLit:
			return strconv.Unquote(e.Value)
		case *ast.Ident:
			c, ok := consts[e.Name]
			if !ok {
				return "", fmt.Errorf("%s is not a package constant", e.Name)
			}
			return eval(c)
		case *ast.BinaryExpr:
			a, err := eval(e.X)
			if err != nil {
				return "", err
			}
			b, err := eval(e.Y)
			return a + b, err
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", fmt.Errorf("script source is not a constant expression")
	}
	out := map[string]string{}
	for _, s := range scripts {
		src, err := eval(s.expr)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		out[s.name] = src
	}
	return out
}

func isNewScript(c *ast.CallExpr) bool {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "redis" && (sel.Sel.Name == "NewScript" || sel.Sel.Name == "NewScriptServerSHA")
}

// stripLuaComments drops "-- …" to the end of the line outside strings.
func stripLuaComments(src string) string {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(src) {
				b.WriteByte(c)
				i++
				c = src[i]
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			if i < len(src) {
				b.WriteByte('\n')
			}
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// callArgs splits the arguments of the call whose "(" is at open, at
// top-level commas; it returns them trimmed.
func callArgs(src string, open int) []string {
	var args []string
	depth, start := 0, open+1
	var quote byte
	for i := open; i < len(src); i++ {
		c := src[i]
		if quote != 0 {
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"':
			quote = c
		case '(', '{', '[':
			depth++
		case ')', '}', ']':
			depth--
			if depth == 0 {
				if a := strings.TrimSpace(src[start:i]); a != "" || len(args) > 0 {
					args = append(args, a)
				}
				return args
			}
		case ',':
			if depth == 1 {
				args = append(args, strings.TrimSpace(src[start:i]))
				start = i + 1
			}
		}
	}
	return args
}

// scriptKeyProblems lists every key argument of src's redis.call that is
// not a declared key.
func scriptKeyProblems(src string) []string {
	src = stripLuaComments(src)
	keyVars := map[string]bool{}
	for _, m := range localAssig.FindAllStringSubmatch(src, -1) {
		if keysIndex.MatchString(m[2]) {
			keyVars[m[1]] = true
		}
	}
	// A local function's parameter is a key when every call passes one.
	for _, fd := range funcDef.FindAllStringSubmatchIndex(src, -1) {
		name := src[fd[2]:fd[3]]
		params := strings.Split(src[fd[4]:fd[5]], ",")
		calls := regexp.MustCompile(`\b`+regexp.QuoteMeta(name)+`\(`).FindAllStringIndex(src, -1)
		for pi, p := range params {
			p = strings.TrimSpace(p)
			isKey, n := true, 0
			for _, c := range calls {
				if c[0] >= fd[0] && c[0] < fd[1] { // the definition itself
					continue
				}
				args := callArgs(src, c[1]-1)
				n++
				if pi >= len(args) || !keysIndex.MatchString(args[pi]) {
					isKey = false
				}
			}
			if isKey && n > 0 {
				keyVars[p] = true
			}
		}
	}
	isKey := func(a string) bool { return keysIndex.MatchString(a) || keyVars[a] }
	var problems []string
	for _, c := range callStart.FindAllStringIndex(src, -1) {
		args := callArgs(src, c[1]-1)
		if len(args) == 0 {
			problems = append(problems, "redis.call without arguments")
			continue
		}
		var positions []int
		if q := args[0]; len(q) >= 2 && (q[0] == '\'' || q[0] == '"') {
			cmd := strings.ToUpper(q[1 : len(q)-1])
			var ok bool
			if positions, ok = scriptKeyArgs[cmd]; !ok {
				problems = append(problems, fmt.Sprintf("%s: command not in scriptKeyArgs (add its key positions)", cmd))
				continue
			}
		} else {
			positions = []int{1} // a command from a variable: its key comes first
		}
		for _, p := range positions {
			if p == -1 {
				for _, a := range args[1:] {
					if !isKey(a) {
						problems = append(problems, fmt.Sprintf("%s: key %q not from KEYS", args[0], a))
					}
				}
				continue
			}
			if p >= len(args) || !isKey(args[p]) {
				a := ""
				if p < len(args) {
					a = args[p]
				}
				problems = append(problems, fmt.Sprintf("%s: key %q not from KEYS", args[0], a))
			}
		}
	}
	return problems
}

func TestEveryScriptKeyIsDeclared(t *testing.T) {
	scripts := packageScripts(t)
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 15 {
		t.Fatalf("found only %d scripts (%v): the parser misses some", len(names), names)
	}
	for _, n := range names {
		for _, p := range scriptKeyProblems(scripts[n]) {
			t.Errorf("%s: %s", n, p)
		}
	}
	t.Logf("%d scripts checked: %s", len(names), strings.Join(names, ", "))
}

// The checker itself catches what it must.
func TestScriptKeyCheckerCatches(t *testing.T) {
	tests := []struct {
		name, src string
		bad       bool
	}{
		{"declared", `redis.call('LPUSH', KEYS[1], ARGV[1])`, false},
		{"built from a key", `redis.call('LPUSH', KEYS[2] .. ':' .. owner, ARGV[1])`, true},
		{"local built", "local inbox = string.sub(KEYS[4], 1, -6) .. 'acd:inbox'\nredis.call('LPUSH', inbox, 'x')", true},
		{"local from KEYS", "local inbox = KEYS[5]\nredis.call('LPUSH', inbox, 'x')", false},
		{"second key of LMOVE", `redis.call('LMOVE', KEYS[1], ARGV[1], 'RIGHT', 'LEFT')`, true},
		{"computed index", "local key = KEYS[tonumber(ARGV[i+1])]\nredis.call(cmd, key, 1)", false},
		{"two keys joined", `redis.call('GET', KEYS[1] .. KEYS[2])`, true},
		{"DEL of a literal", `redis.call('DEL', KEYS[1], 'other')`, true},
		{"param fed keys", "local function f(x, k)\n redis.call('LPUSH', k, x)\nend\nf(ARGV[1], KEYS[2])", false},
		{"param fed data", "local function f(x, k)\n redis.call('LPUSH', k, x)\nend\nf(ARGV[1], KEYS[2])\nf(ARGV[1], ARGV[2])", true},
		{"unknown command", `redis.call('SUNIONSTORE', KEYS[1], KEYS[2])`, true},
		{"comment ignored", "-- redis.call('LPUSH', 'x' .. y)\nredis.call('GET', KEYS[1])", false},
	}
	for _, tt := range tests {
		if got := len(scriptKeyProblems(tt.src)) > 0; got != tt.bad {
			t.Errorf("%s: problems %v, want bad=%v", tt.name, scriptKeyProblems(tt.src), tt.bad)
		}
	}
}

// hashTag is what Redis Cluster hashes of a key: the part inside the first
// {…} when non-empty, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// scriptSlotHook records every EVAL/EVALSHA whose keys do not share one
// hash tag (hence may span Cluster slots), pipelined or not. It never
// calls t: hooks run on the client's goroutines, possibly after the test.
type scriptSlotHook struct {
	mu  sync.Mutex
	bad []string
}

func (h *scriptSlotHook) check(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 3 {
		return
	}
	switch strings.ToLower(fmt.Sprint(args[0])) {
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
	default:
		return
	}
	n, err := strconv.Atoi(fmt.Sprint(args[2]))
	if err != nil || 3+n > len(args) {
		return
	}
	tags := map[string]bool{}
	var keys []string
	for _, k := range args[3 : 3+n] {
		keys = append(keys, fmt.Sprint(k))
		tags[hashTag(fmt.Sprint(k))] = true
	}
	if len(tags) > 1 {
		h.mu.Lock()
		h.bad = append(h.bad, fmt.Sprintf("%v", keys))
		h.mu.Unlock()
	}
}

// watchScriptSlots installs the hook on rdb and fails t at its end when a
// script's keys spanned hash tags.
func watchScriptSlots(t testing.TB, rdb redis.UniversalClient) {
	h := &scriptSlotHook{}
	rdb.AddHook(eachCommand(h.check))
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, b := range h.bad {
			t.Errorf("a script's keys span hash tags (Cluster slots): %s", b)
		}
	})
}

// The run-time watcher records a script whose keys span hash tags, in a
// pipeline too, and lets one-tag scripts and other commands pass.
func TestScriptSlotHookCatches(t *testing.T) {
	ctx := context.Background()
	h := &scriptSlotHook{}
	h.check(redis.NewCmd(ctx, "evalsha", "abc", 2, "p:{101}:a", "p:{102}:b"))
	h.check(redis.NewCmd(ctx, "evalsha", "abc", 2, "p:{101}:a", "p:{101}:call:x"))
	h.check(redis.NewCmd(ctx, "eval", "return 1", 2, "p:{trunk:a}:tat", "p:{trunk:a}:leases"))
	h.check(redis.NewCmd(ctx, "eval", "return 1", 1, "p:{101}:a", "ARGV-not-a-key"))
	h.check(redis.NewCmd(ctx, "mset", "a", 1, "b", 2))
	_ = eachCommand(h.check).ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return nil })(ctx,
		[]redis.Cmder{redis.NewCmd(ctx, "eval", "return 1", 2, "{a}x", "{b}y")})
	if len(h.bad) != 2 {
		t.Fatalf("recorded %v, want the two cross-tag scripts", h.bad)
	}
}
