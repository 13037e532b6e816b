package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The dial command is read token by token instead of decoded into a struct:
// encoding/json matches keys case-insensitively ({"ID":…} fills id) and lets
// the last of two equal keys win. Both let one command say one thing to us
// and another to a reader that differs — Multcall, a dashboard, an auditor —
// so every key, at every depth, is seen here exactly as written (contract
// section 2: keys match exactly, no key appears twice).

// commandFields are the keys a dial command defines.
var commandFields = [...]string{"id", "number", "caller_id", "timeout_s", "variables"}

// jvalue is one JSON value as far as validation needs it.
type jvalue struct {
	kind  byte   // 0 absent, '"' string, '0' number, 't' boolean, 'n' null, '{' object, '[' array
	text  string // a string's value, a number's literal
	pairs []jpair
}

// jpair is a member of the variables object, in document order.
type jpair struct {
	name string
	val  jvalue
}

func (v jvalue) absent() bool { return v.kind == 0 || v.kind == 'n' }

// kindName says what a value is, for "must be a string, got …" errors.
func (v jvalue) kindName() string {
	switch v.kind {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't':
		return "a boolean"
	case '"':
		return "a string"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// document is a dial command's top-level object. Only the first occurrence
// of a field is kept: a repeated one makes problem non-empty anyway.
type document struct {
	fields  [len(commandFields)]jvalue
	idCount int // keys that are "id" in any case
	// problem is the first key that breaks the strict rules (repeated,
	// case variant of a field, control or format character). It is
	// reported before the fields are checked, with the id when usable.
	problem string
}

func (d *document) field(name string) jvalue {
	if i := fieldIndex(name); i >= 0 {
		return d.fields[i]
	}
	return jvalue{}
}

// usableID is the id an invalid result may be sent for: it came from the one
// key that is "id" in any case, spelt exactly "id", so no reader of this
// command, strict or case-insensitive, could take another id.
func (d *document) usableID() string {
	id := d.field("id")
	if d.idCount != 1 || id.kind != '"' || checkID(id.text) != nil {
		return ""
	}
	return id.text
}

func (d *document) note(format string, args ...any) {
	if d.problem == "" {
		d.problem = fmt.Sprintf(format, args...)
	}
}

// readDocument reads one JSON object and nothing after it. Its error is a
// syntax error; a key breaking the strict rules is d.problem instead, so
// that a usable id can still be reported.
func readDocument(data []byte) (*document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number's literal is kept, never rounded through float64
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	d := &document{}
	var seen keySet
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok { // Token reports a syntax error first; kept in case it does not
			return nil, fmt.Errorf("object key is %T", tok)
		}
		idx := fieldIndex(key)
		if !seen.add(key) {
			d.note("key %s appears more than once", quoteKey(key))
		}
		if strings.EqualFold(key, "id") {
			d.idCount++
		}
		if idx < 0 {
			d.checkUnknownKey(key)
		}
		v, err := readValue(dec, d, key, key == "variables")
		if err != nil {
			return nil, err
		}
		if idx >= 0 && d.fields[idx].kind == 0 {
			d.fields[idx] = v
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return d, nil
}

func fieldIndex(key string) int {
	for i, f := range commandFields {
		if f == key {
			return i
		}
	}
	return -1
}

// checkUnknownKey lets Multcall add fields, but not ones a reader could take
// for ours: "Number" is almost certainly a mistake or an attack.
// strings.EqualFold folds exactly as encoding/json does, so "variableſ"
// (long s), which encoding/json would take for variables, is caught too. A
// key with an invisible or control character is refused for the same
// reason: a reader that drops it sees one of ours.
func (d *document) checkUnknownKey(key string) {
	for _, f := range commandFields {
		if strings.EqualFold(key, f) {
			d.note("key %s is not a field of a dial command: keys are case-sensitive (the field is %q)", quoteKey(key), f)
			return
		}
	}
	if r, i := firstForbiddenRune(key); i >= 0 {
		d.note("a key contains a control character (%s) at byte %d", runeName(r), i)
	}
}

// readValue reads the next value. Objects and arrays are walked whole so
// that a key repeated at any depth is found; only the members of the
// top-level variables object are kept.
func readValue(dec *json.Decoder, d *document, where string, keepPairs bool) (jvalue, error) {
	tok, err := dec.Token()
	if err != nil {
		return jvalue{}, err
	}
	switch t := tok.(type) {
	case string:
		return jvalue{kind: '"', text: t}, nil
	case json.Number:
		return jvalue{kind: '0', text: string(t)}, nil
	case bool:
		return jvalue{kind: 't'}, nil
	case nil:
		return jvalue{kind: 'n'}, nil
	case json.Delim:
		if t == '{' && keepPairs {
			return readPairs(dec, d, where)
		}
		return jvalue{kind: byte(t)}, skipNested(dec, d, where, t)
	}
	return jvalue{}, fmt.Errorf("unexpected token %T", tok)
}

// readPairs reads the members of the variables object (its brace read).
func readPairs(dec *json.Decoder, d *document, where string) (jvalue, error) {
	v := jvalue{kind: '{'}
	var seen keySet
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jvalue{}, err
		}
		name, ok := tok.(string)
		if !ok {
			return jvalue{}, fmt.Errorf("object key is %T", tok)
		}
		if !seen.add(name) {
			d.note("key %s appears more than once in %s", quoteKey(name), where)
		}
		val, err := readValue(dec, d, where, false)
		if err != nil {
			return jvalue{}, err
		}
		v.pairs = append(v.pairs, jpair{name: name, val: val})
	}
	_, err := dec.Token()
	return v, err
}

// skipNested walks an object or array whose opening delimiter was read,
// iteratively: a deep nesting costs a slice, not a deep stack.
func skipNested(dec *json.Decoder, d *document, where string, open json.Delim) error {
	type frame struct {
		object bool
		keys   keySet
	}
	stack := []frame{{object: open == '{'}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if !dec.More() {
			if _, err := dec.Token(); err != nil {
				return err
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if top.object {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			if !top.keys.add(key) {
				d.note("key %s appears more than once inside %s", quoteKey(key), quoteKey(where))
			}
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if delim, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{object: delim == '{'})
		}
	}
	return nil
}

// keySet is the keys of one object seen so far. A dial command's objects
// are small: their first keys are compared in place, without allocating; a
// map holds the rest of an object that has many.
type keySet struct {
	few  [8]string
	n    int
	many map[string]struct{}
}

// add reports whether key is new.
func (s *keySet) add(key string) bool {
	for _, k := range s.few[:s.n] {
		if k == key {
			return false
		}
	}
	if s.n < len(s.few) {
		s.few[s.n] = key
		s.n++
		return true
	}
	if _, dup := s.many[key]; dup {
		return false
	}
	if s.many == nil {
		s.many = make(map[string]struct{})
	}
	s.many[key] = struct{}{}
	return true
}
