package report

import (
	"slices"
	"testing"
)

func TestQueueIDsFromReceived(t *testing.T) {
	got := postfixQueueIDs([]string{
		"from [192.0.2.4] by mx.test.local (Postfix) with ESMTPSA id 4jbNhx5tnQz5rCs for <jo@outlook.com>; Fri, 27 Nov 2026 06:26:09 +0000",
		"by mail.example.org (Postfix, from userid 1000) id 3B5A1C2D3E; Fri, 27 Nov 2026 06:26:09 +0000",
		"from client.test.local (localhost [127.0.0.1]) by mx.test.local (8.17.1.9/8.17.1.9) with ESMTP id 5ARAbcde012345 for <a@outlook.com>; Fri, 27 Nov 2026",
		"from BAY0-XMR.phx.gbl ([203.0.113.187]) by BAY004-OMC3S6.hotmail.com with Microsoft SMTPSVC(7.5.7601.22751); Tue",
		"by mx.example.org (Postfix) with ESMTPSA id 4jbNhx5tnQz5rCs", // duplicate
	})
	want := []string{"4jbNhx5tnQz5rCs", "3B5A1C2D3E", "5ARAbcde012345"}
	if !slices.Equal(got, want) {
		t.Fatalf("queue ids = %v, want %v", got, want)
	}
}
