// Package stamp makes and reads the X-Msgate-Ref token: a short opaque string
// that names the sending account and the second the message was sent, so that
// a complaint copy (Microsoft JMRP) can be traced back to the account. Only a
// holder of the [feedback] secret can read or make one.
//
// The package decides what a token is and whether one is genuine. Adding the
// header, finding it in a complaint, reading the clock and loading secrets
// are left to the callers.
//
// # Token
//
//	v1.<base64url without padding (RFC 4648 §5) of:>
//	  key id   2 bytes    HKDF-SHA256(secret, info "...: key id")
//	  nonce   16 bytes    from crypto/rand, fresh for every token
//	  sealed  16n+16      XChaCha20-Poly1305(key, nonce || 8 zero bytes,
//	                          plaintext, additional data "msgate feedback stamp v1" || key id)
//	plaintext = seconds since 1970 (5 bytes, big-endian) || len(account) (1 byte)
//	            || account || zero bytes up to a multiple of 16
//
// The key is HKDF-SHA256 (RFC 5869) of the secret with its own info string;
// the key id is the same with another. A token for an account of up to 10
// bytes is 70 characters, up to 26 bytes 91, up to 42 bytes 113, and the
// longest account (255 bytes) gives 411. The characters are [A-Za-z0-9._-]:
// nothing that needs encoding, and no whitespace, so no MTA folds or splits
// the header inside the token. Such a header line is longer than RFC 5322
// §2.1.1's recommended 78 characters but far below its limit of 998.
//
// # Why it is sound
//
// The threat model: outsiders see tokens, in mail they receive and in
// complaint copies. They must not learn a login from a token, tell whether two
// messages came from one account, make a token that verifies, or change a
// genuine token to name another account or time. Replaying a genuine token in
// another message is allowed: it still names the genuine account.
//
// Confidentiality and unlinkability. XChaCha20-Poly1305 is an AEAD
// (draft-irtf-cfrg-xchacha); under a fresh nonce its ciphertext is
// indistinguishable from random bytes of the same length to anyone without
// the key. The nonce is 16 random bytes, so sealing the same account twice
// gives unrelated tokens. What an outsider does see: the version and key id
// (the same in every token of one deployment, so they link a token to the
// deployment, which the sending server's name does anyway) and the length.
// The length is padded to a multiple of 16 bytes, so it tells only the class
// of login lengths (1–10, 11–26, 27–42, ... bytes), not the login.
//
// Nonces. XChaCha20 turns its 24-byte nonce into a per-message ChaCha20 key
// with HChaCha20(key, first 16 nonce bytes); the last 8 bytes only become the
// inner ChaCha20 nonce. We fill the first 16 at random and leave the last 8
// zero, so every token is sealed under its own subkey, and a subkey used once
// is safe with any inner nonce. Two tokens collide in nonce (which would leak
// the XOR of their plaintexts and allow forgeries) with probability at most
// q²/2¹²⁹ for q tokens under one key: 2⁻⁴⁹ after a trillion messages. The full
// 24 bytes would add 11 characters for no practical gain; those characters pay
// for the padding instead. AES-256-GCM was not chosen: its 96-bit random nonce
// is limited to 2³² messages per key (NIST SP 800-38D §8.3), a collision
// would reveal its authentication key, and per-message keys as above would
// have to be built by hand.
//
// Integrity. Poly1305 authenticates the key id and version (additional data),
// the nonce (through the subkey) and every ciphertext byte, including the
// padding and the length byte: any change to the bytes or truncation is
// refused, except with probability below 2⁻⁹⁰ per attempt (RFC 8439 §4), and
// a forger never learns whether a guess was accepted. The text
// maps to the bytes one to one: decoding is strict (unused low bits of the
// last character must be zero) and anything outside the base64url alphabet,
// line breaks included, is refused, so a token with any character flipped,
// dropped or added is ErrMalformed or ErrForged, never other claims. Open
// only decides on public facts (prefix, length, alphabet, key id) before the
// tag check, which is constant-time, so timing tells an attacker nothing about
// the key or the plaintext.
//
// Keys. The AEAD key and the key id are separate HKDF outputs, so the id
// tells nothing about the key; the version is in both info strings and in the
// additional data, so a future v2 gets independent keys and a token cannot be
// relabelled. The key id lets Open skip keys that cannot match; ids of two
// configured keys may collide (1 in 65,536), in which case Open tries each, and
// a token of a deployment with another secret fails authentication even with
// the same id. The secret must be random (for example 32 bytes from a
// CSPRNG, which is also what the 16-byte minimum assumes): the key id and the
// tag let an attacker check guesses offline, and HKDF is not a password hash.
//
// Rotation. The new secret becomes the current key and the old one a retired
// key with NotAfter set to the rotation time. Tokens made before then keep
// verifying; a token whose embedded time is later is refused (ErrRetired),
// since the real deployment no longer seals with that key. Someone who learns
// a retired secret can still backdate tokens to before NotAfter: maxAge ends
// that once NotAfter+maxAge has passed, and removing the key ends it at once.
//
// Time. The embedded time is seconds since 1970 in 40 bits, up to the year
// 36812. Tokens from the future are not refused, to allow for clock skew
// between the hosts that seal and open.
package stamp
