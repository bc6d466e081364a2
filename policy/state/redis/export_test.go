package redis

import "time"

// Pending is how many reservations the store holds locally.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Cached reports whether the store would answer Account from its cache.
func (s *Store) Cached(account string, since time.Time) bool {
	_, ok, _ := s.cached(account, since)
	return ok
}
