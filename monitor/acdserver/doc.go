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
//	{"command": "auth", "token": "…"}
//	{"command": "call", "id": "7"}
//	{"command": "answer", "id": "A"}
//	{"command": "status"}
//	{"command": "help"}
//
// "command", "id" and (with auth only) "token" are strings; other fields
// are refused. Replies:
//
//	{"response": "authenticated"}
//	{"response": "Call 7 received"}
//	{"error": "unknown call 9"}
//
// With a token (acd.token) the first line must be the auth: anything else,
// or a wrong token (compared in constant time), gets one {"error": …} line
// and the connection is closed, as is a connection that has not
// authenticated within AuthTimeout (5 s). A later auth with the right
// token is answered again (the client uses that as a marker); with a wrong
// one the connection is closed. A server without a token takes any auth.
//
// The messages a command causes go to the client that sent it, in order,
// before the replies to its next command. Messages no command caused
// (ring timeouts, events from the bridge's inbox) go to every
// authenticated client. A malformed line, an unknown command or one that
// makes no sense gets one {"error": …} line and the connection stays. There
// is no greeting and no end-of-reply marker: every command that works
// produces at least one message, one that fails exactly one error. Message
// and error texts are escaped (package termsafe).
//
// Limits: a request line over MaxLine (4 KiB) gets one error and the
// connection is closed, without the server reading more of it. Each client
// has a bounded queue of outgoing lines (1,024) and a 64 KiB socket
// buffer: a client that does not read is disconnected when its queue
// overflows, or when its socket takes nothing for 10 s, and never slows the
// others (broadcasts never wait). At most MaxClients (256) connections: a
// newcomer over the cap closes the oldest connection that has not proven
// itself (authenticated; without a token, sent a line); if every
// connection has, the newcomer waits over the cap (one at most) and, once
// it proves itself, the console idle the longest is closed. So an
// authenticated console is never closed while an unauthenticated
// connection is open, and idle sockets lock nobody out. A client that
// half-closes its connection gets the replies still due, then the server
// closes.
package acdserver
