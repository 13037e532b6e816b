package redisq

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
)

// TestTrunkUseAdmits: a daemon claims no more than its trunk can dial
// within about a second (cps × 1 s + burst, less what it already waits
// for), no more than the free channels, and nothing while the host's
// breaker is open.
func TestTrunkUseAdmits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		limits    TrunkLimits
		wantFirst int // Admit(10) on an idle trunk
	}{
		{"cps", TrunkLimits{CPS: 2, Burst: 1}, 3},
		{"cps with burst", TrunkLimits{CPS: 4, Burst: 3}, 7},
		{"channels", TrunkLimits{MaxChannels: 5}, 5},
		{"both", TrunkLimits{CPS: 20, Burst: 1, MaxChannels: 4}, 4},
		{"no limits", TrunkLimits{}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, rdb := rqRedis(t)
			ctx := rqCtx(t)
			u, err := NewTrunkUse(rdb, "p", TrunkUseOptions{Cell: "101", Trunk: "gw1", Limits: tt.limits,
				Breaker: bridge.BreakerConfig{Failures: 2, Cooldown: time.Minute}, Host: "h1"}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = u.Run(runCtx) }()
			defer func() { stop(); <-done }()
			got, err := u.Admit(ctx, 10)
			if err != nil || got != tt.wantFirst {
				t.Fatalf("Admit(10) = %d, %v; want %d", got, err, tt.wantFirst)
			}
			if tt.limits.CPS > 0 || tt.limits.MaxChannels > 0 {
				if again, _ := u.Admit(ctx, 10); again != 0 {
					t.Errorf("second Admit = %d, want 0: the first ones still wait", again)
				}
			}
			u.Unused(got)
			if again, _ := u.Admit(ctx, 10); again != tt.wantFirst {
				t.Errorf("Admit after Unused = %d, want %d", again, tt.wantFirst)
			}
			u.Unused(tt.wantFirst)

			// Two trunk failures open the breaker: nothing is admitted.
			for i := range 2 {
				call := &bridge.Call{Cmd: &bridge.Command{ID: "c" + string(rune('0'+i))}, Attempts: 1}
				if err := u.Enter(ctx, call, time.Now().Add(10*time.Second)); err != nil {
					t.Fatal(err)
				}
				u.Exit(call, bridge.FateRefused, nil, false)
			}
			if st := u.BreakerState(); st.Mode != bridge.BreakerOpen {
				t.Fatalf("breaker %s after two refusals", st.Mode)
			}
			if n, _ := u.Admit(ctx, 10); n != 0 {
				t.Errorf("Admit = %d with the breaker open", n)
			}
			call := &bridge.Call{Cmd: &bridge.Command{ID: "late"}, Attempts: 1}
			err = u.Enter(ctx, call, time.Now().Add(10*time.Second))
			if err == nil || bridge.OwnErrorOf(err.Error()) != bridge.OwnBreakerOpen {
				t.Errorf("Enter with the breaker open: %v", err)
			}
		})
	}
}

// TestTrunkUseAdoptedKeepsSlot: an adopted call's lease is taken over (even
// after it expired), counted against max_channels, and given back with the
// call's result.
func TestTrunkUseAdoptedKeepsSlot(t *testing.T) {
	t.Parallel()
	_, rdb := rqRedis(t)
	ctx := rqCtx(t)
	u, err := NewTrunkUse(rdb, "p", TrunkUseOptions{Cell: "101", Trunk: "gw1", Limits: TrunkLimits{MaxChannels: 2}, Host: "h1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	release := u.Adopted(ctx, &bridge.Call{Cmd: &bridge.Command{ID: "c1"}})
	if release == nil {
		t.Fatal("no release")
	}
	use, err := u.Gate().Limiter().Usage(ctx)
	if err != nil || use.Channels != 1 || u.Gate().Held() != 1 {
		t.Fatalf("after adoption: %+v %v, held %d", use, err, u.Gate().Held())
	}
	if n, _ := u.Admit(ctx, 5); n != 1 {
		t.Errorf("Admit = %d with one of two channels adopted, want 1", n)
	}
	release()
	if use, _ := u.Gate().Limiter().Usage(ctx); use.Channels != 0 || u.Gate().Held() != 0 {
		t.Errorf("after release: %+v, held %d", use, u.Gate().Held())
	}
}

// TestAcquireUnlessOpenPeeksTheBreaker: the token's script takes nothing
// while the host's breaker is stored open, and takes as usual once it is
// closed; a breaker of another host does not count.
func TestAcquireUnlessOpenPeeksTheBreaker(t *testing.T) {
	t.Parallel()
	_, rdb := rqRedis(t)
	ctx := rqCtx(t)
	lim, err := NewTrunkLimiter(rdb, "p", "gw1", TrunkLimits{CPS: 10, Burst: 1, MaxChannels: 5})
	if err != nil {
		t.Fatal(err)
	}
	mine, other := BreakerKey("p", "gw1", "h1"), BreakerKey("p", "gw1", "h2")
	rdb.HSet(ctx, mine, "mode", "open")
	rdb.HSet(ctx, other, "mode", "open")
	g, err := lim.AcquireUnlessOpen(ctx, "101:a", mine)
	if err != nil || g.OK || g.Refused != TrunkBreaker {
		t.Fatalf("open breaker: %+v, %v", g, err)
	}
	if use, _ := lim.Usage(ctx); use.Channels != 0 || use.Granted != 0 {
		t.Errorf("a refused peek took something: %+v", use)
	}
	rdb.HSet(ctx, mine, "mode", "closed")
	if g, err := lim.AcquireUnlessOpen(ctx, "101:a", mine); err != nil || !g.OK {
		t.Fatalf("closed breaker: %+v, %v", g, err)
	}
}
