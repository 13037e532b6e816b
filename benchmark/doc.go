// Package benchmark is the logic of "dialbridge bench" (issue 6): it
// measures, against a real Redis and the AMI simulator,
//
//  1. baseline: the raw round-trip bound of the Redis for the round trips a
//     call needs, issued by a plain go-redis client with no bridge logic;
//  2. e2e: the real daemon driven by a fast simulated Multcall as hard as it
//     takes commands: calls/s and latency percentiles of push → Originate
//     and push → result;
//  3. paced: the same latencies at a fixed offered load;
//  4. inflight: RSS and goroutines of the daemon (a subprocess) holding
//     10,000 answered calls;
//  5. acd: events/s of the queue manager's state machine, and commands/s
//     through its TCP server with 50 clients.
//
// The daemon itself is wired in package main (startDaemon); this package
// receives it as a StartFunc so that it measures exactly what "dialbridge
// run" runs.
package benchmark
