package snds_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/msgate/msgate/policy/snds"
)

func ExampleAssess() {
	data := "192.0.2.25,12/1/2026 12:00 AM,12/1/2026 11:59 PM,120,118,130,YELLOW,0.5%,12/1/2026 12:00 AM,12/1/2026 11:59 PM,2,mail.example.net,alice@example.net,\r\n"
	status := "192.0.2.0,192.0.2.255,Yes,Blocked due to user complaints or other evidence of spamming\r\n"
	rows, err := snds.ParseData([]byte(data))
	if err != nil {
		fmt.Println(err)
		return
	}
	ranges, err := snds.ParseIPStatus([]byte(status))
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	cfg := snds.Config{IPs: []netip.Addr{netip.MustParseAddr("192.0.2.25")}, ComplaintThreshold: 0.3}
	a := snds.Assess(cfg, snds.Import{At: now, Data: rows, Status: ranges})
	fmt.Println(a.Blocked, a.Yellow, a.Worst)
	for _, e := range snds.Events(cfg, snds.Assessment{}, a, now) {
		fmt.Println(e)
	}
	// Output:
	// true 1 0.5%
	// snds_blocked: SNDS lists as blocked 192.0.2.0-192.0.2.255: Blocked due to user complaints or other evidence of spamming
	// snds_complaints: 192.0.2.25 has a complaint rate of 0.5% on 2026-12-01 (threshold 0.3%)
}
