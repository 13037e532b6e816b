package ami

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

// maxListed bounds one CoreShowChannels answer held in memory: far above
// what one Asterisk carries, far below what would hurt the daemon.
const maxListed = 200000

var _ bridge.ChannelLister = (*Client)(nil)

// listing collects the CoreShowChannel events of one CoreShowChannels. The
// events come after the action's Response, on the action session that sent
// it (Asterisk writes them to that session whatever its event mask), and
// amigo hands them to that session's handlers by event name.
type listing struct {
	items    []bridge.LiveChannel
	overflow bool
	done     chan struct{} // closed by CoreShowChannelsComplete
	closed   bool
}

// listings routes list events to the CoreShowChannels waiting for them, by
// ActionID.
type listings struct {
	mu sync.Mutex
	m  map[string]*listing
}

func (ls *listings) add(id string) *listing {
	l := &listing{done: make(chan struct{})}
	ls.mu.Lock()
	if ls.m == nil {
		ls.m = make(map[string]*listing)
	}
	ls.m[id] = l
	ls.mu.Unlock()
	return l
}

func (ls *listings) remove(id string) {
	ls.mu.Lock()
	delete(ls.m, id)
	ls.mu.Unlock()
}

// The two handlers run on amigo's event goroutine of an action session:
// they only append under a short lock.

func (ls *listings) onItem(e map[string]string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[e["ActionID"]]
	if l == nil || l.closed {
		return
	}
	if len(l.items) >= maxListed {
		l.overflow = true
		return
	}
	l.items = append(l.items, bridge.LiveChannel{
		Channel:  e["Channel"],
		Uniqueid: e["Uniqueid"],
		Linkedid: e["Linkedid"],
		State:    atoi(e["ChannelState"]),
		Duration: parseHMS(e["Duration"]),
	})
}

func (ls *listings) onComplete(e map[string]string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[e["ActionID"]]
	if l == nil || l.closed {
		return
	}
	l.closed = true
	close(l.done)
}

// listHandlers are registered on every action session before it connects
// (amigo can deadlock when a handler is registered while events flow).
func (ls *listings) handlers() map[string]func(map[string]string) {
	return map[string]func(map[string]string){
		"CoreShowChannel":          ls.onItem,
		"CoreShowChannelsComplete": ls.onComplete,
	}
}

// parseHMS reads CoreShowChannels' Duration, "HH:MM:SS" (hours may pass 99).
func parseHMS(s string) time.Duration {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return 0
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 0 {
			return 0
		}
		d += time.Duration(n) * unit
	}
	return d
}

// Channels implements bridge.ChannelLister with the read-only
// CoreShowChannels action (manager permission "reporting"). It waits for
// the Response and then for CoreShowChannelsComplete, at most the
// command-response timeout for each, or until ctx ends.
func (c *Client) Channels(ctx context.Context) ([]bridge.LiveChannel, error) {
	if !c.Ready() {
		return nil, c.notReadyError()
	}
	id := c.nextID("coreshowchannels")
	l := c.lists.add(id)
	defer c.lists.remove(id)
	j := newJob(map[string]string{"Action": "CoreShowChannels", "ActionID": id})
	if err := c.handoff(ctx, j); err != nil {
		return nil, fmt.Errorf("CoreShowChannels: %w", err)
	}
	r, err := c.await(ctx, j)
	if err != nil {
		return nil, fmt.Errorf("CoreShowChannels: %w", err)
	}
	switch {
	case r.err != nil:
		return nil, fmt.Errorf("CoreShowChannels: %w", r.err)
	case r.resp["Error"] == "Timeout":
		return nil, fmt.Errorf("CoreShowChannels: %w", bridge.ErrNoResponse)
	case !strings.EqualFold(r.resp["Response"], "Success"):
		// "Permission denied": the manager user lacks read "reporting".
		return nil, fmt.Errorf("CoreShowChannels refused by Asterisk: %s (the manager user needs write = originate,reporting and read = call,reporting)", r.resp["Message"])
	}
	t := time.NewTimer(c.opts.CommandResponse + responseGrace)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		return nil, fmt.Errorf("CoreShowChannels: no CoreShowChannelsComplete within %s", c.opts.CommandResponse+responseGrace)
	case <-ctx.Done():
		return nil, fmt.Errorf("CoreShowChannels: %w", ctx.Err())
	case <-c.stop:
		return nil, fmt.Errorf("CoreShowChannels: %w", errStopped)
	}
	c.lists.mu.Lock()
	items, overflow := l.items, l.overflow
	c.lists.mu.Unlock()
	if overflow {
		return nil, fmt.Errorf("CoreShowChannels: more than %d channels", maxListed)
	}
	return items, nil
}

// WatchCall implements bridge.ChannelLister: the router hands the events of
// an existing call (by its Originate's ActionID and by Uniqueid) to a new
// watch, as if this client had originated it.
func (c *Client) WatchCall(actionID, channelID string) (bridge.Watch, error) {
	if actionID == "" || channelID == "" {
		return nil, fmt.Errorf("%w: watch needs an ActionID and a ChannelID", ErrInvalidRequest)
	}
	w := newWatch(c.router, actionID, channelID)
	if err := c.router.register(w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	// Checked after the registration: a session lost from here on tells
	// the watch itself (router.lost), one lost before it is told here.
	if c.stopping() || !c.events.ready.Load() {
		w.deliverLost(time.Now())
		// Restored in between is not repeated by the router: say it here.
		if !c.stopping() && c.events.ready.Load() {
			w.deliverRestored(time.Now())
		}
	}
	return w, nil
}

// allowedActions are the only actions dialbridge ever sends (contract
// section 3); conn.action refuses any other before it reaches amigo.
var allowedActions = map[string]bool{
	"login": true, "challenge": true, "logoff": true, "ping": true, "events": true,
	"originate": true, "coresettings": true, "corestatus": true, "status": true,
	"coreshowchannels": true,
}

func checkAllowed(m map[string]string) error {
	if a := m["Action"]; !allowedActions[strings.ToLower(a)] {
		return fmt.Errorf("%w: action %q is not one dialbridge may send", ErrInvalidRequest, a)
	}
	return nil
}
