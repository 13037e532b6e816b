// Package redisq is dialbridge's Redis side: it implements bridge.Store (the
// call lifecycle's atomic steps as Lua scripts), bridge.Confirmations (one
// reader of the cell's confirm list feeding every waiting call), the instance
// heartbeat, and read helpers for the monitor, with go-redis v9.
//
// Every key of a cell carries the cell in hash-tag braces ("P:{C}:dial"), so a
// cell lives on one Redis Cluster slot and every script's keys, including the
// ones a script derives from a declared key, share that slot.
package redisq

import "strings"

// Keys names the Redis keys of one cell (contract section 2). The zero value
// is not usable; build it with NewKeys.
type Keys struct {
	prefix, cell string
	base         string // "P:{C}:"
}

// NewKeys builds the key names of cell under prefix.
func NewKeys(prefix, cell string) Keys {
	return Keys{prefix: prefix, cell: cell, base: prefix + ":{" + cell + "}:"}
}

// Prefix is the prefix the keys were built with.
func (k Keys) Prefix() string { return k.prefix }

// Cell is the cell the keys were built for.
func (k Keys) Cell() string { return k.cell }

// Base is "P:{C}:", the start of every key of the cell.
func (k Keys) Base() string { return k.base }

// Dial is the list Multcall pushes dial commands to.
func (k Keys) Dial() string { return k.base + "dial" }

// Claimed is the list of commands an instance has taken and not settled.
func (k Keys) Claimed(instance string) string { return k.base + "claimed:" + instance }

// ClaimedPattern is a SCAN MATCH pattern for every claimed list of the cell.
func (k Keys) ClaimedPattern() string { return globEscape(k.base+"claimed:") + "*" }

// Ack is the list our ACKs go to.
func (k Keys) Ack() string { return k.base + "ack" }

// Confirm is the list Multcall pushes confirmations to.
func (k Keys) Confirm() string { return k.base + "confirm" }

// ConfirmFor is an instance's private confirm list: confirmations another
// instance of the cell read from the shared list and forwarded to the owner
// of the call. (Our extension of the contract.)
func (k Keys) ConfirmFor(instance string) string { return k.base + "confirm:" + instance }

// Results is the list results go to.
func (k Keys) Results() string { return k.base + "results" }

// Call is the status hash of one command.
func (k Keys) Call(id string) string { return k.base + "call:" + id }

// Dead is the list of commands that could not be parsed.
func (k Keys) Dead() string { return k.base + "dead" }

// Stats is the counters hash.
func (k Keys) Stats() string { return k.base + "stats" }

// Instance is an instance's heartbeat hash.
func (k Keys) Instance(instance string) string { return k.base + "instance:" + instance }

// InstanceSet is the set of instances of the cell that may hold claimed
// commands: every heartbeat adds its instance; an instance leaves it once
// its heartbeat is gone and its claimed list is empty. Readers (monitor,
// recovery) use it instead of SCANning the keyspace, whose cost grows with
// every key of the database (the call hashes alone are a day of calls).
// (Our extension of the contract.)
func (k Keys) InstanceSet() string { return k.base + "instances" }

// InstancePattern is a SCAN MATCH pattern for every heartbeat of the cell.
func (k Keys) InstancePattern() string { return globEscape(k.base+"instance:") + "*" }

// Settled is a short-lived marker that one settle operation (identified by a
// random nonce) already ran, so that a retried Finish or Bury whose first
// reply was lost is recognised. (Our extension of the contract.)
func (k Keys) Settled(nonce string) string { return k.base + "settled:" + nonce }

// globEscape quotes the characters Redis' glob matching treats specially, so
// a prefix or cell containing them is matched literally.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
