package stamp_test

import (
	"fmt"
	"time"

	"github.com/msgate/msgate/policy/feedback/stamp"
)

// A deployment rotates its secret: tokens in mail sent before the rotation
// still name their account, until their age passes 90 days.
func Example() {
	oldSecret := []byte("old secret, 32 random bytes.....")
	newSecret := []byte("new secret, 32 random bytes.....")
	sentAt := time.Date(2026, 3, 1, 9, 30, 15, 123, time.UTC)
	rotatedAt := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	const maxAge = 90 * 24 * time.Hour

	before, err := stamp.New(stamp.Key{Secret: oldSecret}, nil, maxAge)
	if err != nil {
		panic(err)
	}
	token, err := before.Seal("alice@customer.example", sentAt)
	if err != nil {
		panic(err)
	}
	fmt.Println("X-Msgate-Ref length:", len(token))

	after, err := stamp.New(stamp.Key{Secret: newSecret},
		[]stamp.Key{{Secret: oldSecret, NotAfter: rotatedAt}}, maxAge)
	if err != nil {
		panic(err)
	}
	claims, err := after.Open(token, rotatedAt.Add(48*time.Hour))
	fmt.Println(claims.Account, claims.At, err)

	_, err = after.Open(token, sentAt.Add(100*24*time.Hour))
	fmt.Println(err)

	altered := []byte(token)
	if altered[20] == 'A' {
		altered[20] = 'B'
	} else {
		altered[20] = 'A'
	}
	_, err = after.Open(string(altered), rotatedAt)
	fmt.Println(err)
	// Output:
	// X-Msgate-Ref length: 91
	// alice@customer.example 2026-03-01 09:30:15 +0000 UTC <nil>
	// stamp: token too old
	// stamp: token does not verify
}
