package embedded

import (
	bolt "go.etcd.io/bbolt"
)

// DiskKeys counts the counter records in the file.
func (s *Store) DiskKeys() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCounters).Stats().KeyN
		return nil
	})
	return n, err
}

// HighWater is the size of the file that bbolt uses: its pages up to the
// highest one allocated. The file itself grows in chunks of up to 16 MiB.
func (s *Store) HighWater() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}

// DiskRecords counts the records of one of the file's buckets:
// "complaints" or "attributions".
func (s *Store) DiskRecords(bucket string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	})
	return n, err
}

// PendingAttributions is how many attributions wait for the writer.
func (s *Store) PendingAttributions() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.attrQueue)
}

// Abandon stops the store as a crash would leave its files: what is
// written to the log stays there, unapplied, for the next Open to replay.
func (s *Store) Abandon() error { return s.close(false) }

// OpenSmallEpochs opens the store with epochs sealed every 2 KiB of log and
// log files of 16 KiB, so that checkpoints run all the time and the files
// are reused and grow (TestCrash).
func OpenSmallEpochs(opts Options) (*Store, error) {
	opts.ckptBytes = 2 << 10
	opts.walSize = 16 << 10
	return Open(opts)
}

// LogEpoch is the epoch the writer is writing; read it before anything
// is written (the writer changes it).
func (s *Store) LogEpoch() uint64 { return s.wal.epoch }
