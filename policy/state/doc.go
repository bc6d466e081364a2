// Package state keeps msgate's counters: how many Microsoft units each key
// (an account's rate rule, the server-wide cap) has used in a rolling
// window, plus the units reserved by transactions still in flight; and
// beside them the account flags, the complaints and the queue ids that
// attribute complaints. Store is the whole contract: every backend keeps
// every part.
//
// It decides one thing atomically: whether a unit fits under every hard limit
// of a request at once. Either the unit is reserved against all of the
// request's counters or against none, so concurrent sessions can never push a
// counter past its limit. What a key means, which limits apply and what to
// answer the MTA are the policy's business; when to commit or release a
// reservation is the milter session's. A reservation may carry spare units
// (ReserveSpare) that the same transaction spends on its next recipients
// without asking the store; they count like reserved units until the
// commit counts the spent ones and gives the rest back. A backend may
// admit none.
//
// Windows are rolling and kept as time buckets of Window/Buckets each. A unit
// stays counted until the whole bucket it fell in has left the window, so a
// limit is never exceeded in any real rolling window; the price is that a unit
// may be counted up to one bucket (1/60 of the window) longer than strictly
// necessary.
//
// Every backend runs the same conformance suite (statetest.Run), every part
// of it, so that backends cannot drift apart. What flags and complaints mean
// for an account (thresholds, flagging, unflagging, forgiving) is decided by
// the policy engine; a store only keeps them.
package state
