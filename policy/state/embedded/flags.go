package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

var bucketFlags = []byte("flags")

// SetFlag implements state.Store. The flag is on disk when SetFlag returns.
func (s *Store) SetFlag(_ context.Context, f state.Flag) error {
	if len(f.Account) == 0 || len(f.Account) > bolt.MaxKeySize {
		return fmt.Errorf("flagging %q: the account must be 1 to %d bytes long", f.Account, bolt.MaxKeySize)
	}
	v, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("flagging %s: %w", f.Account, err)
	}
	s.flagWriteMu.Lock()
	defer s.flagWriteMu.Unlock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFlags).Put([]byte(f.Account), v)
	})
	if err != nil {
		return fmt.Errorf("%w: flagging %s in %s: %w", state.ErrUnavailable, f.Account, s.path, err)
	}
	s.flags.Set(f)
	return nil
}

// ClearFlag implements state.Store. The flag is gone from disk when
// ClearFlag returns.
func (s *Store) ClearFlag(_ context.Context, account string) (bool, error) {
	s.flagWriteMu.Lock()
	defer s.flagWriteMu.Unlock()
	if _, ok, _ := s.GetFlag(context.Background(), account); !ok {
		return false, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFlags).Delete([]byte(account))
	})
	if err != nil {
		return false, fmt.Errorf("%w: clearing the flag of %s in %s: %w", state.ErrUnavailable, account, s.path, err)
	}
	s.flags.Delete(account)
	return true, nil
}

// GetFlag implements state.Store. It reads memory only: it is on the
// per-message path.
func (s *Store) GetFlag(_ context.Context, account string) (state.Flag, bool, error) {
	f, ok := s.flags.Get(account)
	return f, ok, nil
}

// Account implements state.Store: the flag and the complaints, both in
// memory.
func (s *Store) Account(ctx context.Context, account string, since time.Time) (state.Flag, bool, []state.Complaint, error) {
	f, ok, _ := s.GetFlag(ctx, account)
	cs, err := s.ComplaintsSince(ctx, account, since)
	return f, ok, cs, err
}

// ListFlags implements state.Store, ordered by account.
func (s *Store) ListFlags(_ context.Context) ([]state.Flag, error) {
	return s.flags.List(), nil
}

func (s *Store) loadFlags() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFlags).ForEach(func(k, v []byte) error {
			var f state.Flag
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("flag of %q: %w", k, err)
			}
			s.flags.Set(f)
			return nil
		})
	})
}

// Scan implements state.Store, ordered by key. Like Expire it holds the
// lock that decisions need for ExpireBatch keys at a time only.
func (s *Store) Scan(ctx context.Context, prefix string, now time.Time) ([]state.KeyUsage, error) {
	var out []state.KeyUsage
	s.mu.Lock()
	seen := 0
	var err error
	// Ranging across unlocked pauses: see Expire.
	s.counters.Range(func(k state.Key, c *counter) bool {
		if k.HasPrefix(prefix) {
			c.trim(now)
			if !c.idle() {
				out = append(out, state.KeyUsage{Key: k.String(), Window: c.window, Usage: state.Usage{Committed: c.total, Reserved: int64(c.reserved)}})
			}
		}
		if seen++; seen%s.expireBatch == 0 {
			s.mu.Unlock()
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("scanning %q: %w", prefix, cerr)
				s.mu.Lock()
				return false
			}
			s.mu.Lock()
		}
		return true
	})
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b state.KeyUsage) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
