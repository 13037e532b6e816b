package amisim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version strings reported by CoreSettings.
const (
	amiVersion      = "11.0.0"
	asteriskVersion = "22.10.1"
)

// legSnapshot is a consistent copy of one live leg.
type legSnapshot struct {
	c       *call
	l       leg
	phase   int
	account string
	cidNum  string
	cidName string
}

// snapshotLegs returns the live legs, oldest call first, ;2 before ;1 as
// Asterisk listed them.
func (s *Server) snapshotLegs() []legSnapshot {
	var out []legSnapshot
	for _, c := range s.liveCalls() {
		c.mu.Lock()
		if c.phase != phaseDone && !c.dead {
			for _, i := range c.legIdx() {
				out = append(out, legSnapshot{c: c, l: c.legs[i], phase: c.phase, account: c.account, cidNum: c.cidNum, cidName: c.cidName})
			}
		}
		c.mu.Unlock()
	}
	return out
}

func appendSnapshot(b []byte, ls *legSnapshot) []byte {
	l := &ls.l
	b = appendHeader(b, "Channel", l.name)
	b = appendHeaderInt(b, "ChannelState", int64(l.state))
	b = appendHeader(b, "ChannelStateDesc", stateDesc[l.state])
	b = appendHeader(b, "CallerIDNum", ls.cidNum)
	b = appendHeader(b, "CallerIDName", ls.cidName)
	b = appendHeader(b, "ConnectedLineNum", ls.cidNum)
	b = appendHeader(b, "ConnectedLineName", ls.cidName)
	b = appendHeader(b, "Language", "en")
	b = appendHeader(b, "AccountCode", ls.account)
	b = appendHeader(b, "Context", l.context)
	b = appendHeader(b, "Exten", l.exten)
	b = appendHeaderInt(b, "Priority", int64(l.priority))
	b = appendHeader(b, "Uniqueid", l.uniqueid)
	b = appendHeader(b, "Linkedid", ls.c.linkedid)
	return b
}

// application is what a leg runs, for CoreShowChannels and Status.
func (ls *legSnapshot) application() (string, string) {
	if ls.phase == phaseUp {
		return "Wait", ""
	}
	if ls.l.name == ls.c.legs[0].name {
		return "AppDial2", "(Outgoing Line)"
	}
	return "Wait", ""
}

func hms(d time.Duration) string {
	sec := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
}

func (ss *session) actionCoreShowChannels(id string) {
	legs := ss.srv.snapshotLegs()
	b := appendResponse(nil, "Success", id, "start", "Channels will follow", false)
	now := time.Now()
	for i := range legs {
		ls := &legs[i]
		b = appendHeader(b, "Event", "CoreShowChannel")
		if id != "" {
			b = appendHeader(b, "ActionID", id)
		}
		b = appendSnapshot(b, ls)
		app, data := ls.application()
		b = appendHeader(b, "Application", app)
		b = appendHeader(b, "ApplicationData", data)
		b = appendHeader(b, "Duration", hms(now.Sub(ls.l.created)))
		b = appendHeader(b, "BridgeId", "")
		b = append(b, '\r', '\n')
	}
	b = appendListComplete(b, "CoreShowChannelsComplete", id, len(legs))
	ss.enqueue(b, len(legs)+2, false)
}

func (ss *session) actionStatus(m *message, id string) {
	name := m.get("Channel")
	var legs []legSnapshot
	if name == "" {
		legs = ss.srv.snapshotLegs()
	} else {
		for _, ls := range ss.srv.snapshotLegs() {
			if ls.l.name == name || ls.l.uniqueid == name {
				legs = append(legs, ls)
				break
			}
		}
		if len(legs) == 0 {
			ss.send(appendResponse(nil, "Error", id, "", "No such channel", false))
			return
		}
	}
	b := appendResponse(nil, "Success", id, "start", "Channel status will follow", false)
	now := time.Now()
	for i := range legs {
		ls := &legs[i]
		app, data := ls.application()
		b = appendHeader(b, "Event", "Status")
		b = appendHeader(b, "Privilege", "Call")
		b = appendSnapshot(b, ls)
		b = appendHeader(b, "Type", ls.c.tech)
		b = appendHeader(b, "DNID", "")
		b = appendHeader(b, "EffectiveConnectedLineNum", ls.cidNum)
		b = appendHeader(b, "EffectiveConnectedLineName", ls.cidName)
		b = appendHeader(b, "TimeToHangup", "0")
		b = appendHeader(b, "BridgeID", "")
		b = appendHeader(b, "Application", app)
		b = appendHeader(b, "Data", data)
		b = appendHeader(b, "Nativeformats", "(ulaw)")
		b = appendHeader(b, "Readformat", "ulaw")
		b = appendHeader(b, "Readtrans", "")
		b = appendHeader(b, "Writeformat", "ulaw")
		b = appendHeader(b, "Writetrans", "")
		b = appendHeader(b, "Callgroup", "0")
		b = appendHeader(b, "Pickupgroup", "0")
		b = appendHeaderInt(b, "Seconds", int64(now.Sub(ls.l.created)/time.Second))
		if id != "" {
			b = appendHeader(b, "ActionID", id)
		}
		b = append(b, '\r', '\n')
	}
	b = appendListComplete(b, "StatusComplete", id, len(legs), "Items", strconv.Itoa(len(legs)))
	ss.enqueue(b, len(legs)+2, false)
}

func (ss *session) actionCoreSettings(id string) {
	b := appendResponse(nil, "Success", id, "", "", true)
	b = appendHeader(b, "AMIversion", amiVersion)
	b = appendHeader(b, "AsteriskVersion", asteriskVersion)
	b = appendHeader(b, "SystemName", "")
	b = appendHeader(b, "CoreMaxCalls", "0")
	b = appendHeader(b, "CoreMaxLoadAvg", "0.000000")
	b = appendHeader(b, "CoreRunUser", "asterisk")
	b = appendHeader(b, "CoreRunGroup", "asterisk")
	b = appendHeader(b, "CoreMaxFilehandles", "0")
	b = appendHeader(b, "CoreRealTimeEnabled", "No")
	b = appendHeader(b, "CoreCDRenabled", "Yes")
	b = appendHeader(b, "CoreHTTPenabled", "No")
	b = appendHeader(b, "SoundsSearchCustomDir", "No")
	ss.send(append(b, '\r', '\n'))
}

func (ss *session) actionCoreStatus(id string) {
	srv := ss.srv
	st := srv.started
	b := appendResponse(nil, "Success", id, "", "", true)
	b = appendHeader(b, "CoreStartupDate", st.Format("2006-01-02"))
	b = appendHeader(b, "CoreStartupTime", st.Format("15:04:05"))
	b = appendHeader(b, "CoreReloadDate", st.Format("2006-01-02"))
	b = appendHeader(b, "CoreReloadTime", st.Format("15:04:05"))
	srv.callsMu.Lock()
	chans := 0
	for _, c := range srv.calls {
		chans += len(c.legIdx())
	}
	srv.callsMu.Unlock()
	b = appendHeaderInt(b, "CoreCurrentCalls", int64(chans))
	b = appendHeaderInt(b, "CoreProcessedCalls", srv.nCallsStarted.Load()*2)
	ss.send(append(b, '\r', '\n'))
}

// actionHangup is manager.c's Hangup: an exact channel name (or uniqueid),
// or a /regex/ over channel names.
func (ss *session) actionHangup(m *message, id string) {
	srv := ss.srv
	name := m.get("Channel")
	if name == "" {
		ss.send(appendResponse(nil, "Error", id, "", "No channel specified", false))
		return
	}
	cause := 0
	if cs := m.get("Cause"); cs != "" {
		if n, err := strconv.Atoi(cs); err == nil && n >= 0 && n <= 127 {
			cause = n
		}
	}
	if name[0] != '/' {
		c, i := srv.findChannel(name)
		if c == nil {
			ss.send(appendResponse(nil, "Error", id, "", "No such channel", false))
			return
		}
		// Asterisk acknowledges first; the hangup events follow.
		ss.send(appendResponse(nil, "Success", id, "", "Channel Hungup", false))
		c.hangupByAMI(i, cause)
		return
	}
	if len(name) < 2 || name[len(name)-1] != '/' {
		ss.send(appendResponse(nil, "Error", id, "", "Regex format invalid, Channel param should be /regex/", false))
		return
	}
	re, err := regexp.Compile(name[1 : len(name)-1])
	if err != nil {
		ss.send(appendResponse(nil, "Error", id, "", "Regex compile failed on: "+name, false))
		return
	}
	type target struct {
		c *call
		i int
	}
	var targets []target
	seen := map[*call]bool{}
	b := appendResponse(nil, "Success", id, "start", "Channels hung up will follow", false)
	n := 0
	for _, ls := range srv.snapshotLegs() {
		if !re.MatchString(ls.l.name) {
			continue
		}
		n++
		b = appendHeader(b, "Event", "ChannelHungup")
		b = appendHeader(b, "Channel", ls.l.name)
		if id != "" {
			b = appendHeader(b, "ActionID", id)
		}
		b = append(b, '\r', '\n')
		if !seen[ls.c] {
			seen[ls.c] = true
			i := 0
			if strings.HasSuffix(ls.l.name, ";2") {
				i = 1
			}
			targets = append(targets, target{ls.c, i})
		}
	}
	b = appendListComplete(b, "ChannelsHungupListComplete", id, n)
	ss.enqueue(b, n+2, false)
	for _, t := range targets {
		t.c.hangupByAMI(t.i, cause)
	}
}
