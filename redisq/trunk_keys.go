package redisq

// TrunkKeys names the Redis keys of one trunk (contract section 7). The hash
// tag is "{trunk:<name>}", so every key of a trunk sits on one Cluster slot
// and the limiter's script may touch them all; a trunk shared by several
// cells is on none of their slots, which is why the limiter is a script of
// its own and not part of the cells' scripts.
type TrunkKeys struct {
	name, base string // base: "P:{trunk:<name>}:"
}

// NewTrunkKeys builds the key names of trunk name under prefix.
func NewTrunkKeys(prefix, name string) TrunkKeys {
	return TrunkKeys{name: name, base: prefix + ":{trunk:" + name + "}:"}
}

// Name is the trunk's name.
func (k TrunkKeys) Name() string { return k.name }

// Base is "P:{trunk:<name>}:", the start of every key of the trunk.
func (k TrunkKeys) Base() string { return k.base }

// TAT is the limiter's theoretical arrival time (GCRA): a string of
// microseconds on Redis's clock, expiring once it is in the past.
func (k TrunkKeys) TAT() string { return k.base + "tat" }

// Leases is the ZSET of channel slots in use: member = lease id, score =
// its expiry in microseconds on Redis's clock.
func (k TrunkKeys) Leases() string { return k.base + "leases" }

// Stats is a hash of counters (granted, no_token, no_channel) and the
// current and previous second's grants (sec, n, prev).
func (k TrunkKeys) Stats() string { return k.base + "stats" }

// Breaker is the breaker state of one host (issue 14 part 4; not used by
// the limiter, named here so every key of a trunk is built in one place).
func (k TrunkKeys) Breaker(host string) string { return k.base + "breaker:" + host }
