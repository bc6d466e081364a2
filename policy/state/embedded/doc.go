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
//   - Commit returns nil only after the unit is in the log and fdatasync'd:
//     the writer appends its batch as one record to the active log file
//     with one pwrite and one fdatasync (see The log below). The unit then
//     survives kill -9, and power loss on a disk that honours flushes. The
//     state file (bbolt) gets it at the next checkpoint, and Open replays
//     into it what the log holds that it does not. Until Commit returns,
//     the unit stays reserved in memory, holding its place under every
//     limit; it is counted as committed in memory only once it is on disk.
//   - Reservations are not written: a unit not yet committed dies with the
//     process, as does the session that held it.
//   - When the write or the fdatasync fails, Commit returns an error
//     wrapping state.ErrUnavailable and releases the reservation: the unit
//     is not counted, and a later Release of it reports
//     state.ErrUnknownReservation; the next write goes to the same offset,
//     over whatever the failure left. When ctx ends first, Commit returns an
//     error wrapping both state.ErrUnavailable and ctx.Err(), and the write
//     goes on: that unit, like one whose fdatasync failed after its record
//     reached the disk, may turn out counted (after a crash, by replay).
//     Errors only ever count a unit too often, never forget one the store
//     acknowledged.
//   - A checkpoint that fails forgets nothing: its epoch stays in the log,
//     the checkpointer retries it (backing off up to 10s), commits go on
//     into the other file, which grows meanwhile, Expire returns the error
//     (it waits for a checkpoint), Close returns it, and the next Open
//     replays the log.
//   - Open replays the log, loads every bucket still inside its window and
//     deletes the records that expired while the daemon was down. A second
//     process opening the same file fails after Options.LockTimeout
//     (bbolt's flock, taken before the log is opened) with an error saying
//     the file is locked by another process.
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
// Commits go through one writer goroutine. While it writes and fdatasyncs
// one batch, the commits that arrive queue up and form the next batch,
// which shares one record, one pwrite and one fdatasync; an idle server
// pays no added delay, as there is no timer. The writer picks each unit's
// bucket from the mirror (under the mutex, briefly: the bucket of its time,
// or the newest one when the clock stepped back, as series.add does) and
// counts the batch's units in the mirror only after the fdatasync, in the
// order the record holds them, so memory and file agree bucket for bucket
// (TestCheckpointMatchesMirror). Commits never wait for bbolt: checkpoints
// run on a goroutine of their own. Reserve, Release, Usage, GetFlag,
// ComplaintsSince, ComplainedSince, Remember and Attribute never touch the
// disk; Expire and Scan hold the mutex for at most Options.ExpireBatch keys
// at a time and delete from the file without it.
//
// # The log
//
// Two files beside the state file, <path>-wal.0 and <path>-wal.1 (mode
// 0600), are created filled with 8 MiB of real zeros (written, then
// fsync'd with their directory) and reused forever: a write then lands in
// blocks that are allocated and written already, and its fdatasync flushes
// data only. A file that is full is written past its end: it grows, and
// stays that size.
//
// A record is a 16-byte header (payload length, CRC-32C, epoch) and a
// payload: a version byte, then operations, varint-encoded: the units of a
// commit (its time, then each unit's key, window and bucket), the new
// content of a record whose window changed (its key and buckets, none to
// delete it), and attributions (time, id, account). A batch is one record
// (a write of more than 1 MiB is cut into several), written in the order
// the old single transaction wrote: rewrites, units, attributions. The CRC
// covers the epoch and the payload and is chained, seeded with the CRC of
// the epoch's previous record: a record is valid only right after the one
// it followed when written.
//
// Epochs number the uses of the files: epoch e is written in file e%2,
// from offset 0. Reading a file back takes records from offset 0 while
// they are whole records of the expected epoch with a valid CRC: zeros,
// a record of an older use of the file (an older epoch) or a record torn
// by a crash (never acknowledged, since its fdatasync had not returned)
// ends it. Epochs only grow, across restarts too, so an old record never
// passes for a new one.
//
// The writer seals the active epoch when it holds 4 MiB, 30s after its first
// record, or when Expire asks, and goes on with the next epoch in the
// other file, once the checkpointer has applied what that file held; until
// then it keeps appending to the active file. The checkpointer reads the
// sealed epoch back from its file (so that the path recovery takes runs
// all the time) and applies it to bbolt in one transaction that also sets
// wal_applied, in the meta bucket, to that epoch: one Get and one Put per
// key however many units it got, each unit put in the bucket the writer
// chose, after the same re-windowing and trimming the mirror did. An epoch
// is thus applied whole or not at all, and never twice (a transaction for
// an epoch wal_applied has reached does nothing), so a crash in the middle
// of a checkpoint just means applying the epoch again from scratch
// (TestCheckpointInterruptedIsReplayed).
//
// Open, after the layout checks, replays the epochs above wal_applied that
// the two files hold, in order, each in its own transaction (the same
// function as checkpoints), and refuses to open when one is missing
// between them, rather than forget it; then it loads memory from bbolt as
// before and writes the next epoch. Log files missing are created; log
// files found beside a state file that had none (new, or of format 1) are
// marked applied, never replayed. Expire checkpoints before it deletes
// records, so that no record is deleted while units for it wait in the
// log (the checkpoint would bring it back with nothing left in memory to
// delete it again). Close writes what is queued, then applies the whole
// log. Flags, complaints and Expire's deletions keep their own bbolt
// transactions, which bbolt serializes with checkpoints.
//
// # Why bbolt, and a log
//
// bbolt is pure Go, keeps one file with a flock, and its copy-on-write
// B+tree needs no recovery step after a crash: the last fsync'd meta page
// wins. But a bbolt transaction costs two fdatasyncs (its pages, then its
// meta page) and much CPU, and that was every batch of commits' price. The
// log makes a commit one small write and one fdatasync; bbolt stays the
// store the log is checkpointed to, in transactions that coalesce
// thousands of commits.
//
// Measured on the machine this was written on (2 vCPUs and a virtual disk,
// shared with other work; BenchmarkFsync, a write+fdatasync of one page,
// took 0.21-0.38 ms during these runs): BenchmarkCommit (one Reserve and
// one Commit of an account and the cap) with -benchtime 3s, on the commit
// before the log and with it, interleaved, in two sets of three runs at
// different times of load; ranges over the six runs of each:
//
//	                commits/s                        Commit p50 (ms)          Commit p99 (ms)
//	                before          log              before      log          before    log
//	embedded,  1    980-2,110       2,570-4,680      0.80-1.51   0.41-0.51    1.8-9.4   0.8-6.3
//	embedded, 32    14,700-32,500   41,900-66,300    0.94-1.74   0.46-0.55    2.0-9.2   0.9-4.8
//	NoSync,    1    33,600-44,500   136,000-200,000  0.017-0.021 0.004-0.005  0.31-0.57 0.06-0.11
//	NoSync,   32    88,500-145,500  157,000-328,000  0.13-0.17   0.005-0.033  1.3-5.0   1.2-4.3
//
// Within each set, comparing medians of three: commits/s 1.8 and 2.1 times
// those without the log at 1 session, 2.9 and 2.1 times at 32; p50 0.48
// and 0.49 times at 1, 0.35 and 0.45 times at 32; p99 0.44 and 0.45 times
// at 1, 0.53 and 0.49 times at 32. A commit allocates 0.3-0.7 KB in 4-5
// allocations at 1 session (8 KB and 63 before), 0.26-0.28 KB in 2 at 32
// (1.2 KB and 19). "1" is what the benchmark calls goroutines=1:
// RunParallel runs GOMAXPROCS of them, so two sessions here, and a commit
// often waits for the other's fdatasync to end before its own starts;
// alone, with one session, a commit measured 0.23 ms at p50 against 0.20
// ms for its fdatasync. Checkpoints share the disk and the CPUs with the
// commits. The rates are far above the Microsoft-bound mail rate of any
// single server.
//
// Before the log, SQLite was measured against bbolt in a scratch module
// (modernc.org/sqlite, WAL, synchronous=FULL, one upsert per counter):
// 2,170 commits/s one per transaction, 17,550/s with 32 commits per
// transaction and 31,500/s without fsync, less than bbolt did then in
// both cases: its CPU cost per statement dominated once fsyncs were
// shared. It would also add 7.8 MB to the binary (bbolt: 1.3 MB, and
// already a dependency), or cgo.
//
// # The file and memory
//
// Each counter key has one record: its window and its buckets (index and
// count, varint-encoded). A checkpoint trims the record's expired buckets as
// it adds the units, so a live key's record holds at most Buckets+1 buckets;
// Expire deletes the records of keys that went idle, in transactions of at
// most ExpireBatch keys. bbolt reuses the pages freed by deleted records
// and never shrinks the file: the file grows to the peak of live data and
// stays there (bbolt compact rewrites it offline). TestChurn sends one unit
// each for one million distinct accounts, 10,000 a minute over 100 minutes
// with a 10-minute window and Expire every minute: the pages in use rise to
// 17.2-17.4 MB within two windows (about 110,000 live accounts) and grow by
// 1.6-2.7% in the 80 minutes after, in a 33.6-33.9 MB file (bbolt grows
// files in steps of up to 16 MB); it fails if they grow by 20%. When each
// commit was a transaction they rose to 13.3 MB in a 16 MB file: a
// checkpoint now inserts a minute's 10,000 new accounts in one
// transaction, presumably the cause: bbolt cannot reuse the old copy of a
// page it rewrites before the transaction ends. The freelist is not written at each
// transaction (NoFreelistSync): bbolt rebuilds it by a scan at Open, so
// checkpoints stay small however fragmented churn leaves the file.
//
// In memory the counters are kept in a state.KeyTable: an account's rule
// counters share one map entry and one copy of the account's name. A
// tracked account with two rules (hourly, daily) costs 242 bytes of heap
// at 1M accounts (BenchmarkDecisionScale in package policy, the slope from
// 100k to 1M accounts with the store at rest; measured as the heap's growth
// from an empty store, it was 295 when each key had a map entry and a
// string of its own, 255 after), one with a single rule 156
// (TestMemoryPerKey, 35-byte keys with one bucket: the group, its map
// slot, the name, a 48-byte counter and its buckets). A key whose record is on disk
// stays in memory until Expire has deleted the record, so that no record
// outlives every reference to it.
//
// A counter re-declared with another window (a config reload) keeps its
// units, judged by the new window: each bucket moves to the new bucket
// holding its last instant, so no unit is forgotten early. The writer then
// logs the key's record as memory holds it, which the checkpoint puts in
// place of the old one, so that a restart sees what memory saw.
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
// for the writer. Every write to the log takes the whole queue along, after
// the commits' units (a few dozen bytes each in the record); the next
// commit's write carries it, and its fdatasync makes it durable. When no
// commit comes, the writer writes the queue alone Options.AttributionDelay
// (100ms) after it stopped being empty, or at once when 4,096 wait, without
// an fdatasync of its own (it outlives kill -9, not a power loss, until a
// commit or the sealing of the epoch flushes it), and Close writes what is
// left. A crash thus loses at most the attributions not yet written, which
// is acceptable for what only stands in for a stamp a report lost; it never
// loses anything else (TestCrash checks that what is left of each session's
// attributions is its first ones, without a hole, each to the right
// account). Attribute reads memory only. ForgetAttributions works through
// memory 1,024 entries per hold of that mutex (about 0.1 ms), then deletes
// a prefix of the file's bucket "attributions" (keys: time in ns, then the
// id; value: the account), ExpireBatch records per transaction; queued
// attributions older than its cutoff are no longer written, nor applied by
// a checkpoint. The cutoff is not kept across a restart: one forgotten
// while its record waited in the log comes back if Open replays it, until
// the next ForgetAttributions.
//
// What they cost commits is within the noise of this shared machine
// (BenchmarkCommit, embedded+remember against embedded, in the runs of the
// table above, medians of three per set: 1 session 4,284 and 4,210 against
// 3,233 and 4,278 commits/s; 32 sessions 44,572 and 48,801 against 45,688
// and 56,550); an op allocates about 1 KB more in 13-15 more allocations at
// 1 session, and 0.6 KB in 5-7 at 32: its share of the checkpoint that puts
// the attribution in bbolt. BenchmarkRemember: a call takes 0.21-0.23 µs at
// p50 and 0.6 µs at p99 from 1 session, 0.34-0.35 µs and 0.9-1.0 µs from
// 32, allocating nothing itself (TestRememberAllocs), and the writer takes
// 1.3-2.0 million attributions a second into the log (0.5-0.8 million into
// bbolt before the log). Checkpoints apply them to bbolt more slowly (about
// 350,000 a second, seen in TestMemoryPerAttribution's flood), so a flood
// of Remember alone grows the active log file, each epoch bigger than the
// last while it lasts, and a checkpoint holds its epoch in memory while it
// applies it; mail never comes near such rates, each attribution following
// a commit.
//
// A month of a busy server's mail is millions of attributions, so memory
// holds them compactly: entries of 16 bytes without pointers (time, an
// interned account, the offset of the id) in segments of 1,024 in the order
// remembered, the ids back to back, and a map from the 64-bit hash of an id
// to its entry (the id itself is compared, so a collision never
// misattributes; the rare colliding id has a map of its own).
// TestMemoryPerAttribution measures, for 14-byte Postfix-like ids from
// 2,000 accounts: 72 bytes of heap per attribution after 1 million
// Remember calls and the checkpoints that followed (68 before the log,
// measured the same way; the difference is the writer's and the
// checkpointer's buffers) and 68 after Open loads them; 63 bytes per
// attribution in the file, whose pages are filled to 95% as keys come in
// time order; Open loads 1 million in about 0.6-0.7 s.
package embedded
