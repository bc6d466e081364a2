// Package replies decides what Microsoft's answers to deliveries mean for
// msgate: it classifies one delivery outcome (as Postfix reports it to
// smtp_delivery_status_filter: "<enhanced status> <text>") by rules, counts
// each rule's matches in its window, and moves Microsoft delivery between
// normal, throttled and blocked. It also keeps the factor by which throttle
// replies lower the mitigation cap, and how days without them raise it again.
//
// It decides only: time is passed in, and what a transition does (pausing
// Postfix's queue, holding or deferring new mail, running on_event, writing
// the state down) is left to the caller, which acts on the Events returned.
package replies
