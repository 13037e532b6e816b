package acdserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe"
)

// MaxLine is the longest line typed (basic mode, client), without its line
// break.
const MaxLine = 64 * 1024

// MaxRequest is the longest request line a server takes by default
// (Server.MaxLine): a command is under 200 bytes, and a client must not
// make the server hold more than a few KiB of its input.
const MaxRequest = 4096

// errLineTooLong is the error for a line over MaxLine bytes.
var errLineTooLong = fmt.Errorf("line longer than %d bytes: ignored", MaxLine)

// Local commands the line interpreter handles itself.
const (
	localNone = iota
	localQuit
)

// Help is what "help" prints.
const Help = `Commands:
  call <id>            a new call arrives
  answer <operator>    the ringing operator answers
  reject <operator>    the ringing operator rejects the call
  hangup <id>          the caller hangs up
  login <operator>     the operator logs in
  logout <operator>    the operator logs out (a busy one after the call)
  status [<id>]        the floor, or where one call is
  help                 these lines
  quit                 leave (so does the end of the input)
`

// splitLine cuts a typed line into its verb and argument. Blank lines and
// lines starting with # are skipped; help and quit are local.
func splitLine(line string) (verb, arg string, local int, skip bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", localNone, true
	}
	verb = line
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		verb, arg = line[:i], strings.TrimSpace(line[i+1:])
	}
	switch strings.ToLower(verb) {
	case "quit", "exit":
		return verb, arg, localQuit, false
	}
	return verb, arg, localNone, false
}

// EncodeRequest is the JSON line the client sends for a typed command:
// {"command": "call", "id": "7"} (no "id" when arg is empty).
func EncodeRequest(verb, arg string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"command": `)
	b.Write(jsonString(verb))
	if arg != "" {
		b.WriteString(`, "id": `)
		b.Write(jsonString(arg))
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// isHelp reports whether verb asks for the list of commands.
func isHelp(verb string) bool {
	v := strings.ToLower(verb)
	return v == "help" || v == "?"
}

// DecodeRequest parses one JSON request line into a command: an object
// with a string "command" and, except for "status", a string "id".
func DecodeRequest(line []byte) (acd.Command, error) {
	r, err := decodeRequest(line)
	if err != nil {
		return acd.Command{}, err
	}
	return acd.ParseCommand(r.verb, r.arg)
}

// request is one JSON request line: a command and its id, or an auth.
type request struct {
	verb, arg string
	token     string // auth only
}

func (r request) isAuth() bool { return strings.EqualFold(r.verb, "auth") }

// decodeRequest checks a JSON request's shape and returns its fields.
func decodeRequest(line []byte) (request, error) {
	var r request
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		return r, errors.New(`not a JSON command: send one object per line, like {"command": "call", "id": "7"}`)
	}
	for k, v := range fields {
		var s string
		switch k {
		case "command", "id", "token":
			if err := json.Unmarshal(v, &s); err != nil {
				return r, fmt.Errorf("%q must be a string", k)
			}
		default:
			return r, fmt.Errorf("unknown field %q: a command has only \"command\" and \"id\"", k)
		}
		switch k {
		case "command":
			r.verb = s
		case "id":
			r.arg = s
		default:
			r.token = s
		}
	}
	if _, ok := fields["command"]; !ok {
		return r, errors.New(`missing "command": send {"command": "call", "id": "7"}`)
	}
	_, hasToken := fields["token"]
	_, hasID := fields["id"]
	switch {
	case r.isAuth() && (!hasToken || hasID):
		return r, errors.New(`auth takes a token and nothing else: {"command": "auth", "token": "…"}`)
	case !r.isAuth() && hasToken:
		return r, errors.New(`"token" goes only with "command": "auth"`)
	}
	return r, nil
}

// authRequest is the client's first line, and its marker (see RunClient).
func authRequest(token string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"command": "auth", "token": `)
	b.Write(jsonString(token))
	b.WriteString("}\n")
	return b.Bytes()
}

// authenticated is the server's answer to a good auth.
const authenticated = "authenticated"

// responseLine is {"response": "<message>"}.
func responseLine(msg string) []byte { return wrap(`{"response": `, msg) }

// errorLine is {"error": "<text>"}.
func errorLine(text string) []byte { return wrap(`{"error": `, text) }

// wrap escapes s before quoting it: JSON leaves C1 and format characters
// raw, and whatever prints the text (a client, nc) shows them to a
// terminal.
func wrap(head, s string) []byte {
	q := jsonString(termsafe.Escape(s))
	b := make([]byte, 0, len(head)+len(q)+2)
	b = append(b, head...)
	b = append(b, q...)
	return append(b, '}', '\n')
}

// jsonString quotes s as a JSON string, leaving <, > and & as they are.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return []byte(strconv.Quote(s))
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// reply is one line from the server: a message or an error.
type reply struct {
	Response *string `json:"response"`
	Error    *string `json:"error"`
}

// readLine reads one line of at most max bytes (without "\n" or "\r\n").
// A longer line is read to its end and dropped: tooLong is true. err is
// io.EOF at the end of the input (line may then hold a last unterminated
// line).
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		frag, e := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > max+2 { // room for "\r\n"
				tooLong, buf = true, nil
			} else {
				buf = append(buf, frag...)
			}
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		if e != nil && !errors.Is(e, io.EOF) {
			return nil, false, e
		}
		if tooLong {
			return nil, true, e
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		if len(buf) > max {
			return nil, true, e
		}
		return buf, false, e
	}
}
