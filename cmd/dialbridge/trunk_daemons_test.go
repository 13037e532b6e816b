package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// Trunks shared by several daemons (issue 14), on a real redis-server
// ($DIALBRIDGE_TEST_REDIS; `make integration`): the limiter's promises hold
// at the simulator whatever daemon dials, a dead trunk on one host moves
// the work to the other, and a killed daemon's channels come back. The
// single-daemon tests are in wired_trunk_test.go.

// trRig is one Redis and up to two PBX hosts (an AMI simulator each: two
// hosts are two Asterisks, each with its own carrier state), and the
// daemons started on them.
type trRig struct {
	t      *testing.T
	addr   string
	prefix string
	rdb    *redis.Client
	sims   map[string]*amisim.Server // host → its Asterisk
	trunks []config.Trunk
	cells  map[string]string // cell → trunk ("" = none)
	mcs    map[string]*multcallsim.Sim

	mu      sync.Mutex
	daemons []*trDaemon
}

type trDaemon struct {
	host, cell string
	d          *daemon
	stop       context.CancelFunc
	done       chan error
}

func trRealRedis(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("needs a real redis-server (DIALBRIDGE_TEST_REDIS): run by make integration")
	}
	return addr
}

// newTrRig starts an AMI simulator per host with rules and the carriers
// given (the same on every host), and a simulated Multcall per cell.
func newTrRig(t *testing.T, hosts []string, rules string, carriers map[string]amisim.Carrier, trunks []config.Trunk, cells map[string]string) *trRig {
	t.Helper()
	r := &trRig{t: t, addr: trRealRedis(t), prefix: testPrefix(t), sims: map[string]*amisim.Server{},
		trunks: trunks, cells: cells, mcs: map[string]*multcallsim.Sim{}}
	r.rdb = redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
	t.Cleanup(func() {
		_ = deleteTestKeys(context.Background(), r.rdb, r.prefix)
		r.rdb.Close()
	})
	for _, h := range hosts {
		sim, err := amisim.New(amisim.Config{Rules: mustRules(t, rules), AuthDelay: 50 * time.Millisecond, Carriers: cloneCarriers(carriers)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		r.sims[h] = sim
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for cell := range cells {
		mc := multcallsim.New(r.rdb, r.prefix, cell, multcallsim.Options{})
		r.mcs[cell] = mc
		wg.Add(1)
		go func() { defer wg.Done(); _ = mc.RunConfirmer(ctx) }()
	}
	// Stop the daemons before the simulators and Multcall go.
	t.Cleanup(r.stopAll)
	return r
}

func cloneCarriers(m map[string]amisim.Carrier) map[string]amisim.Carrier {
	out := make(map[string]amisim.Carrier, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// deleteTestKeys removes the test's keys (the trunks' too: same prefix).
func deleteTestKeys(ctx context.Context, rdb *redis.Client, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+":*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// settings are the rig's settings as host sees them (its own Asterisk).
func (r *trRig) settings(host string, threads int) *config.Settings {
	r.t.Helper()
	h, p, _ := strings.Cut(r.addr, ":")
	var qs []string
	for cell, trunk := range r.cells {
		q := fmt.Sprintf(`{name: "%s", threads: %d`, cell, threads)
		if trunk != "" {
			q += ", trunk: " + trunk
		}
		qs = append(qs, q+"}")
	}
	slices.Sort(qs)
	var ts []string
	for _, t := range r.trunks {
		ts = append(ts, fmt.Sprintf(`{name: %s, channel: "%s", cps: %g, burst: %d, max_channels: %d, breaker: {failures: %d, cooldown: %s}}`,
			t.Name, t.Channel, t.CPS, t.Burst, t.MaxChannels, t.Breaker.Failures, t.Breaker.Cooldown.D()))
	}
	yaml := fmt.Sprintf(`
log: {level: warn, format: console}
redis: {host: %s, port: %s, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 10s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@default", context: agents, exten: s, timeout: 30s}
trunks: [%s]
queues: [%s]
`, h, p, r.prefix, r.sims[host].Port(), strings.Join(ts, ", "), strings.Join(qs, ", "))
	s, err := config.Parse([]byte(yaml))
	if err != nil {
		r.t.Fatalf("settings: %v\n%s", err, yaml)
	}
	return s
}

// start runs a daemon of cell on host, in this process.
func (r *trRig) start(host, cell string, threads int) *trDaemon {
	r.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(r.t)).Level(zerolog.WarnLevel).With().Str("host", host).Logger()
	ctx, stop := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, r.settings(host, threads), cell, log, func(o *daemonOptions) { o.host = host })
	if err != nil {
		stop()
		r.t.Fatalf("startDaemon %s on %s: %v", cell, host, err)
	}
	td := &trDaemon{host: host, cell: cell, d: d, stop: stop, done: make(chan error, 1)}
	go func() { td.done <- d.Run(ctx) }()
	r.mu.Lock()
	r.daemons = append(r.daemons, td)
	r.mu.Unlock()
	return td
}

func (r *trRig) stopAll() {
	r.mu.Lock()
	ds := r.daemons
	r.daemons = nil
	r.mu.Unlock()
	for _, d := range ds {
		d.stop()
	}
	for _, d := range ds {
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			r.t.Errorf("daemon %s on %s did not stop within 30s", d.cell, d.host)
		}
	}
}

func (r *trRig) push(cell string, ids ...string) {
	r.t.Helper()
	raw := make([][]byte, len(ids))
	for i, id := range ids {
		raw[i] = []byte(cmd(id, trNumber(id)))
	}
	if err := r.mcs[cell].Push(context.Background(), raw...); err != nil {
		r.t.Fatal(err)
	}
}

// results collects n results of cell within d.
func (r *trRig) results(cell string, n int, d time.Duration) map[string][]bridge.Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rs, err := r.mcs[cell].CollectResults(ctx, n)
	byID := map[string][]bridge.Result{}
	for _, x := range rs {
		byID[x.ID] = append(byID[x.ID], x)
	}
	if err != nil {
		r.t.Fatalf("cell %s: %d of %d results: %v", cell, len(rs), n, err)
	}
	return byID
}

// noDouble checks that no number reached any simulator twice.
func (r *trRig) noDouble() {
	r.t.Helper()
	seen := map[string]string{}
	for host, sim := range r.sims {
		for _, o := range sim.Originates() {
			if prev, ok := seen[o.Number]; ok {
				r.t.Errorf("number %s dialed twice (%s and %s)", o.Number, prev, host)
			}
			seen[o.Number] = host
		}
	}
}

// trNumber is a number of its own for each id: the ASCII codes of its
// letters and digits (48-122: two digits below 100, three from "1"
// above, so no code is the start of another) after 55.
func trNumber(id string) string {
	var b strings.Builder
	b.WriteString("55")
	for _, c := range id {
		fmt.Fprintf(&b, "%d", c)
	}
	return b.String()
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

func gwTrunk(name string, cps float64, burst, maxCh, failures int, cooldown time.Duration) config.Trunk {
	return config.Trunk{Name: name, Channel: "PJSIP/{number}@" + name, CPS: cps, Burst: burst, MaxChannels: maxCh,
		Breaker: config.Breaker{Failures: failures, Cooldown: config.Duration(cooldown)}}
}

// inWindow counts times in [from, from+d).
func inWindow(times []time.Time, from time.Time, d time.Duration) int {
	n := 0
	for _, t := range times {
		if !t.Before(from) && t.Before(from.Add(d)) {
			n++
		}
	}
	return n
}

// TestTrunkThreeDaemonsOneRate: cells 101 (two daemons, on two hosts) and
// 102 (one daemon) share trunk gw1 at cps 4, burst 1. At the carrier — one
// Asterisk here, so every Originate of every daemon is counted in one
// place — no 0.97 s window holds more than cps + burst − 1, a saturated
// 10 s carries ≥ 95 % of cps, the channels never pass max_channels, every
// command gets exactly one result and nothing is dialed twice.
func TestTrunkThreeDaemonsOneRate(t *testing.T) {
	const cps, burst, maxCh, perCell = 4, 1, 8, 35
	r := newTrRig(t, []string{"pbx"}, "answer,talk=1s",
		map[string]amisim.Carrier{"gw1": {CPS: cps + burst - 1, Window: 970 * time.Millisecond, MaxChannels: maxCh}},
		[]config.Trunk{gwTrunk("gw1", cps, burst, maxCh, 10, 30*time.Second)},
		map[string]string{"101": "gw1", "102": "gw1"})
	// One Asterisk (one host, one breaker), so that every Originate of
	// every daemon is counted at one carrier.
	a := r.start("pbx", "101", 50)
	b := r.start("pbx", "101", 50)
	c := r.start("pbx", "102", 50)
	r.push("101", ids("a", perCell)...)
	r.push("102", ids("b", perCell)...)
	got := r.results("101", perCell, 90*time.Second)
	for k, v := range r.results("102", perCell, 90*time.Second) {
		got[k] = v
	}
	sim := r.sims["pbx"]
	times := sim.OriginateTimes("gw1")
	by := map[string]int{}
	for id, rs := range got {
		if len(rs) != 1 {
			t.Errorf("%s: %d results", id, len(rs))
			continue
		}
		if rs[0].Status != bridge.StatusAnswered {
			t.Errorf("%s: %s %q", id, rs[0].Status, rs[0].Error)
		}
		by[rs[0].Instance]++
	}
	if len(got) != 2*perCell || len(times) != 2*perCell {
		t.Fatalf("%d results, %d Originates at the carrier; want %d", len(got), len(times), 2*perCell)
	}
	for _, d := range []*trDaemon{a, b, c} {
		if by[d.d.instance] == 0 {
			t.Errorf("daemon %s of cell %s dialed nothing (results by instance %v)", d.d.instance, d.cell, by)
		}
	}
	if m := amisim.MaxInWindow(times, 970*time.Millisecond); m > cps+burst-1 {
		t.Errorf("%d Originates in a 0.97 s window, want ≤ %d", m, cps+burst-1)
	}
	// Saturated from the first Originate until the backlog runs out: the
	// 10 s after the first second carry ≥ 95 % of cps.
	if n := inWindow(times, times[0].Add(time.Second), 10*time.Second); n < 38 {
		t.Errorf("%d Originates in the saturated 10 s, want ≥ 38 (95 %% of cps 4)", n)
		for i := 1; i < len(times); i++ {
			t.Logf("Originate %d: +%s", i, times[i].Sub(times[i-1]).Round(time.Millisecond))
		}
	}
	st := sim.CarrierStats("gw1")
	if st.MaxChannelsSeen > maxCh || st.RejectedCPS+st.RejectedChannels > 0 {
		t.Errorf("carrier: %+v (max_channels %d)", st, maxCh)
	}
	r.noDouble()
	t.Logf("results by instance %v; carrier %+v; span %s", by, st, times[len(times)-1].Sub(times[0]).Round(time.Millisecond))
}

// TestTrunkChannelsAcrossDaemons: three daemons, two cells, one trunk with
// a fast rate and 3 channels: the channel cap binds, across daemons, and
// is never passed at the carrier.
func TestTrunkChannelsAcrossDaemons(t *testing.T) {
	const maxCh, perCell = 3, 12
	r := newTrRig(t, []string{"pbx"}, "answer,talk=700ms",
		map[string]amisim.Carrier{"gw1": {MaxChannels: maxCh}},
		[]config.Trunk{gwTrunk("gw1", 50, 1, maxCh, 10, 30*time.Second)},
		map[string]string{"101": "gw1", "102": "gw1"})
	r.start("pbx", "101", 50)
	r.start("pbx", "101", 50)
	r.start("pbx", "102", 50)
	r.push("101", ids("a", perCell)...)
	r.push("102", ids("b", perCell)...)
	got := r.results("101", perCell, 90*time.Second)
	for k, v := range r.results("102", perCell, 90*time.Second) {
		got[k] = v
	}
	busy := 0
	for id, rs := range got {
		switch {
		case len(rs) != 1:
			t.Errorf("%s: %d results", id, len(rs))
		case rs[0].Status == bridge.StatusAnswered:
		case rs[0].Status == bridge.StatusFailed && strings.HasPrefix(rs[0].Error, bridge.BreakerTrunkBusyText) && rs[0].Attempts == 0:
			busy++ // waited its ring time for a channel: allowed, never dialed
		default:
			t.Errorf("%s: %s %q", id, rs[0].Status, rs[0].Error)
		}
	}
	st := r.sims["pbx"].CarrierStats("gw1")
	if st.MaxChannelsSeen > maxCh || st.RejectedChannels > 0 {
		t.Errorf("carrier saw %d channels at once (max_channels %d): %+v", st.MaxChannelsSeen, maxCh, st)
	}
	if st.MaxChannelsSeen < maxCh {
		t.Errorf("the cap never bound: at most %d channels at once", st.MaxChannelsSeen)
	}
	r.noDouble()
	t.Logf("carrier %+v; trunk busy %d", st, busy)
}

// TestTrunkSecondNotSlowed: cell 101 has a backlog on a slow trunk (cps 1),
// cell 102 on another (cps 10); the second dials at its own rate while
// the first is still working through its backlog.
func TestTrunkSecondNotSlowed(t *testing.T) {
	const fast, n = 10, 40
	r := newTrRig(t, []string{"pbx"}, "answer,talk=100ms",
		map[string]amisim.Carrier{"slow": {}, "fast": {}},
		[]config.Trunk{gwTrunk("slow", 1, 1, 0, 10, 30*time.Second), gwTrunk("fast", fast, 1, 0, 10, 30*time.Second)},
		map[string]string{"101": "slow", "102": "fast"})
	r.start("pbx", "101", 50)
	r.start("pbx", "102", 50)
	r.push("101", ids("s", 30)...)
	waitFor(t, 30*time.Second, "the slow trunk to dial", func() bool { return len(r.sims["pbx"].OriginateTimes("slow")) >= 2 })
	r.push("102", ids("f", n)...)
	r.results("102", n, 60*time.Second)
	ft := r.sims["pbx"].OriginateTimes("fast")
	span := ft[len(ft)-1].Sub(ft[0])
	rate := float64(len(ft)-1) / span.Seconds()
	if rate < 0.8*fast { // slowed by the first would be near its 1/s
		t.Errorf("fast trunk: %d Originates in %s = %.1f/s, want ≥ %.0f", len(ft), span, rate, 0.8*fast)
	}
	slow := r.sims["pbx"].OriginateTimes("slow")
	if len(slow) >= 30 {
		t.Errorf("the slow trunk's backlog was done before the fast one finished: %d Originates", len(slow))
	}
	if m := amisim.MaxInWindow(slow, 970*time.Millisecond); m > 1 {
		t.Errorf("slow trunk: %d in 0.97 s", m)
	}
	t.Logf("fast: %d in %s (%.1f/s); slow meanwhile: %d", len(ft), span.Round(time.Millisecond), rate, inWindow(slow, ft[0], span))
}

// TestTrunkBreakerTwoHosts: cell 101 runs on pbx1 and pbx2; gw1 is dead on
// pbx1 only (its Asterisk's carrier answers every call 503). pbx1's breaker
// opens after breaker.failures failures and burns at most failures + 1
// commands per cooldown; pbx2 dials the rest; once pbx1's trunk is revived,
// its probe after the cooldown closes the breaker and pbx1 dials again.
func TestTrunkBreakerTwoHosts(t *testing.T) {
	const failures, n = 3, 40
	cooldown := 4 * time.Second
	r := newTrRig(t, []string{"pbx1", "pbx2"}, "answer,talk=200ms",
		map[string]amisim.Carrier{"gw1": {}},
		[]config.Trunk{gwTrunk("gw1", 8, 1, 0, failures, cooldown)},
		map[string]string{"101": "gw1"})
	if err := r.sims["pbx1"].KillTrunk("gw1", amisim.DeadCongestion); err != nil {
		t.Fatal(err)
	}
	d1 := r.start("pbx1", "101", 20)
	r.start("pbx2", "101", 20)
	r.push("101", ids("c", n)...)
	brk := redisq.NewBreakerStore(r.rdb, r.prefix, "gw1", "pbx1", bridge.BreakerConfig{Failures: failures, Cooldown: cooldown})
	var opened time.Time
	waitFor(t, 30*time.Second, "pbx1's breaker to open", func() bool {
		st, err := brk.State(context.Background())
		if err == nil && st.Mode == bridge.BreakerOpen {
			opened = st.OpenedAt
			return true
		}
		return false
	})
	got := r.results("101", n, 90*time.Second)
	dead := r.sims["pbx1"].OriginateTimes("gw1")
	// Burned on the dead trunk: at most failures + 1 in the time to the
	// first cooldown's end, one more (the probe) per cooldown since.
	cooldowns := int(time.Since(opened)/cooldown) + 1
	if len(dead) > failures+cooldowns {
		t.Errorf("%d Originates on pbx1's dead trunk in %d cooldowns, want ≤ %d", len(dead), cooldowns, failures+cooldowns)
	}
	var answered, congestion, open int
	for id, rs := range got {
		if len(rs) != 1 {
			t.Errorf("%s: %d results", id, len(rs))
			continue
		}
		switch x := rs[0]; {
		case x.Status == bridge.StatusAnswered:
			answered++
			if x.Instance == d1.d.instance {
				t.Errorf("%s answered by pbx1, whose trunk is dead", id)
			}
		case x.Status == bridge.StatusCongestion:
			congestion++
		case x.Status == bridge.StatusFailed && strings.HasPrefix(x.Error, bridge.BreakerOpenErrorText) && x.Attempts == 0:
			open++
		default:
			t.Errorf("%s: %s %q", id, x.Status, x.Error)
		}
	}
	if congestion != len(dead) || answered < n-len(dead)-open {
		t.Errorf("answered %d, congestion %d (dead trunk Originates %d), breaker open %d", answered, congestion, len(dead), open)
	}

	// Revived: after the cooldown pbx1's probe succeeds, the breaker
	// closes, and pbx1 dials again.
	r.sims["pbx1"].ReviveTrunk("gw1")
	waitFor(t, 30*time.Second, "pbx1's breaker to let a call through", func() bool {
		st, err := brk.State(context.Background())
		return err == nil && st.Mode == bridge.BreakerHalfOpen
	})
	before := len(dead)
	r.push("101", ids("d", n)...)
	got2 := r.results("101", n, 90*time.Second)
	st, err := brk.State(context.Background())
	if err != nil || st.Mode != bridge.BreakerClosed {
		t.Errorf("after the revival: breaker %+v %v", st, err)
	}
	fromPbx1 := 0
	for id, rs := range got2 {
		if len(rs) != 1 || rs[0].Status != bridge.StatusAnswered {
			t.Errorf("%s: %+v", id, rs)
			continue
		}
		if rs[0].Instance == d1.d.instance {
			fromPbx1++
		}
	}
	if fromPbx1 == 0 || len(r.sims["pbx1"].OriginateTimes("gw1")) <= before {
		t.Errorf("pbx1 dialed nothing after its trunk came back")
	}
	r.noDouble()
	t.Logf("dead trunk: %d burned (congestion %d, breaker open %d), pbx2 answered %d; after the revival pbx1 answered %d of %d",
		len(dead), congestion, open, answered, fromPbx1, n)
}

// TestTrunkSlotsOfAKilledDaemon: a daemon (its own process) holding
// channel slots is killed with -9; its slots count as free again within
// 15 s (redisq.DefaultTrunkLeaseTTL); a new daemon that adopts its calls,
// still up on the carrier, takes their slots back and dials no more.
func TestTrunkSlotsOfAKilledDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	addr := trRealRedis(t)
	const maxCh = 5
	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, "answer,talk=forever"), Carriers: map[string]amisim.Carrier{"gw1": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	prefix := testPrefix(t)
	h, p, _ := strings.Cut(addr, ":")
	settings := filepath.Join(dir, "settings.yaml")
	if err := os.WriteFile(settings, []byte(fmt.Sprintf(`
log: {level: info, format: json}
redis: {host: %s, port: %s, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 10s, shutdown_grace: 1s}
originate: {channel: "PJSIP/{number}@default", context: agents, exten: s, timeout: 5s}
trunks: [{name: gw1, channel: "PJSIP/{number}@gw1", cps: 20, max_channels: %d}]
queues: [{name: "%s", threads: 20, trunk: gw1}]
`, h, p, prefix, sim.Port(), maxCh, testCell)), 0o600); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	defer deleteTestKeys(context.Background(), rdb, prefix) //nolint:errcheck // best effort
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mc := multcallsim.New(rdb, prefix, testCell, multcallsim.Options{})
	go mc.RunConfirmer(ctx)
	lim, err := redisq.NewTrunkLimiter(rdb, prefix, "gw1", redisq.TrunkLimits{CPS: 20, Burst: 1, MaxChannels: maxCh})
	if err != nil {
		t.Fatal(err)
	}
	channels := func() int {
		u, err := lim.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return u.Channels
	}

	bin := binary(t)
	logPath := filepath.Join(dir, "daemon.log")
	a := startProc(t, bin, settings, logPath)
	for i := range 2 * maxCh {
		if err := mc.Push(ctx, multcallsim.Command(fmt.Sprintf("k%02d", i), fmt.Sprintf("5511%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the daemon to hold every channel", func() bool { return channels() == maxCh })
	a.kill(t)
	killed := time.Now()
	// When the slots come back is in Redis, exactly: each lease's expiry
	// (its score, on Redis's clock) — whatever this loaded machine's
	// polling adds.
	leases, err := rdb.ZRangeWithScores(ctx, lim.Keys().Leases(), 0, -1).Result()
	if err != nil || len(leases) != maxCh {
		t.Fatalf("leases %v %v", leases, err)
	}
	last := time.UnixMicro(int64(leases[len(leases)-1].Score))
	if d := last.Sub(killed); d > redisq.DefaultTrunkLeaseTTL {
		t.Errorf("the last slot is held until %s after the kill, want ≤ %s", d.Round(time.Millisecond), redisq.DefaultTrunkLeaseTTL)
	}
	waitFor(t, 30*time.Second, "the dead daemon's slots to come back", func() bool { return channels() == 0 })
	back := time.Since(killed)
	// A new daemon adopts the dead one's calls, still up on the carrier,
	// and with them their slots: it dials nothing more than the cap
	// allows (the other commands wait in dial).
	startProc(t, bin, settings, logPath)
	waitFor(t, 30*time.Second, "the new daemon to hold the adopted calls' slots", func() bool { return channels() == maxCh })
	time.Sleep(2 * time.Second) // a new call would be dialed within this
	if st := sim.CarrierStats("gw1"); st.Originates != maxCh || st.MaxChannelsSeen != maxCh {
		t.Errorf("carrier after the restart: %+v, want %d Originates and channels at most (the adopted calls)", st, maxCh)
	}
	t.Logf("last slot expired %s after kill -9 (by its lease), seen free %s after", last.Sub(killed).Round(time.Millisecond), back.Round(time.Millisecond))
}
