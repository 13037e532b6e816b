// Package acdserver runs the call queue manager (package acd) for people
// and programs: the line interpreter of basic mode (RunBasic), the TCP
// server of "queue serve" (Server) and its command line client
// (RunClient), around an Engine that owns the state machine, drives ring
// timeouts on the real clock, persists every change (Store) and applies
// the bridge's events (Inbox).
//
// # Lines typed (basic mode and client)
//
// One command per line: "call <id>", "answer <operator>", "reject
// <operator>", "hangup <id>", "login <operator>", "logout <operator>",
// "status [<id>]". The command word is case-insensitive; words are
// separated by spaces or tabs; blank lines and lines starting with # are
// skipped; "help" prints the commands, "quit" (or "exit", or the end of
// the input) leaves. Messages go to stdout, one per line, exactly as
// contract section 5 writes them; errors go to stderr as "error: <text>"
// and change nothing. A line over 64 KiB is refused with an error.
//
// # TCP protocol ("queue serve", default 127.0.0.1:5678)
//
// One JSON object per line each way, UTF-8, "\n" terminated ("\r\n"
// accepted). Requests:
//
//	{"command": "call", "id": "7"}
//	{"command": "answer", "id": "A"}
//	{"command": "status"}
//	{"command": "help"}
//
// "command" and "id" are strings; other fields are refused. Replies:
//
//	{"response": "Call 7 received"}
//	{"error": "unknown call 9"}
//
// The messages a command causes go to the client that sent it, in order,
// before the replies to its next command. Messages no command caused
// (ring timeouts, events from the bridge's inbox) go to every connected
// client. A malformed line, an unknown command or one that makes no sense
// gets one {"error": …} line and the connection stays. There is no
// greeting and no end-of-reply marker: every command that works produces at
// least one message, one that fails exactly one error. A line over 64 KiB
// gets an error and is skipped. Each client has a bounded queue of
// outgoing lines (1,024) and a 64 KiB socket buffer: a client that does
// not read is disconnected when its queue overflows, or when its socket
// takes nothing for 10 s, and never slows the others. At most 1,000 clients at once. A client that half-closes its
// connection gets the replies still due, then the server closes.
package acdserver
