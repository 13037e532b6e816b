package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Orphan is a command found in the claimed list of an instance that is gone
// (its heartbeat expired): adopted into ours, to be settled exactly once.
type Orphan struct {
	Raw   []byte
	Owner string // the dead instance that claimed it
}

// Recovery is what crash recovery needs from Redis. redisq.Queue
// implements it.
type Recovery interface {
	// AdoptOrphans finds claimed lists whose owner's heartbeat is gone and
	// moves their commands into our claimed list, each list in one atomic
	// step, so that two daemons starting at once never both adopt it. The
	// orphans of one list come newest claim first.
	AdoptOrphans(ctx context.Context) ([]Orphan, error)
	// CallState reads the call's status hash (empty when there is none).
	CallState(ctx context.Context, id string) (map[string]string, error)
	// Alive reports whether instance's heartbeat is present: a live
	// daemon of the cell that settles what it claimed by itself.
	Alive(ctx context.Context, instance string) (bool, error)
	// ClaimedList reads our own claimed list.
	ClaimedList(ctx context.Context) ([][]byte, error)
	// Requeue puts raw back at the front of the dial list (it was first in
	// line) and removes it from our claimed list, atomically. With
	// dropHashOf set, the call hash is deleted first when it still belongs
	// to that instance and says "acked" (never originated), so the command
	// is not taken for a duplicate when claimed again.
	Requeue(ctx context.Context, raw []byte, id, dropHashOf string) (bool, error)
}

// ErrNotOwner means the call's status hash no longer belongs to this claim:
// recovery in another daemon settled it (we were presumed dead). The call
// must stop without dialing and without a result.
var ErrNotOwner = errors.New("call no longer owned by this claim (settled by recovery elsewhere)")

// Recover settles the orphans of dead instances of the cell:
//   - never ACKed, or ACKed but never originated → back to the front of the
//     dial list;
//   - an originate may have been sent → result unknown, never re-dialed;
//   - the hash belongs to another claim, or is already done → the orphan
//     was a duplicate command: result duplicate;
//   - unparseable → dead (+ invalid).
//
// It returns how many commands it settled.
func (c *Cell) Recover(ctx context.Context) (int, error) {
	if c.rec == nil {
		return 0, nil
	}
	orphans, err := c.rec.AdoptOrphans(ctx)
	if err != nil {
		return 0, fmt.Errorf("adopt orphans: %w", err)
	}
	if len(orphans) == 0 {
		return 0, nil
	}
	counts := map[string]int{}
	var doubt []inDoubt
	var serr error
	for _, o := range orphans {
		what, d, err := c.settleOrphan(ctx, o)
		if err != nil {
			// Left in our claimed list: the next pass (or our successor) retries.
			serr = fmt.Errorf("settle orphan of %s: %w", o.Owner, err)
			break
		}
		if d != nil {
			doubt = append(doubt, *d)
			continue
		}
		counts[what]++
	}
	// The calls that may be live are settled even when another orphan
	// failed: they are in our claimed list now, and their channels may be
	// talking.
	if err := c.adoptLive(ctx, doubt, counts); err != nil && serr == nil {
		serr = err
	}
	if serr != nil {
		return 0, serr
	}
	ev := c.log.Warn().Int("orphans", len(orphans))
	for k, n := range counts {
		ev = ev.Int(k, n)
	}
	ev.Msg("recovered the commands of dead instances")
	return len(orphans), nil
}

// settleOrphan settles one orphan, or returns it in d when its Originate
// may have been sent (state originating or answered): adoptLive decides
// those together, with one listing of the PBX's channels.
func (c *Cell) settleOrphan(ctx context.Context, o Orphan) (what string, d *inDoubt, err error) {
	what, err = c.settleOrphanInner(ctx, o, &d)
	return what, d, err
}

func (c *Cell) settleOrphanInner(ctx context.Context, o Orphan, doubt **inDoubt) (string, error) {
	rec := c.rec
	cmd, perr := ParseCommand(o.Raw)
	if perr != nil {
		// A daemon of an older version, with a more lenient parser, may
		// have claimed and dialed it: its hash says so, and then the truth
		// is unknown, not "invalid" ("not dialed").
		if id := IDOf(perr); id != "" {
			st, err := rec.CallState(ctx, id)
			if err != nil {
				return "", err
			}
			if s := st["state"]; s == string(StateOriginating) || s == string(StateAnswered) {
				cmd := &Command{ID: id, Number: st["number"]}
				return "unknown", c.settleUnknown(ctx, cmd, o.Raw, st, fmt.Sprintf(" (a command this version refuses: %v)", perr))
			}
		}
		c.bury(ctx, o.Raw, perr, time.Now())
		return "invalid", ctx.Err()
	}
	st, err := rec.CallState(ctx, cmd.ID)
	if err != nil {
		return "", err
	}
	if len(st) == 0 {
		_, err = rec.Requeue(ctx, o.Raw, cmd.ID, "")
		return "requeued", err
	}
	if st["state"] == string(StateDone) {
		return "duplicate", c.settleDuplicate(ctx, cmd, o.Raw, st)
	}
	// Who owns the call is the hash's instance, not the list the entry was
	// found in: after an adoption whose settle failed (a Redis error, a lost
	// reply, an adopter that died), the entry sits in the adopter's list
	// (or its successor's) while the hash still names the daemon that
	// dialed. Only a live daemon other than us settles a call by itself;
	// then this entry is a second command with the same id.
	owner := st["instance"]
	switch {
	case owner == c.opt.Instance:
		// Ours: a call of ours still working on the id settles it.
		if c.holdsID(cmd.ID) {
			return "duplicate", c.settleDuplicate(ctx, cmd, o.Raw, st)
		}
	case owner != o.Owner:
		alive, err := rec.Alive(ctx, owner)
		if err != nil {
			return "", err
		}
		if alive {
			return "duplicate", c.settleDuplicate(ctx, cmd, o.Raw, st)
		}
	}
	if st["state"] == string(StateAcked) {
		_, err = rec.Requeue(ctx, o.Raw, cmd.ID, owner)
		return "requeued", err
	}
	// originating or answered: a call may exist.
	*doubt = &inDoubt{cmd: cmd, raw: o.Raw, st: st}
	return "", nil
}

// settleUnknown reports an orphan whose Originate may have been sent: what
// the hash knows, never re-dialed. why adds to the error after the state.
func (c *Cell) settleUnknown(ctx context.Context, cmd *Command, raw []byte, st map[string]string, why string) error {
	r := callFromHash(cmd, raw, c.opt.Cell, c.opt.Instance, st).Result(StatusUnknown)
	r.Uniqueid = st["channel_id"]
	r.Error = fmt.Sprintf("dialbridge instance %s stopped while the call was %s%s; outcome unknown, not re-dialed", st["instance"], st["state"], why)
	_, err := c.store.Finish(ctx, raw, r)
	return err
}

// settleDuplicate reports an orphan whose id another claim owns or that
// already has a result.
func (c *Cell) settleDuplicate(ctx context.Context, cmd *Command, raw []byte, st map[string]string) error {
	r := callFromHash(cmd, raw, c.opt.Cell, c.opt.Instance, st).Result(StatusDuplicate)
	r.CallCode, r.Attempts, r.Uniqueid = "", 0, ""
	r.Error = duplicateError
	_, err := c.store.Finish(ctx, raw, r)
	return err
}

// callFromHash rebuilds what is known of a call from its status hash.
func callFromHash(cmd *Command, raw []byte, cell, instance string, st map[string]string) *Call {
	parse := func(k string) time.Time {
		t, _ := time.Parse(TimeFormat, st[k])
		return t
	}
	attempts, _ := strconv.Atoi(st["attempts"])
	now := time.Now()
	return &Call{
		Cmd: cmd, Raw: raw, Cell: cell, Instance: instance,
		CallCode: st["call_code"], Attempts: attempts, ChannelID: st["channel_id"], Channel: st["channel"],
		ReceivedAt: parse("received_at"), ConfirmedAt: parse("confirmed_at"), DialedAt: parse("dialed_at"),
		AnsweredAt: onMonotonic(parse("answered_at"), now),
	}
}

// recoverLoop settles orphans at start and then every period, so that a
// daemon that dies while we run is recovered too (within its heartbeat TTL
// plus one period). After a Redis outage, and once a minute, it also
// reconciles our own claimed list (see ReconcileOwn).
func (c *Cell) recoverLoop(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	seenOutages := c.redisHealth.Outages()
	lastOwn := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.Recover(ctx); err != nil && ctx.Err() == nil {
			c.redisHealth.Down(err) // logged once per outage, not per pass
			continue
		}
		if o := c.redisHealth.Outages(); (o != seenOutages && c.RedisUp()) || time.Since(lastOwn) > time.Minute {
			if _, err := c.ReconcileOwn(ctx); err != nil {
				if ctx.Err() == nil {
					c.redisHealth.Down(err)
				}
				continue
			}
			seenOutages, lastOwn = o, time.Now()
		}
	}
}

// ReconcileOwn settles the entries of our own claimed list that no call of
// ours holds. There is one way to get such an entry: Redis made a BLMOVE
// whose reply was lost with the connection (an outage). Every settle step
// removes the entry with LREM first, so an entry a call settles at the same
// moment is never settled twice.
func (c *Cell) ReconcileOwn(ctx context.Context) (int, error) {
	if c.rec == nil {
		return 0, nil
	}
	// Under the claim lock no BLMOVE is in flight, so every entry of the
	// list that a call holds is already in the held set.
	c.claimMu.Lock()
	list, err := c.rec.ClaimedList(ctx)
	held := make(map[string]int, len(list))
	c.heldMu.Lock()
	for k, v := range c.held {
		held[k] = v
	}
	c.heldMu.Unlock()
	c.claimMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("reconcile own claimed list: %w", err)
	}
	settled := 0
	var doubt []inDoubt
	var serr error
	for _, raw := range list {
		if held[string(raw)] > 0 {
			held[string(raw)]--
			continue
		}
		what, d, err := c.settleOrphan(ctx, Orphan{Raw: raw, Owner: c.opt.Instance})
		if err != nil {
			serr = fmt.Errorf("reconcile own claimed list: %w", err)
			break
		}
		if d != nil {
			doubt = append(doubt, *d)
			continue
		}
		c.log.Warn().Str("settled_as", what).Int("bytes", len(raw)).Msg("a claimed command no call held (claim reply lost in a Redis outage) was settled")
		settled++
	}
	counts := map[string]int{}
	if err := c.adoptLive(ctx, doubt, counts); err != nil && serr == nil {
		serr = fmt.Errorf("reconcile own claimed list: %w", err)
	}
	for what, n := range counts {
		c.log.Warn().Str("settled_as", what).Int("commands", n).Msg("claimed commands no call held were settled")
		settled += n
	}
	return settled, serr
}

func (c *Cell) hold(raw []byte) {
	c.heldMu.Lock()
	c.held[string(raw)]++
	c.heldMu.Unlock()
}

// holdsID reports whether a call of ours holds a command with this id.
// Only recovery asks, and only for a hash that names us, so parsing the
// held commands is rare work.
func (c *Cell) holdsID(id string) bool {
	c.heldMu.Lock()
	raws := make([]string, 0, len(c.held))
	for k := range c.held {
		raws = append(raws, k)
	}
	c.heldMu.Unlock()
	for _, raw := range raws {
		if cmd, err := ParseCommand([]byte(raw)); err == nil && cmd.ID == id {
			return true
		}
	}
	return false
}

func (c *Cell) release(raw []byte) {
	c.heldMu.Lock()
	if c.held[string(raw)]--; c.held[string(raw)] <= 0 {
		delete(c.held, string(raw))
	}
	c.heldMu.Unlock()
}
