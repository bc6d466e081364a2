// Package redis keeps msgate's state in Redis, so that several msgate
// daemons (several Postfix servers behind one IP) share one set of numbers:
// every account's limits, the Microsoft cap, the flags, the complaints and
// the queue ids that attribute complaints.
//
// It decides nothing that the other backends do not: it implements the
// whole state.Store contract, and runs the same conformance suite
// (statetest) against miniredis and against a real redis-server.
//
// Reserve, Commit, CommitAll and Release are Lua scripts, each one atomic
// step on the server: a unit is admitted against every counter of a request
// or none, whichever daemon asks. A counter is one hash: its window's time
// buckets (committed units) and the number of units reserved against it.
// Every reservation is also in one sorted set scored by when it lapses, and
// its name lists its counters: the reservations of a daemon that died are
// given back after ReservationTTL by the next reserve (or usage read, or
// Expire) instead of holding their units forever.
// Bucket indexes are computed by the caller (state.BucketOf), so every
// daemon agrees on them; time is passed in as everywhere else.
//
// ReserveSpare takes the spares it is asked for in the same script, where
// every counter is hard and keeps an eighth of its limit (at least 4) free
// after them; a counter's "s" field counts the spares not yet settled, and
// a request refused only because of other transactions' spares is asked
// again after short pauses until the timeout (the caller's own spares are
// not waited for).
//
// Remember queues the queue id for a writer of the store's own, which
// sends what queued meanwhile as one HSET and one ZADD (attributions.go);
// Attribute finds the ids still waiting.
//
// Standings (flags and complaints) are read once per message; each daemon
// keeps those it read and drops one when any daemon publishes a change to
// it, and trusts what it keeps only while its subscription answers (see
// standings.go): a change made through one daemon is the others' within a
// second.
//
// Every key starts with "{msgate}:" (or the configured prefix in braces), so
// that on a Redis Cluster all of them fall in one hash slot and the scripts
// may touch several; the status view scans the node that serves that slot.
// The conformance suite also runs through a Cluster client on a one-node
// Cluster, and through Sentinel (Dial with master_name=, go-redis's
// failover client) against a real Sentinel; a failover to the replica is
// followed without a restart. Durability is Redis's: with appendonly yes
// and appendfsync everysec a restart loses at most a second of units, with
// appendfsync always none. Redis that does not answer within the timeout
// makes every call fail with state.ErrUnavailable, and the policy applies
// [milter] on_error; nothing is retried behind the caller's back, and the
// client reconnects by itself when Redis is back.
package redis
