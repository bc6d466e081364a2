// Package embedded is msgate's default state backend: counters, account
// flags, complaints and attributions (which account sent which queue id)
// kept in one local file, so that no unit accepted and no complaint
// recorded is forgotten across a restart or a crash (kill -9 included),
// with no service to run.
//
// # What it decides and what it leaves
//
// It decides exactly what the memory backend decides, the same way: every
// Reserve, Release and Usage runs on an in-memory mirror of the file under
// one mutex, so a unit is reserved against all of a request's counters or
// none, and concurrent sessions never push a limit past its value. Which
// limits apply, what to answer the MTA and what to do when Commit fails are
// the policy's business; when to call Expire (periodically) is the daemon's.
//
// # Durability contract
//
//   - Commit returns nil only after the unit is in the file and fsync'd:
//     bbolt writes the transaction's pages, fdatasyncs, writes the meta page
//     and fdatasyncs again. The unit then survives kill -9, and power loss
//     on a disk that honours flushes. Until Commit returns, the unit stays
//     reserved in memory, holding its place under every limit; it is
//     counted as committed in memory only once it is on disk.
//   - Reservations are not written: a unit not yet committed dies with the
//     process, as does the session that held it.
//   - When the write fails, Commit returns an error wrapping
//     state.ErrUnavailable and releases the reservation: the unit is not
//     counted, and a later Release of it reports state.ErrUnknownReservation.
//     When ctx ends first, Commit returns an error wrapping both
//     state.ErrUnavailable and ctx.Err(), and the write goes on: that unit,
//     like one whose transaction failed after its meta page reached the
//     disk, may turn out counted. Errors only ever count a unit too often,
//     never forget one the store acknowledged.
//   - Open loads every bucket still inside its window and deletes the
//     records that expired while the daemon was down. A second process
//     opening the same file fails after Options.LockTimeout (bbolt's flock)
//     with an error saying the file is locked by another process.
//   - SetFlag and ClearFlag return after their own fsync'd transaction.
//   - AddComplaint returns added true only after the complaint and its
//     report id are in the file and fsync'd (its own transaction; adds are
//     serialized, so a report added twice at once counts once). A report id
//     already known writes nothing and returns false. On a write error it
//     returns an error wrapping state.ErrUnavailable and the report stays
//     unknown. ForgetComplaints deletes from the file first, then from
//     memory with the report ids.
//   - Remember is not durable when it returns: see Attributions below.
//
// # Group commit, and no I/O under the decisions' lock
//
// Commits go through one writer goroutine. While it writes and fsyncs one
// batch, the commits that arrive queue up and form the next batch, which
// shares one transaction and one pair of fsyncs; an idle server pays no
// added delay, as there is no timer. The writer counts a batch's units in
// the mirror (under the mutex, briefly) only after its fsync, in the order
// the transaction wrote them, so memory and file agree bucket for bucket.
// Reserve, Release, Usage, GetFlag, ComplaintsSince, ComplainedSince,
// Remember and Attribute never touch the disk; Expire and Scan hold the
// mutex for at most Options.ExpireBatch keys at a time and delete from the
// file without it.
//
// # Why bbolt
//
// Measured on the machine this was written on (2 vCPUs, a virtual disk whose
// write+fdatasync of one page costs 230-370 µs; a shared machine, so each
// figure is the range of three runs of go test -bench . -benchtime 3s):
//
//	BenchmarkCommit (one Reserve and one Commit of an account and the cap)
//	                           commits/s        Commit p50     Commit p99
//	memory,   32 goroutines    1.0-1.2 M        0.2 µs         0.4-39 µs
//	embedded, 32 goroutines    20,600-28,300    1.06-1.21 ms   2.7-7.4 ms
//	embedded,  1 goroutine     1,200-1,700      0.89-1.20 ms   6.5-8.6 ms
//	embedded NoSync, 32        82,000-128,000   0.16-0.17 ms   1.8-4.8 ms
//	embedded NoSync,  1        35,000-42,000    18-20 µs       0.35-0.58 ms
//
// A transaction costs two fdatasyncs, about 0.6-0.8 ms here. Group commit
// shares them among the 20-30 commits that queue meanwhile at 32 sessions,
// which sustain 12-24 times the serial rate; a commit then costs 1.2 KB and
// 19 allocations in all, against 7.3 KB and 55 alone in its transaction.
// That is far above the Microsoft-bound mail rate of any single server, and
// the 1 ms an MTA waits at end of message is lost in the SMTP round trips.
// The same work on SQLite (modernc.org/sqlite, WAL, synchronous=FULL, one
// upsert per counter, measured in a scratch module) gave 2,170 commits/s
// one per transaction, since WAL needs one fsync where bbolt needs two, but
// 17,550/s with 32 commits per transaction (bbolt: 20,600-28,300) and
// 31,500/s without fsync (bbolt: 82,000 and more): its CPU cost per
// statement dominates once fsyncs are shared. It would also add 7.8 MB to
// the binary (bbolt: 1.3 MB, and already a dependency), or cgo.
// bbolt is pure Go, keeps one file with a flock, and its copy-on-write
// B+tree needs no recovery step after a crash: the last fsync'd meta page
// wins.
//
// # The file and memory
//
// Each counter key has one record: its window and its buckets (index and
// count, varint-encoded). A commit trims the record's expired buckets as it
// adds its own, so a live key's record holds at most Buckets+1 buckets;
// Expire deletes the records of keys that went idle, in transactions of at
// most ExpireBatch keys. bbolt reuses the pages freed by deleted records
// and never shrinks the file: the file grows to the peak of live data and
// stays there (bbolt compact rewrites it offline). TestChurn sends one unit
// each for one million distinct accounts, 10,000 a minute over 100 minutes
// with a 10-minute window and Expire every minute: the pages in use rise to
// 12.4-13.9 MB within two windows (about 110,000 live accounts, ~120 bytes
// each) and grow by 1-3.5% in the 80 minutes after, in a 16 MB file (bbolt
// grows files in steps of up to 16 MB); it fails if they grow by 20%. The freelist is not written
// at each commit (NoFreelistSync): bbolt rebuilds it by a scan at Open, so
// commits stay small however fragmented churn leaves the file.
//
// In memory a tracked key costs about 150 bytes (147 measured by
// TestMemoryPerKey for 35-byte keys with one bucket): the key, its map
// slot, a 48-byte counter and its buckets. A key whose record is on disk
// stays in memory until Expire has deleted the record, so that no record
// outlives every reference to it.
//
// A counter re-declared with another window (a config reload) keeps its
// units, judged by the new window: each bucket moves to the new bucket
// holding its last instant, so no unit is forgotten early. The writer then
// rewrites the key's record from memory, so that a restart sees what memory
// saw.
//
// # Complaints
//
// Complaints are few, and all of them are in memory, in time order and per
// account, under their own RWMutex: ComplaintsSince, called on the
// per-message path for each Microsoft recipient, is a map lookup and a
// binary search, and allocates nothing for an account without complaints
// since then (TestComplaintsSinceAllocs). In the file, bucket "complaints"
// keys each by its time (12 bytes that sort as time does) and report id,
// with the complaint in JSON as value, so that ForgetComplaints deletes a
// prefix of the bucket, ExpireBatch records per transaction.
//
// # Attributions
//
// Remember is called at the end of every message with a Microsoft
// recipient, so it neither waits for the disk nor costs an fsync: it
// records in memory, under a mutex of its own, and queues the attribution
// for the writer. The writer writes the queue Options.AttributionDelay
// (100ms) after it stopped being empty, in the transaction of the commits
// at hand or alone when there are none, or at once when 4,096 wait, and
// Close writes what is left. A crash thus loses the attributions of about
// the last AttributionDelay, which is acceptable for what only stands in
// for a stamp a report lost; it never loses part of a transaction nor
// anything else (TestCrash checks that what is left of each session's
// attributions is its first ones, without a hole, each to the right
// account). Attribute reads memory only. ForgetAttributions works through
// memory 1,024 entries per hold of that mutex (about 0.1 ms), then deletes
// a prefix of the file's bucket "attributions" (keys: time in ns, then the
// id; value: the account), ExpireBatch records per transaction; queued
// attributions older than its cutoff are no longer written.
//
// Writing the queue with every commit would add a rewritten leaf page and
// its parents to every transaction: one session's commits got 20-25%
// slower. Written every 100ms, what they cost commits is within the noise
// of this shared machine (BenchmarkCommit, embedded+remember against
// embedded, two interleaved runs each on a quiet moment: 1 session
// 1,910-2,020 against 2,050-2,120 commits/s, p50 0.88-0.90 ms against
// 0.84-0.88 ms; 32 sessions 25,900-27,400 against 24,200-25,500
// commits/s); a commit's op allocates 0.6-0.7 KB more, in 3-5 more
// allocations: its share of writing an attribution. BenchmarkRemember: a call takes 0.22-0.35 µs
// at p50 and 0.6-1.0 µs at p99 from 1 or 32 sessions, allocating nothing
// itself, and the writer sustains 600,000-800,000 attributions a second.
//
// A month of a busy server's mail is millions of attributions, so memory
// holds them compactly: entries of 16 bytes without pointers (time, an
// interned account, the offset of the id) in segments of 1,024 in the order
// remembered, the ids back to back, and a map from the 64-bit hash of an id
// to its entry (the id itself is compared, so a collision never
// misattributes; the rare colliding id has a map of its own).
// TestMemoryPerAttribution measures, for 14-byte Postfix-like ids from
// 2,000 accounts: 71 bytes of heap per attribution after 1 million
// Remember calls and 68 after Open loads them (57 and 55 at 3 million);
// 63 bytes per attribution in the file, whose pages are filled to 95% as
// keys come in time order; Open loads 1 million in about 0.5-0.7 s and 3
// million in 1.9 s.
package embedded
