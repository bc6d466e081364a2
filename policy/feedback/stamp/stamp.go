package stamp

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Outcomes of Open that callers branch on.
var (
	// ErrMalformed: not a token of ours (wrong prefix or version, bad length,
	// characters outside base64url, truncated).
	ErrMalformed = errors.New("stamp: malformed token")
	// ErrForged: well formed, but it authenticates under no configured key:
	// altered, made by someone else, or made with a key no longer configured.
	ErrForged = errors.New("stamp: token does not verify")
	// ErrExpired: genuine, but its embedded time is older than maxAge.
	ErrExpired = errors.New("stamp: token too old")
	// ErrRetired: genuine under a retired key, but its embedded time is after
	// that key's NotAfter.
	ErrRetired = errors.New("stamp: token made with a retired key after its end")
)

// MinSecretLen is the shortest secret New accepts. The secret must also be
// random: see the package doc.
const MinSecretLen = 16

// MaxAccountLen is the longest account, in bytes, that Seal accepts.
const MaxAccountLen = 255

// Key is one configured secret.
type Key struct {
	// Secret is the raw secret from the configuration, at least MinSecretLen
	// random bytes. New derives its own subkeys from it and keeps no copy.
	Secret []byte
	// NotAfter is zero for the current key. For a retired key, tokens whose
	// embedded time is after NotAfter are refused with ErrRetired even though
	// they verify.
	NotAfter time.Time
}

// Claims is what a genuine token says.
type Claims struct {
	Account string
	At      time.Time // whole seconds, UTC
}

// Sealer makes and opens tokens. It is safe for concurrent use; make one with
// New.
type Sealer struct {
	keys   []sealKey // keys[0] is the current key, the rest retired
	maxAge time.Duration
}

type sealKey struct {
	id       [idLen]byte
	aead     cipher.AEAD
	ad       []byte // additional data: adPrefix || id
	notAfter time.Time
}

// Layout of a v1 token (see the package doc):
//
//	"v1." base64url( id[2] || nonce[16] || XChaCha20-Poly1305(plaintext) )
//	plaintext = seconds[5] || len(account)[1] || account || zeros, to a multiple of 16
const (
	prefix   = "v1."
	adPrefix = "msgate feedback stamp v1"
	infoKey  = "msgate feedback stamp v1: XChaCha20-Poly1305 key"
	infoID   = "msgate feedback stamp v1: key id"

	idLen    = 2
	nonceLen = 16 // random bytes; the last 8 of XChaCha20's 24-byte nonce stay zero
	headLen  = idLen + nonceLen
	secLen   = 5 // seconds since 1970 as a 40-bit unsigned integer: up to year 36812
	fixedLen = secLen + 1
	padTo    = 16
	tagLen   = chacha20poly1305.Overhead

	maxPlain = (fixedLen + MaxAccountLen + padTo - 1) / padTo * padTo
	minBin   = headLen + padTo + tagLen
	maxBin   = headLen + maxPlain + tagLen
	minText  = (minBin*8 + 5) / 6
	maxText  = (maxBin*8 + 5) / 6
	maxToken = len(prefix) + maxText
)

// Strict so that every token has exactly one spelling: without it the unused
// low bits of the last character could be flipped without changing the bytes.
var b64 = base64.RawURLEncoding.Strict()

// scratch keeps the per-call buffers off the heap: the AEAD is an interface,
// so buffers handed to it would escape.
type scratch struct {
	bin   [maxBin]byte
	plain [maxPlain]byte
	nonce [chacha20poly1305.NonceSizeX]byte
	text  [maxToken]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// xnonce returns XChaCha20's 24-byte nonce for a token's binary form: its 16
// random bytes followed by 8 zero bytes.
func (sc *scratch) xnonce(bin []byte) []byte {
	n := sc.nonce[:]
	copy(n, bin[idLen:headLen])
	clear(n[nonceLen:])
	return n
}

// New returns a Sealer that seals with current and opens tokens made with
// current or any of retired. Tokens whose embedded time is more than maxAge
// before the now given to Open are refused with ErrExpired; maxAge 0 means no
// limit. All problems with the keys are reported at once.
func New(current Key, retired []Key, maxAge time.Duration) (*Sealer, error) {
	var errs []error
	if maxAge < 0 {
		errs = append(errs, fmt.Errorf("stamp: negative max age %v", maxAge))
	}
	if !current.NotAfter.IsZero() {
		errs = append(errs, errors.New("stamp: current key: NotAfter must be zero (it is for retired keys)"))
	}
	all := append([]Key{current}, retired...)
	name := func(i int) string {
		if i == 0 {
			return "current key"
		}
		return fmt.Sprintf("retired key %d", i-1)
	}
	s := &Sealer{keys: make([]sealKey, 0, len(all)), maxAge: maxAge}
	for i, k := range all {
		if i > 0 && k.NotAfter.IsZero() {
			errs = append(errs, fmt.Errorf("stamp: %s: NotAfter is required for a retired key", name(i)))
		}
		if len(k.Secret) < MinSecretLen {
			errs = append(errs, fmt.Errorf("stamp: %s: secret is %d bytes, need at least %d", name(i), len(k.Secret), MinSecretLen))
			continue
		}
		if j := indexSecret(all[:i], k.Secret); j >= 0 {
			errs = append(errs, fmt.Errorf("stamp: %s: same secret as %s", name(i), name(j)))
			continue
		}
		sk, err := deriveKey(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("stamp: %s: %w", name(i), err))
			continue
		}
		s.keys = append(s.keys, sk)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func indexSecret(keys []Key, secret []byte) int {
	for i, k := range keys {
		if bytes.Equal(k.Secret, secret) {
			return i
		}
	}
	return -1
}

func deriveKey(k Key) (sealKey, error) {
	key, err := hkdf.Key(sha256.New, k.Secret, nil, infoKey, chacha20poly1305.KeySize)
	if err != nil {
		return sealKey{}, fmt.Errorf("deriving key: %w", err)
	}
	id, err := hkdf.Key(sha256.New, k.Secret, nil, infoID, idLen)
	if err != nil {
		return sealKey{}, fmt.Errorf("deriving key id: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return sealKey{}, fmt.Errorf("making AEAD: %w", err)
	}
	sk := sealKey{aead: aead, notAfter: k.NotAfter}
	copy(sk.id[:], id)
	sk.ad = append([]byte(adPrefix), sk.id[:]...)
	return sk, nil
}

// Seal returns a token for account at the given time, truncated to the
// second. The account must be 1 to MaxAccountLen bytes (any bytes), and at
// between 1970 and the year 36812. Two calls with the same arguments return
// different tokens.
func (s *Sealer) Seal(account string, at time.Time) (string, error) {
	if len(account) == 0 {
		return "", errors.New("stamp: empty account")
	}
	if len(account) > MaxAccountLen {
		return "", fmt.Errorf("stamp: account is %d bytes, at most %d can be sealed", len(account), MaxAccountLen)
	}
	sec := at.Unix()
	if sec < 0 || sec >= 1<<(8*secLen) {
		return "", fmt.Errorf("stamp: time %v out of range", at)
	}
	k := &s.keys[0]
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)

	plainLen := (fixedLen + len(account) + padTo - 1) / padTo * padTo
	bin := sc.bin[:headLen+plainLen+tagLen]
	copy(bin, k.id[:])
	rand.Read(bin[idLen:headLen]) // never fails: it crashes the program instead
	plain := bin[headLen : headLen+plainLen]
	putSeconds(plain, uint64(sec))
	plain[secLen] = byte(len(account))
	n := copy(plain[fixedLen:], account)
	clear(plain[fixedLen+n:])

	k.aead.Seal(plain[:0], sc.xnonce(bin), plain, k.ad)

	text := sc.text[:len(prefix)+b64.EncodedLen(len(bin))]
	copy(text, prefix)
	b64.Encode(text[len(prefix):], bin)
	return string(text), nil
}

// Open checks token and returns its claims. Whitespace around the token is
// ignored. Errors are ErrMalformed, ErrForged, ErrRetired or ErrExpired, in the
// order they are checked; on any error the Claims are zero.
func (s *Sealer) Open(token string, now time.Time) (Claims, error) {
	token = strings.TrimSpace(token)
	body, ok := strings.CutPrefix(token, prefix)
	if !ok || len(body) < minText || len(body) > maxText {
		return Claims{}, ErrMalformed
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)

	// Decode also skips CR and LF; refuse them with everything else outside
	// the alphabet so that each token has one spelling.
	text := sc.text[:len(body)]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return Claims{}, ErrMalformed
		}
		text[i] = c
	}
	n, err := b64.Decode(sc.bin[:], text)
	if err != nil || n < minBin || (n-minBin)%padTo != 0 {
		return Claims{}, ErrMalformed
	}
	bin := sc.bin[:n]
	nonce := sc.xnonce(bin)
	sealed := bin[headLen:]

	for i := range s.keys {
		k := &s.keys[i]
		if [idLen]byte(bin[:idLen]) != k.id {
			continue
		}
		// Not in place: a failed Open wipes its output, and with colliding
		// key ids the next key needs the ciphertext intact.
		plain, err := k.aead.Open(sc.plain[:0], nonce, sealed, k.ad)
		if err != nil {
			continue
		}
		c, ok := parsePlain(plain)
		if !ok {
			// Authentic but not v1 plaintext: only a bug on our side can
			// make one.
			return Claims{}, ErrMalformed
		}
		if !k.notAfter.IsZero() && c.At.After(k.notAfter) {
			return Claims{}, ErrRetired
		}
		if s.maxAge > 0 && now.Sub(c.At) > s.maxAge {
			return Claims{}, ErrExpired
		}
		return c, nil
	}
	return Claims{}, ErrForged
}

func parsePlain(plain []byte) (Claims, bool) {
	n := int(plain[secLen])
	if n == 0 || (fixedLen+n+padTo-1)/padTo*padTo != len(plain) {
		return Claims{}, false
	}
	for _, b := range plain[fixedLen+n:] {
		if b != 0 {
			return Claims{}, false
		}
	}
	sec := int64(getSeconds(plain))
	return Claims{
		Account: string(plain[fixedLen : fixedLen+n]),
		At:      time.Unix(sec, 0).UTC(),
	}, true
}

func putSeconds(b []byte, sec uint64) {
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], sec)
	copy(b[:secLen], w[8-secLen:])
}

func getSeconds(b []byte) uint64 {
	var w [8]byte
	copy(w[8-secLen:], b[:secLen])
	return binary.BigEndian.Uint64(w[:])
}
