package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/msgate/msgate/policy/state"
)

// Options configure a Store.
type Options struct {
	// Client is the connection to Redis: a single node, Sentinel or
	// Cluster (goredis.NewUniversalClient). The store closes it.
	Client goredis.UniversalClient
	// Prefix starts every key, in braces so that a Cluster keeps them in
	// one hash slot; default "msgate". Daemons that share state use the
	// same prefix.
	Prefix string
	// Timeout bounds each call when the caller's context has no earlier
	// deadline; default 1s.
	Timeout time.Duration
	// ReservationTTL is how long a reservation counts when its daemon never
	// commits or releases it (it died): default 1h, the longest a milter
	// session waits for the end of a message.
	ReservationTTL time.Duration
}

// Store is a state.Store on Redis.
type Store struct {
	c       goredis.UniversalClient
	p       string // "{prefix}:"
	timeout time.Duration
	resTTL  time.Duration
	// instance names this daemon's reservations among everyone's.
	instance string

	mu      sync.Mutex
	pending map[uint64]holding
	nextID  atomic.Uint64

	batch                       *batcher
	reserves, commits, accounts *kind
	attrs                       attrWriter

	standings standings
	stop      context.CancelFunc // ends the subscription of standings
}

// ref is one counter a reservation holds a unit against: its key, its
// hash in Redis (s.counterKey(key), kept for the commit) and its window.
type ref struct {
	key, hash string
	window    time.Duration
}

// holding is a reservation this daemon made: its member of the held set,
// its counters and its spares.
type holding struct {
	member string
	refs   []ref
	spare  int
}

var _ state.Store = (*Store)(nil)

// New returns a store over a Redis client. It does not wait for Redis: the
// first call reports whether Redis answers (see Ping), and the
// subscription that keeps standings fresh (standings.go) connects in the
// background.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redis: no client")
	}
	if opts.Prefix == "" {
		opts.Prefix = "msgate"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis: prefix %q: braces are added by msgate", opts.Prefix)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.ReservationTTL <= 0 {
		opts.ReservationTTL = time.Hour
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &Store{
		c: opts.Client, p: "{" + opts.Prefix + "}:", timeout: opts.Timeout, resTTL: opts.ReservationTTL,
		instance: hex.EncodeToString(b[:]), pending: make(map[uint64]holding),
	}
	s.batch = &batcher{s: s}
	s.reserves = &kind{script: reserveScript, keys: []string{s.heldKey()}, ruleLen: 5, head: func(batch []*call) []any {
		now := latest(batch)
		return []any{len(batch), now.UnixMilli(), now.Add(s.resTTL).UnixMilli(), s.resTTL.Milliseconds(), s.counterKey("")}
	}}
	count := func(batch []*call) []any { return []any{len(batch)} }
	s.commits = &kind{script: commitScript, head: count, keys: []string{s.heldKey()}, ruleLen: 4}
	s.accounts = &kind{script: accountScript, head: count, keys: []string{s.flagsKey(), s.reportsKey()}}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.subscribe(ctx)
	s.attrs.start(s)
	return s, nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return unavailable(s.c.Ping(ctx).Err())
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// unavailable marks an error of the connection or the server as
// state.ErrUnavailable, so that the policy applies its failure action.
func unavailable(err error) error {
	if err == nil || errors.Is(err, goredis.Nil) {
		return err
	}
	return fmt.Errorf("%w: redis: %w", state.ErrUnavailable, err)
}

func (s *Store) counterKey(key string) string { return s.p + "c:" + key }
func (s *Store) heldKey() string              { return s.p + "held" }

// member names a reservation in the held set: this daemon, the id, and
// the counters it holds a unit against (see countersOf in the scripts).
func (s *Store) member(id uint64, counters []state.Counter) string {
	var b strings.Builder
	b.WriteString(s.instance)
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(id, 10))
	for _, c := range counters {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(c.Key)))
		b.WriteByte(':')
		b.WriteString(c.Key)
	}
	return b.String()
}

// keyTTL is how long a counter's keys outlive their last write: the window
// and two buckets, after which every unit in them has expired anyway.
func (s *Store) keyTTL(window time.Duration) int64 {
	ttl := window + 2*state.BucketWidth(window)
	if ttl < s.resTTL {
		ttl = s.resTTL // reservations must not vanish with an idle counter
	}
	return max(ttl.Milliseconds(), 1)
}

// Reserve implements state.Store. Reservations that arrive while another
// batch is on its way to Redis wait for it and then go together, in one
// script (see batcher).
func (s *Store) Reserve(ctx context.Context, counters []state.Counter, now time.Time) (state.Outcome, error) {
	return s.ReserveSpare(ctx, counters, 0, 0, now)
}

// ReserveSpare implements state.Store: the spares come in the same script
// as the unit. A counter that has room but for other transactions'
// unsettled spares is asked again after a pause (1 ms, doubling up to
// 16 ms) until the timeout; then the refusal stands.
func (s *Store) ReserveSpare(ctx context.Context, counters []state.Counter, spare, own int, now time.Time) (state.Outcome, error) {
	if len(counters) == 0 {
		return state.Outcome{Admitted: true, Blocked: -1}, nil
	}
	id := s.nextID.Add(1)
	member := s.member(id, counters)
	r := newCall(s.reserves, now)
	r.keys = make([]string, 0, len(counters))
	r.rules = make([]rule, 0, len(counters))
	r.lead = 4
	r.args = []any{member, len(counters), max(spare, 0), max(own, 0)}
	r.undo = func(reply []any) {
		if len(reply) > 1 {
			if n, _ := reply[0].(int64); n == 1 {
				g, _ := reply[1].(int64)
				s.releaseMembers(r.keys, withSpares(member, int(g)))
			}
		}
	}
	for _, c := range counters {
		r.keys = append(r.keys, s.counterKey(c.Key))
		soft := 0
		if c.Soft {
			soft = 1
		}
		r.rules = append(r.rules, rule{int64(c.Window), c.Limit, int64(soft), state.Oldest(now, c.Window), s.keyTTL(c.Window)})
	}
	var deadline time.Time // set at the first wait
	pause := time.Millisecond
	for rebuckets := 0; rebuckets < 3; {
		reply, err := s.batch.do(ctx, r)
		if err != nil {
			return state.Outcome{}, err
		}
		if i, ok := rebucketAt(reply); ok {
			if err := s.rebucket(ctx, counters[i].Key, counters[i].Window); err != nil {
				return state.Outcome{}, err
			}
			r.reset()
			rebuckets++
			continue
		}
		if len(reply) == 0 {
			return state.Outcome{}, fmt.Errorf("%w: redis: empty reply to reserve", state.ErrUnavailable)
		}
		word, _ := reply[0].(string)
		if n, _ := reply[0].(int64); n == 0 || word == "wait" {
			out := state.Outcome{Blocked: -1}
			if len(reply) == 3 {
				b, _ := reply[1].(int64)
				u, _ := reply[2].(int64)
				out.Blocked, out.Used = int(b), u
			}
			if word == "wait" && deadline.IsZero() {
				deadline = time.Now().Add(s.timeout)
			}
			if word == "wait" && time.Now().Add(pause).Before(deadline) {
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return state.Outcome{}, unavailable(ctx.Err())
				}
				pause = min(2*pause, 16*time.Millisecond)
				r.reset()
				continue
			}
			return out, nil
		}
		if len(reply) < 2 {
			return state.Outcome{}, fmt.Errorf("%w: redis: short reply to reserve", state.ErrUnavailable)
		}
		g, _ := reply[1].(int64)
		out := state.Outcome{Admitted: true, Blocked: -1, Reservation: state.Reservation{ID: id, Spare: int(g)}}
		for _, v := range reply[2:] {
			i, _ := v.(int64)
			out.OverSoft = append(out.OverSoft, int(i))
		}
		refs := make([]ref, len(counters))
		for i, c := range counters {
			refs[i] = ref{c.Key, r.keys[i], c.Window}
		}
		s.mu.Lock()
		s.pending[id] = holding{withSpares(member, int(g)), refs, int(g)}
		s.mu.Unlock()
		return out, nil
	}
	return state.Outcome{}, fmt.Errorf("%w: redis: the windows of %s keep changing", state.ErrUnavailable, counters[0].Key)
}

// withSpares is a member's name once the script gave it g spares: "#g"
// before its counters, as the script names it.
func withSpares(member string, g int) string {
	if g <= 0 {
		return member
	}
	i := strings.IndexByte(member, '|')
	if i < 0 {
		i = len(member)
	}
	return member[:i] + "#" + strconv.Itoa(g) + member[i:]
}

// releaseMembers gives back a reservation its caller never learned of
// (keys: its counters' hashes); if Redis does not answer, it lapses.
func (s *Store) releaseMembers(keys []string, member string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_ = releaseScript.Run(ctx, s.c, append([]string{s.heldKey()}, keys...), member).Err()
}

// rebucketAt reports a script's "rebucket" reply and the counter it names.
func rebucketAt(reply []any) (int, bool) {
	if len(reply) == 0 {
		return 0, false
	}
	if s, _ := reply[0].(string); s != "rebucket" {
		return 0, false
	}
	i := int64(0)
	if len(reply) > 1 {
		i, _ = reply[1].(int64)
	}
	return int(i), true
}

// rebucket moves a counter's units to the buckets of a new window (a rule
// re-declared by a reload, on this daemon or another), as state.Rebucket
// says. The hash is watched: a write by another daemon meanwhile makes it
// start again.
func (s *Store) rebucket(ctx context.Context, key string, window time.Duration) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	c := s.counterKey(key)
	for range 5 {
		err := s.c.Watch(ctx, func(tx *goredis.Tx) error {
			all, err := tx.HGetAll(ctx, c).Result()
			if err != nil {
				return err
			}
			from, err := strconv.ParseInt(all["w"], 10, 64)
			if err != nil || time.Duration(from) == window {
				return nil // gone, or done by someone else
			}
			moved := map[int64]int64{}
			low := int64(math.MaxInt64)
			for f, v := range all {
				idx, err1 := strconv.ParseInt(f, 10, 64)
				n, err2 := strconv.ParseInt(v, 10, 64)
				if err1 != nil || err2 != nil {
					continue
				}
				j := state.Rebucket(idx, time.Duration(from), window)
				moved[j] += n
				low = min(low, j)
			}
			_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				p.Del(ctx, c)
				for idx, n := range moved {
					p.HSet(ctx, c, strconv.FormatInt(idx, 10), n)
				}
				// Moving units between buckets leaves the total of
				// buckets and reservations as it was, and the spares.
				t, _ := strconv.ParseInt(all["t"], 10, 64)
				sp, _ := strconv.ParseInt(all["s"], 10, 64)
				p.HSet(ctx, c, "w", int64(window), "t", t, "s", sp)
				if len(moved) > 0 {
					p.HSet(ctx, c, "o", low)
				}
				p.PExpire(ctx, c, time.Duration(s.keyTTL(window))*time.Millisecond)
				return nil
			})
			return err
		}, c)
		if !errors.Is(err, goredis.TxFailedErr) {
			return unavailable(err)
		}
	}
	return fmt.Errorf("%w: redis: %s changes too often to re-window", state.ErrUnavailable, key)
}

// Commit implements state.Store.
func (s *Store) Commit(ctx context.Context, r state.Reservation, now time.Time) error {
	return s.CommitAll(ctx, []state.Reservation{r}, now)
}

// CommitAll implements state.Store: one script for the whole message, each
// counter touched once however many of the message's units it counts, and
// the commits of other sessions that arrive meanwhile in the same batch.
func (s *Store) CommitAll(ctx context.Context, rs []state.Reservation, now time.Time) error {
	if len(rs) == 0 {
		return nil
	}
	type group struct {
		ref
		units, back, settle int
	}
	// A message holds a few counters: a slice searched beats a map.
	groups := make([]group, 0, 4)
	members := make([]any, 0, len(rs))
	s.mu.Lock()
	for _, r := range rs {
		h, ok := s.pending[r.ID]
		if !ok {
			s.mu.Unlock()
			return state.ErrUnknownReservation
		}
		if err := state.CheckSpent(state.Reservation{ID: r.ID, Spare: h.spare, Spent: r.Spent}); err != nil {
			s.mu.Unlock()
			return err
		}
		members = append(members, h.member)
		for _, f := range h.refs {
			i := slices.IndexFunc(groups, func(g group) bool { return g.ref == f })
			if i < 0 {
				i = len(groups)
				groups = append(groups, group{ref: f})
			}
			g := &groups[i]
			g.units += 1 + r.Spent
			g.back += h.spare - r.Spent
			g.settle += h.spare
		}
	}
	s.mu.Unlock()
	// Whatever the outcome, the reservations are done with here: after an
	// error Redis may or may not have counted them (counted too often
	// rather than lost), and a unit it did not count lapses after
	// ReservationTTL. Nobody commits or releases them again.
	defer s.forget(rs)
	c := newCall(s.commits, now)
	c.keys = make([]string, 0, len(groups))
	c.rules = make([]rule, 0, len(groups))
	c.lead, c.per = 2, 3
	c.args = make([]any, 0, 2+3*len(groups)+len(members))
	c.args = append(c.args, len(groups), len(members))
	for _, g := range groups {
		c.keys = append(c.keys, g.hash)
		need := max((g.window + state.BucketWidth(g.window)).Milliseconds(), 1)
		c.rules = append(c.rules, rule{int64(g.window), state.BucketOf(now, g.window), s.keyTTL(g.window), need})
		c.args = append(c.args, g.units, g.back, g.settle)
	}
	c.args = append(c.args, members...)
	for range 3 {
		reply, err := s.batch.do(ctx, c)
		if err != nil {
			return err
		}
		if i, ok := rebucketAt(reply); ok {
			if err := s.rebucket(ctx, groups[i].key, groups[i].window); err != nil {
				return err
			}
			c.reset()
			continue
		}
		if len(reply) > 0 {
			if word, _ := reply[0].(string); word == "unknown" {
				return fmt.Errorf("%w (it lapsed after %v)", state.ErrUnknownReservation, s.resTTL)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: redis: windows keep changing", state.ErrUnavailable)
}

func (s *Store) forget(rs []state.Reservation) {
	s.mu.Lock()
	for _, r := range rs {
		delete(s.pending, r.ID)
	}
	s.mu.Unlock()
}

// Release implements state.Store.
func (s *Store) Release(ctx context.Context, r state.Reservation) error {
	s.mu.Lock()
	h, ok := s.pending[r.ID]
	s.mu.Unlock()
	if !ok {
		return state.ErrUnknownReservation
	}
	keys := make([]string, 0, 1+len(h.refs))
	keys = append(keys, s.heldKey())
	for _, f := range h.refs {
		keys = append(keys, f.hash)
	}
	// As in CommitAll, done with whatever happens: a unit Redis did not
	// give back lapses.
	defer s.forget([]state.Reservation{r})
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := releaseScript.Run(ctx, s.c, keys, h.member).Int()
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return fmt.Errorf("%w (it lapsed after %v)", state.ErrUnknownReservation, s.resTTL)
	}
	return nil
}

// Usage implements state.Store.
func (s *Store) Usage(ctx context.Context, key string, window time.Duration, now time.Time) (state.Usage, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.usage(ctx, key, window, now)
}

func (s *Store) usage(ctx context.Context, key string, window time.Duration, now time.Time) (state.Usage, error) {
	keys := []string{s.counterKey(key), s.heldKey()}
	for range 3 {
		reply, err := usageScript.Run(ctx, s.c, keys, int64(window), state.Oldest(now, window), now.UnixMilli(), s.counterKey("")).Slice()
		if err != nil {
			return state.Usage{}, unavailable(err)
		}
		if _, ok := rebucketAt(reply); ok {
			if err := s.rebucket(ctx, key, window); err != nil {
				return state.Usage{}, err
			}
			continue
		}
		if len(reply) != 2 {
			return state.Usage{}, fmt.Errorf("%w: redis: unexpected reply to usage", state.ErrUnavailable)
		}
		c, _ := reply[0].(int64)
		r, _ := reply[1].(int64)
		return state.Usage{Committed: c, Reserved: r}, nil
	}
	return state.Usage{}, fmt.Errorf("%w: redis: the window of %s keeps changing", state.ErrUnavailable, key)
}

// scanKeys lists the counters whose key starts with prefix.
func (s *Store) scanKeys(ctx context.Context, prefix string) ([]string, error) {
	match := s.counterKey(globEscape(prefix)) + "*"
	// Every key is in one hash slot: on a Cluster, scan the node that
	// serves it.
	var scanner goredis.Cmdable = s.c
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, s.counterKey(""))
		if err != nil {
			return nil, unavailable(err)
		}
		scanner = node
	}
	var keys []string
	var cursor uint64
	for {
		batch, next, err := scanner.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, k := range batch {
			keys = append(keys, strings.TrimPrefix(k, s.counterKey("")))
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Scan implements state.Store. It is for the admin's status view, not the
// per-message path: one SCAN and one read per counter.
func (s *Store) Scan(ctx context.Context, prefix string, now time.Time) ([]state.KeyUsage, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	keys, err := s.scanKeys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []state.KeyUsage
	for _, k := range keys {
		w, err := s.c.HGet(ctx, s.counterKey(k), "w").Int64()
		if errors.Is(err, goredis.Nil) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, unavailable(err)
		}
		u, err := s.usage(ctx, k, time.Duration(w), now)
		if err != nil {
			return nil, err
		}
		out = append(out, state.KeyUsage{Key: k, Window: time.Duration(w), Usage: u})
	}
	return out, nil
}

// Expire implements state.Store. Redis drops a counter's keys by itself
// once they outlive their window (every write sets their TTL); Expire
// drops the buckets of live counters that left their window.
func (s *Store) Expire(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 60*s.timeout)
	defer cancel()
	keys, err := s.scanKeys(ctx, "")
	if err != nil {
		return err
	}
	for _, k := range keys {
		w, err := s.c.HGet(ctx, s.counterKey(k), "w").Int64()
		if errors.Is(err, goredis.Nil) {
			continue // only reservations, or expired meanwhile
		}
		if err != nil {
			return unavailable(err)
		}
		err = expireScript.Run(ctx, s.c, []string{s.counterKey(k)}, state.Oldest(now, time.Duration(w))).Err()
		if err != nil {
			return unavailable(err)
		}
	}
	for {
		left, err := sweepScript.Run(ctx, s.c, []string{s.heldKey()}, now.UnixMilli(), s.counterKey(""), forgetBatch).Int()
		if err != nil {
			return unavailable(err)
		}
		if left == 0 {
			return nil
		}
	}
}

// Close implements state.Store.
// The queue ids that wait are written first, within the timeout.
func (s *Store) Close() error {
	s.stop()
	s.attrs.close()
	return s.c.Close()
}

// Flags.

func (s *Store) flagsKey() string { return s.p + "flags" }

// SetFlag implements state.Store.
func (s *Store) SetFlag(ctx context.Context, f state.Flag) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.c.HSet(ctx, s.flagsKey(), f.Account, b).Err(); err != nil {
		return unavailable(err)
	}
	s.publish(ctx, f.Account)
	return nil
}

// ClearFlag implements state.Store.
func (s *Store) ClearFlag(ctx context.Context, account string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.c.HDel(ctx, s.flagsKey(), account).Result()
	if err != nil {
		return false, unavailable(err)
	}
	if n > 0 {
		s.publish(ctx, account)
	}
	return n > 0, nil
}

// GetFlag implements state.Store.
func (s *Store) GetFlag(ctx context.Context, account string) (state.Flag, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.c.HGet(ctx, s.flagsKey(), account).Bytes()
	if errors.Is(err, goredis.Nil) {
		return state.Flag{}, false, nil
	}
	if err != nil {
		return state.Flag{}, false, unavailable(err)
	}
	var f state.Flag
	if err := json.Unmarshal(b, &f); err != nil {
		return state.Flag{}, false, fmt.Errorf("redis: the flag of %q: %w", account, err)
	}
	return f, true, nil
}

// Account implements state.Store: one script, one round trip on the
// per-message path, shared with the other sessions' that arrive meanwhile.
func (s *Store) Account(ctx context.Context, account string, since time.Time) (state.Flag, bool, []state.Complaint, error) {
	e, ok, gen := s.cached(account, since)
	if ok {
		return e.flag, e.flagged, slices.Clone(e.complaints), nil
	}
	c := newCall(s.accounts, since)
	c.keys = []string{s.accountComplaintsKey(account)}
	c.args = []any{account, sinceScore(since)}
	raw, err := s.batch.do(ctx, c)
	if err != nil {
		return state.Flag{}, false, nil, err
	}
	reply := make([]string, len(raw))
	for i, v := range raw {
		reply[i], _ = v.(string)
	}
	if len(reply) == 0 {
		return state.Flag{}, false, nil, fmt.Errorf("%w: redis: empty reply to account", state.ErrUnavailable)
	}
	var f state.Flag
	flagged := reply[0] != ""
	if flagged {
		if err := json.Unmarshal([]byte(reply[0]), &f); err != nil {
			return state.Flag{}, false, nil, fmt.Errorf("redis: the flag of %q: %w", account, err)
		}
	}
	var cs []state.Complaint
	for i := 1; i+1 < len(reply); i += 2 {
		if reply[i+1] == "" {
			continue // forgotten meanwhile
		}
		var rec complaintRec
		if err := json.Unmarshal([]byte(reply[i+1]), &rec); err != nil {
			return state.Flag{}, false, nil, fmt.Errorf("redis: complaint %q: %w", reply[i], err)
		}
		cs = append(cs, state.Complaint{Account: rec.Account, ReportID: reply[i], At: time.Unix(0, rec.At).UTC()})
	}
	slices.SortStableFunc(cs, func(a, b state.Complaint) int { return a.At.Compare(b.At) })
	s.keep(account, gen, standing{since: since, flag: f, flagged: flagged, complaints: slices.Clone(cs)})
	return f, flagged, cs, nil
}

// ListFlags implements state.Store, ordered by account.
func (s *Store) ListFlags(ctx context.Context) ([]state.Flag, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	all, err := s.c.HGetAll(ctx, s.flagsKey()).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]state.Flag, 0, len(all))
	for account, raw := range all {
		var f state.Flag
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return nil, fmt.Errorf("redis: the flag of %q: %w", account, err)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b state.Flag) int { return strings.Compare(a.Account, b.Account) })
	return out, nil
}

// Complaints: a hash of the reports by id (the complaint as JSON), all
// report ids by time, and each account's report ids by time. Times are
// scored in microseconds, which a Redis score holds exactly.

func (s *Store) reportsKey() string                   { return s.p + "complaints" }
func (s *Store) complaintsByTimeKey() string          { return s.p + "complaints-by-time" }
func (s *Store) accountComplaintsKey(a string) string { return s.p + "complaints-of:" + a }

type complaintRec struct {
	Account string `json:"account"`
	At      int64  `json:"at"` // unix ns
}

// scoreOf is a time as a score; since rounds up, so that a bound never
// takes in what came before it.
func scoreOf(t time.Time) int64 { return t.UnixMicro() }
func sinceScore(t time.Time) string {
	us := t.UnixMicro()
	if t.Sub(time.UnixMicro(us)) > 0 {
		us++
	}
	return strconv.FormatInt(us, 10)
}

// AddComplaint implements state.Store.
func (s *Store) AddComplaint(ctx context.Context, c state.Complaint) (bool, error) {
	b, err := json.Marshal(complaintRec{Account: c.Account, At: c.At.UnixNano()})
	if err != nil {
		return false, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := addComplaintScript.Run(ctx, s.c,
		[]string{s.reportsKey(), s.complaintsByTimeKey(), s.accountComplaintsKey(c.Account)},
		c.ReportID, scoreOf(c.At), b).Int()
	if err != nil {
		return false, unavailable(err)
	}
	if n == 1 {
		s.publish(ctx, c.Account)
	}
	return n == 1, nil
}

func (s *Store) complaints(ctx context.Context, byTime, since string) ([]state.Complaint, error) {
	ids, err := s.c.ZRangeByScore(ctx, byTime, &goredis.ZRangeBy{Min: since, Max: "+inf"}).Result()
	if err != nil || len(ids) == 0 {
		return nil, unavailable(err)
	}
	raws, err := s.c.HMGet(ctx, s.reportsKey(), ids...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]state.Complaint, 0, len(ids))
	for i, raw := range raws {
		str, ok := raw.(string)
		if !ok {
			continue // forgotten meanwhile
		}
		var rec complaintRec
		if err := json.Unmarshal([]byte(str), &rec); err != nil {
			return nil, fmt.Errorf("redis: complaint %q: %w", ids[i], err)
		}
		out = append(out, state.Complaint{Account: rec.Account, ReportID: ids[i], At: time.Unix(0, rec.At).UTC()})
	}
	slices.SortStableFunc(out, func(a, b state.Complaint) int { return a.At.Compare(b.At) })
	return out, nil
}

// ComplaintsSince implements state.Store.
func (s *Store) ComplaintsSince(ctx context.Context, account string, since time.Time) ([]state.Complaint, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.complaints(ctx, s.accountComplaintsKey(account), sinceScore(since))
}

// ComplainedSince implements state.Store.
func (s *Store) ComplainedSince(ctx context.Context, since time.Time) ([]state.Complaint, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.complaints(ctx, s.complaintsByTimeKey(), sinceScore(since))
}

// forgetBatch bounds the work of one forgetting script, so that Redis
// serves others between batches.
const forgetBatch = 1000

// ForgetComplaints implements state.Store.
func (s *Store) ForgetComplaints(ctx context.Context, before time.Time) error {
	n, err := s.forgetBefore(ctx, forgetComplaintsScript, []string{s.reportsKey(), s.complaintsByTimeKey()},
		before, s.accountComplaintsKey(""))
	if n > 0 {
		c, cancel := s.ctx(ctx)
		defer cancel()
		s.publish(c, allAccounts)
	}
	return err
}

// forgetBefore runs a forgetting script until it forgets less than a
// batch, and returns how many it forgot.
func (s *Store) forgetBefore(ctx context.Context, script *goredis.Script, keys []string, before time.Time, extra ...any) (int, error) {
	total := 0
	for {
		c, cancel := s.ctx(ctx)
		n, err := script.Run(c, s.c, keys, append([]any{sinceScore(before), forgetBatch}, extra...)...).Int()
		cancel()
		total += n
		if err != nil {
			return total, unavailable(err)
		}
		if n < forgetBatch {
			return total, nil
		}
	}
}

// Dial connects to the Redis of a URL: a single node (redis://, rediss://,
// unix://), a Sentinel deployment when the URL names master_name, or a
// Cluster when it lists further nodes with addr=. Every timeout is set to
// timeout, and failed commands are not retried: the caller decides what a
// failure means.
func Dial(rawURL string, timeout time.Duration) (goredis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	q := u.Query()
	var c goredis.UniversalClient
	switch {
	case q.Has("master_name"):
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
		c = goredis.NewFailoverClient(o)
	case q.Has("addr"):
		o, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
		c = goredis.NewClusterClient(o)
	default:
		o, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
		c = goredis.NewClient(o)
	}
	return c, nil
}
