package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// acd.start_logged_in false holds for the queue manager in memory too (no
// --cell): its operators start logged out and take calls once they log in.
func TestQueueStartLoggedOutInMemory(t *testing.T) {
	t.Setenv("DIALBRIDGE_CONFIG", "")
	t.Chdir(t.TempDir())
	text := `
ami: {username: dialbridge, secret: secret}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s}
queues: [{name: "101", threads: 10}]
acd: {operators: [{id: A}, {id: B}], start_logged_in: false}
`
	path := filepath.Join(t.TempDir(), "settings.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut queueBuffer
	code := runQueueManager(context.Background(), []string{"--config", path}, false,
		queueIO{in: strings.NewReader("call 1\nlogin A\n"), out: &out, errOut: &errOut})
	want := "Operator A logged out\nOperator B logged out\n" +
		"Call 1 received\nCall 1 waiting in queue\n" +
		"Operator A logged in\nCall 1 ringing for operator A\n"
	if code != exitOK || out.String() != want {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, out.String(), want, errOut.String())
	}
}
