package amisim

// causeText is Asterisk's ast_cause2str table (main/channel.c): the
// Cause-txt of Hangup events. Unknown codes (and 0) read "Unknown".
var causeText = map[int]string{
	1:   "Unallocated (unassigned) number",
	2:   "No route to specified transmit network",
	3:   "No route to destination",
	5:   "Misdialed trunk prefix",
	6:   "Channel unacceptable",
	7:   "Call awarded and being delivered in an established channel",
	8:   "Pre-empted",
	14:  "Number ported elsewhere",
	16:  "Normal Clearing",
	17:  "User busy",
	18:  "No user responding",
	19:  "User alerting, no answer",
	20:  "Subscriber absent",
	21:  "Call Rejected",
	22:  "Number changed",
	23:  "Redirected to new destination",
	26:  "Answered elsewhere",
	27:  "Destination out of order",
	28:  "Invalid number format",
	29:  "Facility rejected",
	30:  "Response to STATus ENQuiry",
	31:  "Normal, unspecified",
	34:  "Circuit/channel congestion",
	38:  "Network out of order",
	41:  "Temporary failure",
	42:  "Switching equipment congestion",
	43:  "Access information discarded",
	44:  "Requested channel not available",
	50:  "Facility not subscribed",
	52:  "Outgoing call barred",
	54:  "Incoming call barred",
	57:  "Bearer capability not authorized",
	58:  "Bearer capability not available",
	65:  "Bearer capability not implemented",
	66:  "Channel not implemented",
	69:  "Facility not implemented",
	81:  "Invalid call reference value",
	88:  "Incompatible destination",
	95:  "Invalid message unspecified",
	96:  "Mandatory information element is missing",
	97:  "Message type nonexist.",
	98:  "Wrong message",
	99:  "Info. element nonexist or not implemented",
	100: "Invalid information element contents",
	101: "Wrong call state",
	102: "Recovery on timer expiry",
	103: "Mandatory IE length error",
	111: "Protocol error, unspecified",
	127: "Interworking, unspecified",
}

// CauseText returns Asterisk's text for a Q.850 hangup cause ("Unknown" for
// codes it does not know, 0 included).
func CauseText(cause int) string {
	if t, ok := causeText[cause]; ok {
		return t
	}
	return "Unknown"
}

// Channel states (enum ast_channel_state) and their AMI descriptions.
const (
	stateDown    = 0
	stateRing    = 4
	stateRinging = 5
	stateUp      = 6
	stateBusy    = 7
)

var stateDesc = [...]string{"Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy", "Dialing Offhook", "Pre-ring"}

// Event classes (EVENT_FLAG_*) used for the per-session event mask.
const (
	flagSystem   = 1 << 0
	flagCall     = 1 << 1
	flagCDR      = 1 << 10
	flagSecurity = 1 << 18
	maskAll      = 1<<31 - 1 // INT_MAX, Asterisk's "all"
)

var permNames = []struct {
	name string
	flag int64
}{
	{"system", 1 << 0}, {"call", 1 << 1}, {"log", 1 << 2}, {"verbose", 1 << 3},
	{"command", 1 << 4}, {"agent", 1 << 5}, {"user", 1 << 6}, {"config", 1 << 7},
	{"dtmf", 1 << 8}, {"reporting", 1 << 9}, {"cdr", 1 << 10}, {"dialplan", 1 << 11},
	{"originate", 1 << 12}, {"agi", 1 << 13}, {"cc", 1 << 15}, {"aoc", 1 << 16},
	{"test", 1 << 17}, {"security", 1 << 18}, {"message", 1 << 19},
	{"all", maskAll}, {"none", 0},
}
