// Package release plans the paced release of mail that msgate put in
// Postfix's hold queue: which held messages leave now, in which order, and
// why the others stay.
//
// It reads `postqueue -j` (postqueue(1), JSON OBJECT FORMAT: one JSON object
// per line) tolerantly: fields it does not know are ignored, and a line it
// cannot read is reported and skipped, so that a newer Postfix or one broken
// line never stops a release. Plan is a pure function of the held messages,
// the room the cap and the accounts' rules leave, and the time: oldest
// first, round-robin across accounts, never past the room, never a flagged
// account's mail.
//
// The package decides and runs nothing. Reserving the released units
// against the counters, running postsuper and postqueue, and the admin API
// belong to msgate serve; reading the clock belongs to the caller.
package release
