// Package alert tells the admin what msgate noticed: an account flagged or
// unflagged, the server-wide cap at 80% or 100% of its day, Microsoft
// blocking or throttling the server and the end of it, a change of the IP's
// SNDS status. It decides what an alert says (Event, one JSON object with a
// fixed set of event names) and how it is delivered: a bounded queue per
// target (a command reading the event on its standard input, an HTTP POST),
// one worker each, retries with backoff, at most one delivery per event and
// target once one succeeded, metrics and one log line per attempt.
//
// Sending never blocks: alerts are never on a decision's path. When a
// target's queue is full the oldest alert waiting is dropped and counted.
//
// It leaves to others what is an event: policy's Transition (flags),
// policy.CapWatch (the cap's crossings), policy/replies' Event (Microsoft
// delivery). Whoever notices one builds its Event here and calls Send.
package alert
