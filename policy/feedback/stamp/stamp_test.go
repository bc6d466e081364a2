package stamp

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkOpen opens tok and compares the outcome with want and wantErr.
func checkOpen(t *testing.T, s *Sealer, tok string, now time.Time, want Claims, wantErr error) {
	t.Helper()
	got, err := s.Open(tok, now)
	if !errors.Is(err, wantErr) {
		t.Fatalf("Open(%q) error = %v, want %v", tok, err, wantErr)
	}
	if err != nil {
		if got != (Claims{}) {
			t.Fatalf("Open(%q) = %+v with error %v, want zero Claims", tok, got, err)
		}
		return
	}
	if got.Account != want.Account || !got.At.Equal(want.At) || got.At.Location() != time.UTC {
		t.Fatalf("Open(%q) = %+v, want %+v", tok, got, want)
	}
}

// checkRefused asserts that tok is refused as malformed or forged, never
// taken for something else.
func checkRefused(t *testing.T, s *Sealer, tok, what string) {
	t.Helper()
	got, err := s.Open(tok, t0)
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) {
		t.Fatalf("%s: Open(%q) = %+v, %v; want ErrMalformed or ErrForged", what, tok, got, err)
	}
}

func TestRoundTrip(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	for _, tc := range []struct {
		name    string
		account string
		at      time.Time
	}{
		{"ascii", "alice@example.com", t0},
		{"one byte", "a", t0},
		{"utf8", "jürgen.müller@bücher.example", t0},
		{"cjk", "用户@例え.テスト", t0},
		{"not utf8", "\xff\xfe\x00bin\x00", t0},
		{"spaces", "  padded login  ", t0},
		{"trailing NUL", "bob\x00\x00", t0},
		{"block edge 10", strings.Repeat("x", 10), t0},
		{"block edge 11", strings.Repeat("x", 11), t0},
		{"max", strings.Repeat("m", MaxAccountLen), t0},
		{"epoch", "alice", time.Unix(0, 0)},
		{"other zone", "alice", t0.In(time.FixedZone("X", 5*3600+1800))},
		{"far future", "alice", time.Unix(1<<40-1, 999)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := s.Seal(tc.account, tc.at)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			want := Claims{Account: tc.account, At: time.Unix(tc.at.Unix(), 0).UTC()}
			checkOpen(t, s, tok, tc.at, want, nil)
		})
	}
}

func TestSealRefuses(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	for _, tc := range []struct {
		name    string
		account string
		at      time.Time
	}{
		{"empty account", "", t0},
		{"account too long", strings.Repeat("a", MaxAccountLen+1), t0},
		{"before 1970", "alice", time.Unix(-1, 0)},
		{"zero time", "alice", time.Time{}},
		{"past year 36812", "alice", time.Unix(1<<40, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := s.Seal(tc.account, tc.at); err == nil {
				t.Fatalf("Seal(%q, %v) = %q, want an error", tc.account, tc.at, tok)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	short := []byte("fifteen bytes!!")
	for _, tc := range []struct {
		name    string
		current Key
		retired []Key
		maxAge  time.Duration
		want    []string
	}{
		{"short current", Key{Secret: short}, nil, 0, []string{"current key: secret is 15 bytes"}},
		{"nil current", Key{}, nil, 0, []string{"current key: secret is 0 bytes"}},
		{"short retired", Key{Secret: secretA}, []Key{{Secret: short, NotAfter: t0}}, 0,
			[]string{"retired key 0: secret is 15 bytes"}},
		{"retired same as current", Key{Secret: secretA}, []Key{{Secret: bytes.Clone(secretA), NotAfter: t0}}, 0,
			[]string{"retired key 0: same secret as current key"}},
		{"retired twice", Key{Secret: secretA}, []Key{{Secret: secretB, NotAfter: t0}, {Secret: secretB, NotAfter: t0}}, 0,
			[]string{"retired key 1: same secret as retired key 0"}},
		{"retired without end", Key{Secret: secretA}, []Key{{Secret: secretB}}, 0,
			[]string{"retired key 0: NotAfter is required"}},
		{"current with end", Key{Secret: secretA, NotAfter: t0}, nil, 0, []string{"current key: NotAfter must be zero"}},
		{"negative max age", Key{Secret: secretA}, nil, -time.Second, []string{"negative max age"}},
		{"all at once", Key{Secret: short, NotAfter: t0}, []Key{{Secret: secretB}, {Secret: secretB, NotAfter: t0}}, -1,
			[]string{"negative max age", "current key: NotAfter", "current key: secret is 15",
				"retired key 0: NotAfter is required", "retired key 1: same secret as retired key 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.current, tc.retired, tc.maxAge)
			if err == nil {
				t.Fatalf("New = %v, nil; want an error", s)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestTamper: every single-bit flip and every truncation of a token, in its
// text and in its bytes, is refused as malformed or forged.
func TestTamper(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, []Key{{Secret: secretB, NotAfter: t0}}, 0)
	for _, account := range []string{"a", "alice@example.com", strings.Repeat("z", 40), strings.Repeat("m", MaxAccountLen)} {
		tok, err := s.Seal(account, t0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(tok) {
			for bit := range 8 {
				b := []byte(tok)
				b[i] ^= 1 << bit
				checkRefused(t, s, string(b), fmt.Sprintf("text bit %d of byte %d", bit, i))
			}
			checkRefused(t, s, tok[:i], fmt.Sprintf("truncated to %d", i))
			checkRefused(t, s, tok[:i]+tok[i+1:], fmt.Sprintf("byte %d dropped", i))
		}
		for _, extra := range []string{"A", "AA", "AAAA", ".", "=="} {
			checkRefused(t, s, tok+extra, fmt.Sprintf("%q appended", extra))
		}
		checkRefused(t, s, tok[:40]+"\r\n "+tok[40:], "folded")

		bin, err := b64.DecodeString(strings.TrimPrefix(tok, prefix))
		if err != nil {
			t.Fatal(err)
		}
		for i := range bin {
			for bit := range 8 {
				b := bytes.Clone(bin)
				b[i] ^= 1 << bit
				checkRefused(t, s, prefix+b64.EncodeToString(b), fmt.Sprintf("binary bit %d of byte %d", bit, i))
			}
		}
		for n := range len(bin) {
			checkRefused(t, s, prefix+b64.EncodeToString(bin[:n]), fmt.Sprintf("binary truncated to %d", n))
		}
		for _, p := range []string{"v2.", "V1.", "v1-", "v1", ".", ""} {
			checkRefused(t, s, p+strings.TrimPrefix(tok, prefix), "prefix "+p)
		}
	}
}

func TestOtherSecret(t *testing.T) {
	a := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	b := newTestSealer(t, Key{Secret: secretB}, nil, 0)
	tok, err := b.Seal("alice@example.com", t0)
	if err != nil {
		t.Fatal(err)
	}
	checkOpen(t, a, tok, t0, Claims{}, ErrForged)
}

// collidingSecret has the same key id (57c8) as secretA, so that Open has to
// rely on authentication alone to tell their tokens apart. It was found by
// counting up; TestKeyIDCollision checks that it still collides.
var collidingSecret = []byte("colliding secret 00284319")

func TestKeyIDCollision(t *testing.T) {
	other := collidingSecret
	idA, _ := hkdf.Key(sha256.New, secretA, nil, infoID, idLen)
	idO, _ := hkdf.Key(sha256.New, other, nil, infoID, idLen)
	if !bytes.Equal(idA, idO) {
		t.Fatalf("test setup: key ids %x and %x differ", idA, idO)
	}
	a := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	o := newTestSealer(t, Key{Secret: other}, nil, 0)
	tokO, err := o.Seal("mallory", t0)
	if err != nil {
		t.Fatal(err)
	}
	checkOpen(t, a, tokO, t0, Claims{}, ErrForged)

	// Both configured: each token is opened by its own key, whichever comes
	// first.
	notAfter := t0.Add(time.Hour)
	both := newTestSealer(t, Key{Secret: secretA}, []Key{{Secret: other, NotAfter: notAfter}}, 0)
	checkOpen(t, both, tokO, t0, Claims{"mallory", t0.Truncate(time.Second)}, nil)
	checkOpen(t, both, mustSeal(t, a, "alice", t0), t0, Claims{"alice", t0.Truncate(time.Second)}, nil)
	reversed := newTestSealer(t, Key{Secret: other}, []Key{{Secret: secretA, NotAfter: notAfter}}, 0)
	checkOpen(t, reversed, mustSeal(t, a, "alice", t0), t0, Claims{"alice", t0.Truncate(time.Second)}, nil)
}

func mustSeal(t *testing.T, s *Sealer, account string, at time.Time) string {
	t.Helper()
	tok, err := s.Seal(account, at)
	if err != nil {
		t.Fatalf("Seal(%q): %v", account, err)
	}
	return tok
}

// TestUnlinkable: sealing the same claims twice gives unrelated tokens; only
// the version and key id, shared by every token of the key, are alike.
func TestUnlinkable(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	seen := map[string]bool{}
	for range 1000 {
		tok := mustSeal(t, s, "alice@example.com", t0)
		if seen[tok] {
			t.Fatalf("token %q sealed twice", tok)
		}
		seen[tok] = true
	}
	x, y := mustSeal(t, s, "alice@example.com", t0), mustSeal(t, s, "alice@example.com", t0)
	// "v1." and the 2-byte key id fill the first 5 characters and 4 bits of
	// the sixth; the rest must differ almost everywhere.
	same := 0
	for i := 6; i < len(x); i++ {
		if x[i] == y[i] {
			same++
		}
	}
	if same > len(x)/4 {
		t.Fatalf("%q and %q agree in %d of %d positions", x, y, same, len(x)-6)
	}
}

func TestRotation(t *testing.T) {
	before := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	rotatedAt := t0.Add(24 * time.Hour)
	after := newTestSealer(t, Key{Secret: secretB}, []Key{{Secret: secretA, NotAfter: rotatedAt}}, 0)

	sealedAt := t0.Add(time.Hour).Truncate(time.Second)
	old := mustSeal(t, before, "alice", sealedAt)
	checkOpen(t, after, old, rotatedAt.Add(time.Hour), Claims{"alice", sealedAt}, nil)
	checkOpen(t, after, mustSeal(t, after, "bob", rotatedAt), rotatedAt, Claims{"bob", rotatedAt.Truncate(time.Second)}, nil)
	// The old deployment does not know the new key.
	checkOpen(t, before, mustSeal(t, after, "bob", rotatedAt), rotatedAt, Claims{}, ErrForged)

	// NotAfter is inclusive and compared at the token's second precision.
	checkOpen(t, after, mustSeal(t, before, "alice", rotatedAt), rotatedAt, Claims{"alice", rotatedAt.Truncate(time.Second)}, nil)
	late := mustSeal(t, before, "alice", rotatedAt.Add(time.Second))
	checkOpen(t, after, late, rotatedAt.Add(time.Hour), Claims{}, ErrRetired)
	// Retiring the key again drops it for good.
	dropped := newTestSealer(t, Key{Secret: secretB}, nil, 0)
	checkOpen(t, dropped, old, rotatedAt, Claims{}, ErrForged)
}

func TestMaxAge(t *testing.T) {
	const maxAge = 30 * 24 * time.Hour
	s := newTestSealer(t, Key{Secret: secretA}, []Key{{Secret: secretB, NotAfter: t0}}, maxAge)
	at := t0.Truncate(time.Second)
	tok := mustSeal(t, s, "alice", at)
	checkOpen(t, s, tok, at.Add(maxAge), Claims{"alice", at}, nil)
	checkOpen(t, s, tok, at.Add(maxAge+time.Nanosecond), Claims{}, ErrExpired)
	checkOpen(t, s, tok, at.Add(-time.Hour), Claims{"alice", at}, nil) // clock skew: not refused

	// A retired key's late token is reported as retired, before its age.
	old := newTestSealer(t, Key{Secret: secretB}, nil, 0)
	late := mustSeal(t, old, "alice", t0.Add(time.Hour))
	checkOpen(t, s, late, t0.Add(10*maxAge), Claims{}, ErrRetired)

	unlimited := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	checkOpen(t, unlimited, tok, at.Add(100*365*24*time.Hour), Claims{"alice", at}, nil)
}

func TestLength(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	for _, tc := range []struct{ account, want int }{
		{1, 70}, {10, 70},
		{11, 91}, {17, 91}, {26, 91},
		{27, 113}, {40, 113}, {42, 113},
		{43, 134}, {64, 155},
		{MaxAccountLen, 411},
	} {
		tok := mustSeal(t, s, strings.Repeat("a", tc.account), t0)
		if len(tok) != tc.want {
			t.Errorf("%d-byte account: token is %d characters, want %d", tc.account, len(tok), tc.want)
		}
		if tc.account <= 40 && len(tok) > 120 {
			t.Errorf("%d-byte account: token is %d characters, want at most 120", tc.account, len(tok))
		}
	}
	if maxToken != 411 {
		t.Errorf("maxToken = %d, want 411", maxToken)
	}
}

var headerSafe = regexp.MustCompile(`^v1\.[A-Za-z0-9_-]+$`)

func TestHeaderSafe(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	accounts := []string{"alice", "ünïcödé", "\x00\r\n\t :;\"", strings.Repeat("\xff", MaxAccountLen)}
	for i := range 256 {
		accounts = append(accounts, strings.Repeat(string(rune(i)), 1+i%40))
	}
	for _, a := range accounts {
		for range 4 {
			tok := mustSeal(t, s, a, t0)
			if !headerSafe.MatchString(tok) {
				t.Fatalf("Seal(%q) = %q: not header-safe", a, tok)
			}
		}
	}
}

func TestOpenTrimsSpace(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	tok := mustSeal(t, s, "alice", t0)
	checkOpen(t, s, " \t"+tok+"\r\n", t0, Claims{"alice", t0.Truncate(time.Second)}, nil)
}

func TestOpenGarbage(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, nil, 0)
	for _, tok := range []string{
		"", "v1.", "v1.A", "hello", "v1." + strings.Repeat("A", 66), "v1." + strings.Repeat("A", 67),
		"v1." + strings.Repeat("A", maxText+1), "v1." + strings.Repeat("\xff", 67), strings.Repeat("v1.", 100),
	} {
		checkRefused(t, s, tok, "garbage")
	}
	checkOpen(t, s, "v1."+strings.Repeat("A", 66), t0, Claims{}, ErrMalformed)     // 49 bytes: too short
	checkOpen(t, s, "v1."+strings.Repeat("A", 67), t0, Claims{}, ErrForged)        // 50 zero bytes: shaped like a token
	checkOpen(t, s, "v1."+strings.Repeat("A", 66)+"B", t0, Claims{}, ErrMalformed) // non-zero unused bits
	checkOpen(t, s, "v1."+strings.Repeat("A", 66)+"=", t0, Claims{}, ErrMalformed)
	checkOpen(t, s, "v1."+strings.Repeat("A", 68), t0, Claims{}, ErrMalformed) // 51 bytes: not a whole block
}

func TestConcurrent(t *testing.T) {
	s := newTestSealer(t, Key{Secret: secretA}, []Key{{Secret: secretB, NotAfter: t0}}, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				account := fmt.Sprintf("user%d-%d@example.com", g, i)
				tok, err := s.Seal(account, t0)
				if err != nil {
					t.Error(err)
					return
				}
				c, err := s.Open(tok, t0)
				if err != nil || c.Account != account {
					t.Errorf("Open = %+v, %v; want %q", c, err, account)
					return
				}
			}
		})
	}
	wg.Wait()
}
