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
)

// MaxLine is the longest line accepted, on stdin and over TCP, without its
// line break.
const MaxLine = 64 * 1024

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
	verb, arg, err := decodeRequest(line)
	if err != nil {
		return acd.Command{}, err
	}
	return acd.ParseCommand(verb, arg)
}

// decodeRequest checks a JSON request's shape and returns its fields.
func decodeRequest(line []byte) (verb, arg string, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		return "", "", errors.New(`not a JSON command: send one object per line, like {"command": "call", "id": "7"}`)
	}
	for k, v := range fields {
		var s string
		switch k {
		case "command", "id":
			if err := json.Unmarshal(v, &s); err != nil {
				return "", "", fmt.Errorf("%q must be a string", k)
			}
		default:
			return "", "", fmt.Errorf("unknown field %q: a command has only \"command\" and \"id\"", k)
		}
		if k == "command" {
			verb = s
		} else {
			arg = s
		}
	}
	if _, ok := fields["command"]; !ok {
		return "", "", errors.New(`missing "command": send {"command": "call", "id": "7"}`)
	}
	return verb, arg, nil
}

// responseLine is {"response": "<message>"}.
func responseLine(msg string) []byte { return wrap(`{"response": `, msg) }

// errorLine is {"error": "<text>"}.
func errorLine(text string) []byte { return wrap(`{"error": `, text) }

func wrap(head, s string) []byte {
	q := jsonString(s)
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
