package ami

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
)

// TestChannelsAndWatchCall is adoption's AMI side over real TCP: a second
// client (the adopter) lists the first one's live calls with
// CoreShowChannels — an answered one Up, a ringing one not — and a watch
// registered by ActionID and ChannelId gets the rest of each call: the
// ringing one's OriginateResponse and the Hangup of both.
func TestChannelsAndWatchCall(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{
		// Long enough that both calls are still live when listed on a
		// loaded machine.
		{Suffix: "1", Outcome: amisim.OutcomeAnswer, TalkFor: 3 * time.Second},
		{Suffix: "2", Outcome: amisim.OutcomeBusy, RingFor: 3 * time.Second},
	}})
	dead, _ := startClient(t, srv, nil)
	adopter, _ := startClient(t, srv, func(o *Options) { o.Instance = "adopter" })
	ctx := context.Background()

	answered, ringing := request("5001"), request("5002")
	answered.Timeout, ringing.Timeout = 5*time.Second, 5*time.Second
	w1, err := dead.Originate(ctx, answered)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collect(w1, 10*time.Second, func(evs []bridge.Event) bool { return count(evs, bridge.EventOriginateResponse) == 1 }); err != nil {
		t.Fatal(err)
	}
	w2, err := dead.Originate(ctx, ringing)
	if err != nil {
		t.Fatal(err)
	}
	// The first daemon "dies": it stops following its calls.
	w1.Close()
	w2.Close()

	aw1, err := adopter.WatchCall(answered.ActionID, answered.ChannelID)
	if err != nil {
		t.Fatal(err)
	}
	defer aw1.Close()
	aw2, err := adopter.WatchCall(ringing.ActionID, ringing.ChannelID)
	if err != nil {
		t.Fatal(err)
	}
	defer aw2.Close()
	if _, err := adopter.WatchCall(ringing.ActionID, ringing.ChannelID); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("second watch of one call: %v, want ErrInvalidRequest", err)
	}

	// Originate is queued (async): the ringing call's channels appear a
	// moment after its response, as on Asterisk. Wait for them.
	var chans []bridge.LiveChannel
	waitFor(t, "both calls' channels listed", 10*time.Second, func() bool {
		var err error
		chans, err = adopter.Channels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chans {
			if ch.Uniqueid == ringing.ChannelID {
				return true
			}
		}
		return false
	})
	byUID := map[string]bridge.LiveChannel{}
	for _, ch := range chans {
		byUID[ch.Uniqueid] = ch
	}
	if len(chans) != 4 {
		t.Errorf("listed %d channels, want 4 (two legs per call): %+v", len(chans), chans)
	}
	a, ok := byUID[answered.ChannelID]
	if !ok || a.State != bridge.ChannelStateUp || !strings.HasSuffix(a.Channel, ";1") || a.Linkedid != answered.ChannelID {
		t.Errorf("answered call listed as %+v (ok %v), want its ;1 leg Up", a, ok)
	}
	if _, ok := byUID[answered.ChannelID+";2"]; !ok {
		t.Errorf("the ;2 half of the answered call is not listed")
	}
	if r, ok := byUID[ringing.ChannelID]; !ok || r.State == bridge.ChannelStateUp {
		t.Errorf("ringing call listed as %+v (ok %v), want not Up", r, ok)
	}

	evs, err := collect(aw2, 10*time.Second, func(evs []bridge.Event) bool {
		_, hung := find(evs, bridge.EventHangup, 1)
		return count(evs, bridge.EventOriginateResponse) == 1 && hung
	})
	if err != nil {
		t.Fatal(err)
	}
	if or, _ := find(evs, bridge.EventOriginateResponse, 0); or.Reason != bridge.ReasonBusy {
		t.Errorf("ringing call's outcome: %s, want Reason 5", describe(evs))
	}
	evs, err = collect(aw1, 10*time.Second, func(evs []bridge.Event) bool {
		_, hung := find(evs, bridge.EventHangup, 1)
		return hung
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := find(evs, bridge.EventHangup, 1); h.Cause != 16 {
		t.Errorf("answered call's hangup: %s, want cause 16", describe(evs))
	}
	if chans, err := adopter.Channels(ctx); err != nil || len(chans) != 0 {
		t.Errorf("after both ended: %d channels, %v", len(chans), err)
	}
}

// TestWatchCallWhileEventsDown: a watch made while the event session is
// down starts Lost, so an adopted answered call asks Asterisk about its
// channel once AMI is back instead of waiting for a Hangup it may have
// missed.
func TestWatchCallWhileEventsDown(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	srv.DropConnections()
	waitFor(t, "events session down", 10*time.Second, func() bool { return !c.Ready() })
	w, err := c.WatchCall("o-x-1", "x-1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	evs, err := collect(w, 10*time.Second, func(evs []bridge.Event) bool {
		return count(evs, bridge.EventLost) == 1 && count(evs, bridge.EventRestored) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Kind != bridge.EventLost {
		t.Errorf("events %s, want Lost first", describe(evs))
	}
}

// TestOnlyWhitelistedActions: an action off the contract's list never
// reaches amigo, even from inside the package.
func TestOnlyWhitelistedActions(t *testing.T) {
	for _, a := range []string{"Hangup", "Redirect", "Command", "Setvar", ""} {
		if err := checkAllowed(map[string]string{"Action": a}); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%q: %v, want refused", a, err)
		}
	}
	for _, a := range []string{"Login", "Logoff", "Ping", "Events", "Originate", "CoreSettings", "CoreStatus", "Status", "CoreShowChannels", "coreshowchannels"} {
		if err := checkAllowed(map[string]string{"Action": a}); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	cn := &conn{} // refused before anything of it is used
	if _, err := cn.action(map[string]string{"Action": "Hangup", "Channel": "x"}, false); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("conn.action(Hangup): %v, want refused before amigo", err)
	}
}
