package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/msgate/msgate/policy/state"
)

var bucketComplaints = []byte("complaints")

// complaints is the file's complaints in memory, guarded by Store.cmu.
// They are few (a complaint is a recipient pressing "junk"), so each is
// kept twice: in time order, and in time order per account.
type complaints struct {
	all       []state.Complaint
	byAccount map[string][]state.Complaint
	reports   map[string]struct{} // the report ids of all
}

func newComplaints() complaints {
	return complaints{byAccount: make(map[string][]state.Complaint), reports: make(map[string]struct{})}
}

// insertByTime inserts c after the complaints received at or before c.At.
func insertByTime(list []state.Complaint, c state.Complaint) []state.Complaint {
	i := sort.Search(len(list), func(i int) bool { return list[i].At.After(c.At) })
	return slices.Insert(list, i, c)
}

// since is the complaints of list received at or after t, copied.
func since(list []state.Complaint, t time.Time) []state.Complaint {
	i := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(t) })
	if i == len(list) {
		return nil
	}
	return slices.Clone(list[i:])
}

func (cs *complaints) add(c state.Complaint) {
	cs.reports[c.ReportID] = struct{}{}
	cs.all = insertByTime(cs.all, c)
	cs.byAccount[c.Account] = insertByTime(cs.byAccount[c.Account], c)
}

// forget drops the complaints received before t.
func (cs *complaints) forget(t time.Time) {
	n := sort.Search(len(cs.all), func(i int) bool { return !cs.all[i].At.Before(t) })
	for _, c := range cs.all[:n] {
		delete(cs.reports, c.ReportID)
		list := cs.byAccount[c.Account]
		if len(list) > 0 && list[0].At.Before(t) {
			k := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(t) })
			if k == len(list) {
				delete(cs.byAccount, c.Account)
			} else {
				cs.byAccount[c.Account] = slices.Clone(list[k:])
			}
		}
	}
	cs.all = slices.Clone(cs.all[n:])
}

// complaintKey is a complaint's key on disk: its time (Unix seconds with
// the sign bit flipped, then nanoseconds, so that keys sort by time for any
// time.Time) then its report id. The value is the complaint in JSON.
func complaintKey(at time.Time, reportID string) []byte {
	k := make([]byte, 0, 12+len(reportID))
	k = binary.BigEndian.AppendUint64(k, uint64(at.Unix())^1<<63)
	k = binary.BigEndian.AppendUint32(k, uint32(at.Nanosecond()))
	return append(k, reportID...)
}

// AddComplaint implements state.Store. A new complaint is on disk
// (fsync'd) when AddComplaint returns added true; a known report id writes
// nothing and returns false. Complaints are rare: each has its own
// transaction, and adds are serialized, so two concurrent adds of one report
// count it once.
func (s *Store) AddComplaint(_ context.Context, c state.Complaint) (bool, error) {
	if len(c.ReportID) > bolt.MaxKeySize-12 {
		return false, fmt.Errorf("recording a complaint about %s: report id longer than %d bytes", c.Account, bolt.MaxKeySize-12)
	}
	if s.closed.Load() {
		return false, fmt.Errorf("recording a complaint about %s: %w", c.Account, errClosed)
	}
	v, err := json.Marshal(c)
	if err != nil {
		return false, fmt.Errorf("recording a complaint about %s: %w", c.Account, err)
	}
	s.complaintWriteMu.Lock()
	defer s.complaintWriteMu.Unlock()
	s.cmu.RLock()
	_, known := s.compl.reports[c.ReportID]
	s.cmu.RUnlock()
	if known {
		return false, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketComplaints).Put(complaintKey(c.At, c.ReportID), v)
	})
	if err != nil {
		return false, fmt.Errorf("%w: recording a complaint about %s in %s: %w", state.ErrUnavailable, c.Account, s.path, err)
	}
	s.cmu.Lock()
	s.compl.add(c)
	s.cmu.Unlock()
	return true, nil
}

// ComplaintsSince implements state.Store. It reads memory only, and
// allocates nothing for an account without complaints since then: it is on
// the per-message path.
func (s *Store) ComplaintsSince(_ context.Context, account string, t time.Time) ([]state.Complaint, error) {
	s.cmu.RLock()
	defer s.cmu.RUnlock()
	list := s.compl.byAccount[account]
	if len(list) == 0 || list[len(list)-1].At.Before(t) {
		return nil, nil
	}
	return since(list, t), nil
}

// ComplainedSince implements state.Store. It reads memory only.
func (s *Store) ComplainedSince(_ context.Context, t time.Time) ([]state.Complaint, error) {
	s.cmu.RLock()
	defer s.cmu.RUnlock()
	return since(s.compl.all, t), nil
}

// ForgetComplaints implements state.Store: it deletes the complaints
// received before t from the file (transactions of at most ExpireBatch
// records), then from memory with their report ids. A failure leaves memory
// as it was: the report ids stay known until a later call succeeds.
func (s *Store) ForgetComplaints(ctx context.Context, t time.Time) error {
	if s.closed.Load() {
		return fmt.Errorf("forgetting complaints: %w", errClosed)
	}
	s.complaintWriteMu.Lock()
	defer s.complaintWriteMu.Unlock()
	if err := s.deleteBefore(ctx, bucketComplaints, complaintKey(t, "")); err != nil {
		return fmt.Errorf("forgetting complaints: %w", err)
	}
	s.cmu.Lock()
	s.compl.forget(t)
	s.cmu.Unlock()
	return nil
}

func (s *Store) loadComplaints() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketComplaints).ForEach(func(k, v []byte) error {
			var c state.Complaint
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("complaint record %q: %w", k, err)
			}
			if _, dup := s.compl.reports[c.ReportID]; !dup {
				s.compl.add(c)
			}
			return nil
		})
	})
}
