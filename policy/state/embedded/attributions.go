package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

var bucketAttribs = []byte("attributions")

// maxAttribID is the longest id Remember takes (Postfix queue ids are 10
// to 20 characters).
const maxAttribID = 255

// maxPendingAttribs bounds the attributions waiting for the writer. It is
// only reached when writes to the log keep failing: Remember then still
// records in memory but reports that the attribution will not outlive the
// process.
const maxPendingAttribs = 1 << 17

// attrFlushAt is how many queued attributions make the writer write them
// without waiting for a commit or AttributionDelay: more than mail ever
// queues between two commits, unless nothing but Remember is called.
const attrFlushAt = 4096

// attrRec is an attribution waiting to be written.
type attrRec struct {
	id, account string
	at          int64 // Unix ns
}

// attribKey is an attribution's key on disk: its time (Unix ns, sign bit
// flipped so that keys sort by time) then its id. The value is the account.
// Keys in time order let ForgetAttributions delete a prefix of the bucket.
func appendAttribKey(buf []byte, at int64, id string) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(at)^1<<63)
	return append(buf, id...)
}

// Remember implements state.Store. It records in memory and queues
// the attribution for the writer, and never waits for the disk. The writer
// takes the whole queue along with its next write to the log, which the
// next commit makes; when no commit comes, it writes the queue alone
// Options.AttributionDelay after it stopped being empty, or as soon as
// attrFlushAt attributions wait, without an fdatasync of their own. So no
// Remember costs an fsync, and a crash loses at most the attributions not
// yet written (kill -9) or not yet flushed by a commit's fdatasync (power
// loss), never anything else. They are only the fallback for reports whose
// stamp was stripped.
//
// The id must be 1 to 255 bytes long. Remembering an id again replaces
// what was remembered of it. When the writes fail and 131,072
// attributions wait, Remember still records in memory but returns an error
// wrapping state.ErrUnavailable: that one will not survive a restart.
func (s *Store) Remember(_ context.Context, id, account string, at time.Time) error {
	if len(id) == 0 || len(id) > maxAttribID {
		return fmt.Errorf("remembering %q: the id must be 1 to %d bytes long", id, maxAttribID)
	}
	if s.closed.Load() {
		return fmt.Errorf("remembering %s: %w", id, errClosed)
	}
	ns := unixNano(at)
	s.amu.Lock()
	s.attr.remember(id, account, ns)
	s.amu.Unlock()

	s.qmu.Lock()
	if s.closed.Load() {
		s.qmu.Unlock()
		return fmt.Errorf("remembering %s: %w", id, errClosed)
	}
	if len(s.attrQueue) >= maxPendingAttribs {
		s.qmu.Unlock()
		return fmt.Errorf("remembering %s: %w: %d attributions already wait for the state file; this one will not survive a restart", id, state.ErrUnavailable, maxPendingAttribs)
	}
	s.attrQueue = append(s.attrQueue, attrRec{id: id, account: account, at: ns})
	n := len(s.attrQueue)
	s.qmu.Unlock()
	switch n {
	case 1:
		select {
		case s.attrWake <- struct{}{}:
		default:
		}
	case attrFlushAt:
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Attribute implements state.Store. It reads memory only.
func (s *Store) Attribute(_ context.Context, id string) (string, time.Time, bool, error) {
	s.amu.Lock()
	defer s.amu.Unlock()
	account, at, ok := s.attr.attribute(id)
	return account, at, ok, nil
}

// ForgetAttributions implements state.Store. Memory is worked
// through one segment (attrSegSize entries) per hold of the lock that
// Remember needs, the file in transactions of at most ExpireBatch records,
// so that Remember and Attribute keep flowing meanwhile.
func (s *Store) ForgetAttributions(ctx context.Context, before time.Time) error {
	if s.closed.Load() {
		return fmt.Errorf("forgetting attributions: %w", errClosed)
	}
	cut := unixNano(before)
	// The writer no longer writes attributions this old that are still
	// queued: they would outlive their forgetting on disk until the next
	// call.
	s.attrCut.Store(cut)
	for {
		s.amu.Lock()
		more := s.attr.forgetSome(cut, attrSegSize)
		s.amu.Unlock()
		if !more {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("forgetting attributions: %w", err)
		}
	}
	if err := s.deleteBefore(ctx, bucketAttribs, appendAttribKey(nil, cut, "")); err != nil {
		return fmt.Errorf("forgetting attributions: %w", err)
	}
	return nil
}

// deleteBefore deletes the records of bucket whose key sorts before cut,
// in transactions of at most ExpireBatch records.
func (s *Store) deleteBefore(ctx context.Context, bucket, cut []byte) error {
	// Most calls find nothing to delete: a read-only look costs no write
	// transaction and no fsync.
	var any bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucket).Cursor().First()
		any = k != nil && bytes.Compare(k, cut) < 0
		return nil
	}); err != nil {
		return fmt.Errorf("%w: reading %s: %w", state.ErrUnavailable, s.path, err)
	}
	if !any {
		return nil
	}
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			var keys [][]byte
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, cut) < 0 && len(keys) < s.expireBatch; k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(keys)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: deleting from %s: %w", state.ErrUnavailable, s.path, err)
		}
		if n < s.expireBatch {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// requeueAttribs puts back, ahead of those queued since, attributions whose
// write failed. Past maxPendingAttribs the oldest are dropped: they
// stay in memory but will not outlive the process.
func (s *Store) requeueAttribs(attrs []attrRec) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := append(attrs, s.attrQueue...)
	if len(q) > maxPendingAttribs {
		q = q[len(q)-maxPendingAttribs:]
	}
	s.attrQueue = q
}

// loadAttribs reads the attributions of the file into memory, oldest
// first.
func (s *Store) loadAttribs() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAttribs).ForEach(func(k, v []byte) error {
			if len(k) <= 8 {
				return fmt.Errorf("attribution record %x: key too short", k)
			}
			at := int64(binary.BigEndian.Uint64(k) ^ 1<<63)
			s.attr.remember(string(k[8:]), string(v), at)
			return nil
		})
	})
}
