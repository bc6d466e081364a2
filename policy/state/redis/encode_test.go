package redis

import (
	"slices"
	"testing"
)

// TestEncodeRules: a batch sends each distinct rule once, after the head,
// and every counter its rule's number before its own values.
func TestEncodeRules(t *testing.T) {
	k := &kind{keys: []string{"held"}, ruleLen: 2, head: func(batch []*call) []any { return []any{len(batch)} }}
	hourly, daily := rule{3600, 10}, rule{86400, 20}
	one := &call{keys: []string{"a/h", "a/d"}, rules: []rule{hourly, daily}, lead: 1, per: 1,
		args: []any{"m1", "u1", "u2", "tail1"}}
	two := &call{keys: []string{"b/d"}, rules: []rule{daily}, lead: 1, per: 1, args: []any{"m2", "u3"}}
	plain := &call{keys: []string{"c"}, args: []any{"x", "y"}}
	keys, args := encode(k, []*call{one, two, plain})
	if want := []string{"held", "a/h", "a/d", "b/d", "c"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	want := []any{3, 2, int64(3600), int64(10), int64(86400), int64(20),
		"m1", 1, "u1", 2, "u2", "tail1",
		"m2", 2, "u3",
		"x", "y"}
	if !slices.Equal(args, want) {
		t.Errorf("args %v,\nwant %v", args, want)
	}
}
