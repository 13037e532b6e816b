package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const queueTestToken = "queue-token-0123456789abcdef"

// writeQueueSettings writes a settings file with acd.token (token may be
// empty) and returns its path.
func writeQueueSettings(t *testing.T, token string) string {
	t.Helper()
	text := `
ami: {username: dialbridge, secret: secret}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s}
queues: [{name: "101", threads: 10}]
acd: {operators: [{id: A}, {id: B}], token: "` + token + `"}
`
	path := filepath.Join(t.TempDir(), "settings.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startQueueServe runs "queue serve" until the test ends and returns its
// address and its log.
func startQueueServe(t *testing.T, args ...string) (string, *queueBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var errOut queueBuffer
	done := make(chan int, 1)
	go func() {
		done <- runQueueManager(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), true, queueIO{in: strings.NewReader(""), out: &queueBuffer{}, errOut: &errOut})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("queue serve: exit %d: %s", code, errOut.String())
		}
	})
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	queueWait(t, "queue serve to listen", func() bool { return re.MatchString(errOut.String()) }, errOut.String)
	return re.FindStringSubmatch(errOut.String())[1], &errOut
}

func queueClient(t *testing.T, input string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut queueBuffer
	code := runQueueClient(context.Background(), args, queueIO{in: strings.NewReader(input), out: &out, errOut: &errOut})
	return out.String(), errOut.String(), code
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "monitor", "acdserver", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// acd.token (issue 13 item 7): the server wants it, the client finds it in
// the settings or in $DIALBRIDGE_ACD_TOKEN, the transcript stays the
// contract's, and the token is never written in the log.
func TestQueueServeToken(t *testing.T) {
	commands, expected := readTestdata(t, "commands.txt"), readTestdata(t, "expected.txt")
	t.Setenv(tokenEnv, "")
	t.Setenv("DIALBRIDGE_CONFIG", "")
	t.Chdir(t.TempDir()) // no configs/settings.yaml here
	settings := writeQueueSettings(t, queueTestToken)
	addr, log := startQueueServe(t, "--config", settings)
	if !strings.Contains(log.String(), "clients authenticate with acd.token") {
		t.Errorf("log: %s", log.String())
	}

	// The token from the settings file.
	out, errOut, code := queueClient(t, commands, "--config", settings, "--addr", addr)
	if code != exitOK || out != expected || errOut != "" {
		t.Fatalf("with the settings' token: exit %d\n%s\nstderr %q", code, out, errOut)
	}
	// From the environment, with no settings file at all.
	t.Setenv(tokenEnv, queueTestToken)
	out, errOut, code = queueClient(t, commands, "--addr", addr)
	if code != exitOK || out != expected || errOut != "" {
		t.Fatalf("with $%s: exit %d\n%s\nstderr %q", tokenEnv, code, out, errOut)
	}
	// Without it, or with a wrong one: refused, nothing done.
	for _, token := range []string{"", "wrong-token-0123456789abcdef"} {
		t.Setenv(tokenEnv, token)
		out, errOut, code = queueClient(t, "call x1\n", "--addr", addr)
		if code != exitFailure || out != "" || !strings.Contains(errOut, "refused the connection") {
			t.Errorf("token %q: exit %d, stdout %q, stderr %q", token, code, out, errOut)
		}
	}
	t.Setenv(tokenEnv, queueTestToken)
	if out, _, _ := queueClient(t, "status x1\n", "--addr", addr); out != "" {
		t.Errorf("a refused client placed a call: %q", out)
	}
	if strings.Contains(log.String(), queueTestToken) || strings.Contains(log.String(), "wrong-token") {
		t.Errorf("a token is in the log:\n%s", log.String())
	}
}

// --listen must not open the queue manager to the network without a token
// (the settings already refuse acd.listen so).
func TestQueueServeOpenListenNeedsToken(t *testing.T) {
	t.Setenv("DIALBRIDGE_CONFIG", "")
	t.Chdir(t.TempDir())
	var errOut queueBuffer
	code := runQueueManager(context.Background(), []string{"--listen", "0.0.0.0:0"}, true, queueIO{in: strings.NewReader(""), out: &queueBuffer{}, errOut: &errOut})
	if code != exitConfig || !strings.Contains(errOut.String(), "acd.token") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	// With a token it serves.
	addr, _ := startQueueServe(t, "--config", writeQueueSettings(t, queueTestToken))
	if addr == "" {
		t.Fatal("no address")
	}
}
