// Package acd is the call queue manager (ACD) of contract section 5 as a
// pure state machine: no I/O, no goroutines, no clock. Every event method
// takes the current time as an argument and returns the messages the event
// produces, in order; time passing is itself an event ([Machine.Tick]).
//
// # Operators, calls and messages
//
// Operators have an id, a tier (operator, supervisor, director) and a state:
// available, ringing (a call was delivered, not yet answered), busy (on a
// call), or logged out. A call is waiting in the queue, ringing for one
// operator, or answered by one operator; a call that ends (missed or
// finished) is forgotten, so its id may be used again.
//
// The messages are exactly the contract's:
//
//	Call <id> received
//	Call <id> ringing for operator <op>
//	Call <id> answered by operator <op>
//	Call <id> rejected by operator <op>
//	Call <id> finished and operator <op> available
//	Call <id> waiting in queue
//	Call <id> missed
//	Call <id> ignored by operator <op>
//
// plus three that only login/logout produce (see below):
//
//	Operator <op> logged in
//	Operator <op> logged out
//	Operator <op> will log out after call <id>
//
// # Rules (contract section 5)
//
//   - A new call goes to an available operator, lowest tier first
//     (operators, then supervisors, then directors), configuration order
//     within a tier; else to the back of the queue ("waiting in queue").
//   - An operator who becomes available takes the call at the head of the
//     queue.
//   - A rejected or ignored call is delivered again at once, ahead of the
//     queue: to another available operator if there is one (same order of
//     choice), else to the same operator.
//   - The ring timer starts afresh at each delivery. A call ringing for the
//     ring timeout is "ignored by operator", then delivered again as above.
//   - Hangup of a call ringing or waiting prints "missed" (a ringing operator
//     becomes available and takes the head of the queue); hangup of an
//     answered call prints "finished and operator X available" (and the
//     operator takes the head of the queue).
//   - "call <id>" with the id of a call in progress (waiting, ringing or
//     answered) is an error; a finished id may be used again.
//   - A command that makes no sense gets an error and changes nothing.
//
// # Choices the contract leaves open
//
//   - All configured operators start logged in and available.
//   - "logout <op>": an available operator logs out at once ("Operator A
//     logged out"). A ringing operator logs out at once and the ringing call
//     is delivered again ahead of the queue: to another available operator
//     if there is one (same order of choice), else back to the HEAD of the
//     queue ("Call 5 waiting in queue"). A busy operator finishes the call
//     first: "Operator A will log out after call 2"; when that call is hung
//     up the usual "Call 2 finished and operator A available" is printed,
//     followed at once by "Operator A logged out" (the operator takes no
//     call in between). Logging out a logged-out operator, or a busy one
//     already due to log out, is an error.
//   - "login <op>": a logged-out operator becomes available ("Operator A
//     logged in") and takes the head of the queue. For a busy operator due
//     to log out, login cancels the pending logout ("Operator A logged in").
//     Logging in an operator already logged in is an error.
//   - Operators are those of the configuration only; login/logout of any
//     other id is an error ("unknown operator X").
//   - Call ids and operator ids are 1-64 characters of A-Z a-z 0-9 . _ : -
//     (the contract's dial command id rule), so that every message stays one
//     line of words.
//   - When [Machine.Tick] runs late, each overdue ringing call is ignored
//     once and delivered again at the time given to Tick (no catch-up of
//     missed periods).
//   - "status" (no id) describes the floor: one line per operator, then the
//     length of the queue. "status <id>" describes one call: "Call 5
//     waiting in queue at position 2 of 3", or the call's ringing/answered
//     message. Status is a query: it changes nothing and is O(position).
//
// # Error texts
//
//	unknown command "frob" (commands: call, answer, reject, hangup, login, logout, status)
//	call needs an id: call <id>
//	answer needs an operator: answer <operator>
//	invalid call id "a b": use 1-64 characters of A-Z a-z 0-9 . _ : -
//	invalid operator id "…": use 1-64 characters of A-Z a-z 0-9 . _ : -
//	call 5 is already in progress (waiting in queue)
//	call 5 is already in progress (ringing for operator A)
//	call 5 is already in progress (answered by operator A)
//	unknown call 9
//	unknown operator C
//	operator A is not ringing (available)
//	operator A is not ringing (busy on call 2)
//	operator A is not ringing (logged out)
//	operator A is already logged in
//	operator A is already logged out
//	operator A already logs out after call 2
//	operator X is not in the configuration
//
// # Complexity
//
// Every event is O(log n) in the number of operators and O(1) in the
// number of waiting calls: the queue is an intrusive doubly linked list
// (hangup of a waiting call unlinks it), available operators sit in a
// min-heap ordered by (tier, configuration order), ringing calls in a
// min-heap ordered by ring deadline.
//
// # Persistence support
//
// [Machine.Changes] returns what the latest event changed (operators, calls,
// queue operations), so a store can write only that; [Machine.Snapshot] and
// [Restore] save and rebuild the whole floor.
package acd
