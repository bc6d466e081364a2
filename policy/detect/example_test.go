package detect_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msgate/msgate/policy/detect"
)

func ExampleDetector_Detect() {
	d, err := detect.New(detect.Config{
		Resolver:     "127.0.0.1:53",
		ExtraDomains: []string{"partner.example"},
	})
	if err != nil {
		panic(err)
	}
	// Listed domains are decided without DNS.
	for _, domain := range []string{" Hotmail.COM. ", "partner.example", "[192.0.2.1]"} {
		res, err := d.Detect(context.Background(), domain, time.Now())
		if errors.Is(err, detect.ErrLookup) {
			// DNS failed: apply the configured on_dns_failure choice.
			continue
		}
		fmt.Printf("%q microsoft=%v group=%q via=%s\n", domain, res.Microsoft, res.Group, res.Via)
	}
	// Output:
	// " Hotmail.COM. " microsoft=true group="consumer" via=domain-list
	// "partner.example" microsoft=true group="listed" via=extra-domains
	// "[192.0.2.1]" microsoft=false group="" via=invalid
}
