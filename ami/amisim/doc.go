// Package amisim is an Asterisk Manager Interface (AMI) simulator: a TCP
// server that speaks AMI the way a real Asterisk 22 does, used as the peer
// of dialbridge's tests, benchmarks and demo. It needs no PBX.
//
// # Wire behaviour
//
// The text was matched against AMI captured from Asterisk 22.10.1 (see
// shared/docs/ami-transcripts.txt): CRLF line endings, an empty line after
// each message, headers in Asterisk's order, and the banner
// "Asterisk Call Manager/11.0.0\r\n" written alone, first, with no empty
// line after it (amigo reads it with a single 100-byte Read).
//
//   - Actions other than Login, Logoff and Challenge before a successful
//     Login: "Response: Error", "Message: Permission denied".
//   - Login with the wrong Username or Secret (or a wrong MD5 Key after
//     Challenge): after Config.AuthDelay (default 1 s) "Response: Error",
//     "Message: Authentication failed", then the server closes the
//     connection. A good Login: "Response: Success", "Message:
//     Authentication accepted", then the events FullyBooted (when the
//     session's event mask has "system") and SuccessfulAuth (security,
//     broadcast). A Login header "Events: off" (or any mask) sets the
//     session's event mask. Not logged in after Config.AuthTimeout (30 s):
//     closed.
//   - Ping: "Ping: Pong" and "Timestamp: <unix>.<micro>". Logoff: "Response:
//     Goodbye", "Message: Thanks for all the fish.", then close.
//   - Events with EventMask on|off|<classes>|<number>: "Events: On" or
//     "Events: Off"; events reach a session only when its mask covers their
//     class (call events: "call"; Login's FullyBooted: "system"). An empty
//     mask: "Invalid event mask".
//   - Unknown action: "Message: Invalid/unknown command: X. Use Action:
//     ListCommands to show available commands." (Asterisk's full text).
//     A message without Action: "Missing action in request".
//   - Lines are read like manager.c's get_input: a line and its line end
//     must fit in 1,024 bytes (1,022 bytes before a CRLF). A longer one is
//     thrown away 1,023 bytes at a time, each time logged as Asterisk logs
//     it ("Discarding message from <addr>. Line too long: <25 bytes>...");
//     what is left of it when its line end comes is read as a line of the
//     message (an empty one, ending the message, when the byte kept was
//     the CR of the CRLF). The message is then answered "Response: Error",
//     "Message: Failed to parse message: line too long" (with its ActionID,
//     logged in or not) and the session is kept; Stats.ParseErrors counts
//     it. More than 128 lines: "Too many lines in message or allocation
//     failure" (which leaves a pending long-line error to the next message,
//     as in Asterisk). A NUL ends a header.
//   - CoreSettings, CoreStatus, CoreShowChannels (an EventList of
//     CoreShowChannel then CoreShowChannelsComplete with ListItems), Status
//     (an EventList of Status then StatusComplete; "Channel:" picks one
//     channel by name or uniqueid, else "No such channel") and Hangup (exact
//     channel name, uniqueid, or /regex/; "Cause:") answer like Asterisk.
//     Command knows only the simulator's "amisim ..." commands (Carriers).
//
// Every response echoes the action's ActionID (the first one). Header names
// are case-insensitive on input, header order is free, unknown headers
// (amigo's AmigoConnID) are ignored.
//
// # Originate
//
// A ChannelId or OtherChannelId over 149 bytes, "Channel not specified",
// "Invalid priority", "Invalid timeout" and "Invalid channel" (no "/") are
// refused with Response: Error, as in Asterisk.
//
// Variable headers are read exactly as Asterisk reads them, and
// OriginateRecord.Variables holds what the dialplan would read: each
// header is split by the application-argument parser (commas split, ( )
// [ ] and "quotes" group — an unclosed one swallows the rest of the
// header —, quotes are removed, a backslash makes the next byte literal,
// 64 items at most), each item at its first "=", and the variables are
// then set last item first, a name that differs only by its leading "_"
// or "__" replacing the other: the first appearance of a name wins.
// Names ending in ")" are function writes (OriginateRecord.Functions). Otherwise the number (the part of Channel between
// "/" and the first "@") picks a Rule (first match wins, no match: answer at
// once, hang up at once). With "Async: true" the Response ("Originate
// successfully queued") comes at once and the call is then played as a
// Local-style pair of channels "<Channel>-<8 hex seq>;1" and ";2":
//
//	answer        Newchannel ;1 ;2, [Newstate ;1 Ringing, RingFor], Newstate Up ×2,
//	              OriginateResponse Success Reason 4 (Channel ;1, Uniqueid ;1),
//	              after TalkFor Hangup ;2 and ;1 cause 16 "Normal Clearing"
//	busy          Newstate ;2 Busy, OriginateResponse Failure 5, Hangup ;1 cause 0, ;2 cause 17
//	congestion    Newstate ;2 Busy, Hangup ;1 cause 0, ;2 cause 34, OriginateResponse Failure 8
//	noanswer      Newstate ;1 Ringing; after the Originate's Timeout (ms, default 30000)
//	              OriginateResponse Failure 3, Hangup ;1 and ;2 cause 19
//	hangup        Hangup ;2 cause N, OriginateResponse Failure 0, Hangup ;1 cause N
//	failed        OriginateResponse Failure 0 and no channel event at all (also what
//	              any unknown channel technology, e.g. "Foo/bar", gets)
//	doesnotexist  both legs created and hung up at once with cause 0, Reason 0
//	refuse        Response: Error with Rule.Message (default "Originate failed"), no call
//	noresponse    no Response ever (with Rule.PlayCall the call is played anyway, as an
//	              answered call with the rule's RingFor/TalkFor)
//	drop          the connection is closed on receipt (with PlayCall the call is started
//	              first, as an answered call; its events go to the other sessions)
//
// A RingFor at least as long as the Timeout makes any outcome a noanswer,
// as in Asterisk. On failure the OriginateResponse's Channel is the dial
// string and its Uniqueid the ChannelId, or "<unknown>". ChannelId sets the
// ;1 leg's Uniqueid and Linkedid, ;2 gets OtherChannelId or "<ChannelId>;2";
// without them ids are "<unix>.<seq>". CallerIDNum/CallerIDName come from
// the CallerID header (`"Name" <num>`), "<unknown>" when absent. An AMI
// Hangup of a ringing call ends it with OriginateResponse Failure Reason 1.
//
// Events are broadcast like Asterisk's manager_event: every logged-in
// session whose mask covers "call" gets every call's events, the
// OriginateResponse included (with the originating action's ActionID), so
// a client may originate on one connection with events off and listen on
// another.
//
// Without "Async: true" the session blocks until the outcome: "Response:
// Success" ("Originate successfully queued") when answered, "Response:
// Error", "Message: Originate failed" otherwise, no OriginateResponse; the
// session's events are held meanwhile and follow the Response, as in
// Asterisk.
//
// Slow responses: Rule.ResponseDelay delays the Response, and the session
// handles nothing else meanwhile (Asterisk's session thread processes a
// session's actions one at a time); the call starts when the Response is
// sent. Other sessions are not affected.
//
// Ordering: by default the events of a call come in the orders seen in the
// transcripts. Config.ShuffleSeed != 0 moves each OriginateResponse, with a
// seeded generator, to a random place among the channel events of the same
// instant (never before the ;1 Newchannel), so clients meet both orders.
//
// # Carriers (SIP trunks)
//
// A Carrier set on a trunk (Config.Carriers, SetCarrier, ParseCarriers, or
// the text control) models the SIP carrier behind a PJSIP endpoint. An
// Originate whose Channel is "PJSIP/<number>@<trunk>", "PJSIP/<trunk>/<uri>"
// or "PJSIP/<trunk>" goes to that trunk's carrier (else to one whose
// Carrier.Match the Channel contains, else to TrunkAny's, "*", one limit
// for every other endpoint; without any, the call is played as above). It is
// then played as chan_pjsip plays it with a real carrier
// (shared/docs/pjsip-transcripts.txt): one channel
// "PJSIP/<trunk>-<8 hex>", no ";2" leg, Context the endpoint's (Carrier.
// Context, "from-carrier"), Exten "s" until answered:
//
//	answer      Newchannel, [Newstate Ringing], Newstate Up, OriginateResponse
//	            Success 4; after TalkFor the carrier's BYE: HangupRequest (a
//	            Cause only for a BYE with a Q.850 Reason), SoftHangupRequest
//	            "Cause: 16" (AST_SOFTHANGUP_APPUNLOAD, not a hangup cause),
//	            Hangup cause 0 "Unknown" (Carrier.ByeCause or the rule's
//	            Cause: that cause instead)
//	busy        486: HangupRequest 17/TechCause 486, OriginateResponse
//	            Failure 0, Hangup cause 17 TechCause 486
//	congestion  503: the same with 34 and 503
//	hangup      the SIP answer of the rule's Cause (603 for 21, 404 for 1...):
//	            Reason 0, Hangup Cause and TechCause
//	noanswer    Newstate Ringing; at the Timeout Hangup 19 TechCause 480 (state
//	            Ringing), OriginateResponse Failure 3
//	failed      no channel: OriginateResponse Failure 0 only
//
// Every failure but a ring-out is Reason 0: the Hangup's cause tells busy
// from congestion, as with Asterisk. Before the rule, the carrier judges
// the INVITE: over Carrier.CPS calls let through in the rolling
// Carrier.Window (1 s; refused calls do not count), over
// Carrier.MaxChannels calls in progress, or Dead "congestion": "503
// Service Unavailable" with "Retry-After: 1" (pj-cps-*), played like the
// congestion outcome at once: Reason 0, Hangup cause 34, TechCause 503.
// Dead "nochannel" (endpoint unknown or unreachable: chan_pjsip cannot
// create the channel): OriginateResponse Failure Reason 0 and no channel
// event, like an unknown technology. KillTrunk, ReviveTrunk and
// SetCarrier change a trunk at run time; calls in progress go on.
// CarrierStats counts per trunk, OriginateTimes gives each Originate's
// arrival time (by Config.Clock, which tests may fake).
//
// Text control (Server.Control; also over AMI as "Action: Command",
// "Command: amisim <line>", answered "Message: Command output follows" with
// Output lines): "kill <trunk> [congestion|nochannel]", "revive <trunk>",
// "carrier=<trunk>:<options>", "uncarrier <trunk>", "rules <rules>",
// "carriers". Carrier entries in a rule string:
//
//	carrier=<trunk>[:cps=N,window=DUR,max=N,dead=congestion|nochannel|no,context=NAME,bye=N,match=TEXT]
//
// e.g. "carrier=gw1:cps=4,max=10;carrier=*:cps=20;suffix=5:busy;answer,talk=2s"
// (ParseRules skips carrier entries, ParseCarriers reads only them).
//
// # Slow readers
//
// Each session has its own writer goroutine and outbound queue, so a slow
// client never blocks the simulator or the other clients. A session is
// dropped (its connection closed, Stats.SessionsDropped counted) when more
// than Config.MaxQueue messages wait (default 100,000) or when its socket
// accepts nothing for Config.WriteTimeout (default 100 ms, Asterisk's
// writetimeout).
//
// # Rule syntax (ParseRules)
//
// Rules are separated by ";" and tried in order. Each rule is
//
//	[MATCH:]OUTCOME[,OPTION=VALUE...]
//
// MATCH is "prefix=DIGITS", "suffix=DIGITS", both joined by "," (e.g.
// "prefix=55,suffix=1"), or "*"/"any"; without a MATCH the rule matches
// every number. OUTCOME is one of answer, busy, congestion, noanswer,
// hangup, failed, doesnotexist, refuse, noresponse, drop (aliases: answered,
// congest, no_answer, fail, refused, no_response). OPTIONs:
//
//	ring=DUR     Rule.RingFor (time before the outcome)
//	talk=DUR     Rule.TalkFor (answered calls; "forever" or -1: never hang up)
//	cause=N      Rule.Cause (hangup outcome; 0-127)
//	delay=DUR    Rule.ResponseDelay
//	play[=BOOL]  Rule.PlayCall (noresponse, drop)
//	message=TXT  Rule.Message (refuse); must come last, may contain commas
//
// DUR is a Go duration ("1.5s", "200ms") or a bare number of milliseconds.
// Example:
//
//	suffix=1:busy;suffix=2:noanswer;prefix=999:refuse,message=Originate failed;
//	suffix=3:answer,ring=1s,talk=2s;suffix=4:hangup,cause=21;answer
//
// DefaultMix is the demo's table keyed on the last digit.
package amisim
