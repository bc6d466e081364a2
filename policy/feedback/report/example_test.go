package report_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/msgate/msgate/policy/feedback/report"
)

func ExampleParse() {
	const jmrp = `From: staff@hotmail.com
Subject: complaint about message from 192.0.2.25
Message-ID: <r1@hotmail.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: message/rfc822

X-HmXmrOriginalRecipient: reader@hotmail.com
X-Reporter-IP: 198.51.100.7
Received: from [192.0.2.44] by mail.example.org (Postfix) with ESMTPSA id 4Xyz123abc
	for <reader@hotmail.com>; Tue, 14 Mar 2023 09:20:10 +0000 (UTC)
Message-ID: <m1@example.org>
X-Msgate-Ref: v1.example

Hello.
--b--
`
	rep, err := report.Parse(strings.NewReader(jmrp))
	if errors.Is(err, report.ErrNotReport) {
		return // a bounce or ordinary mail in the complaint mailbox
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Format, rep.FeedbackType, rep.Complaint)
	fmt.Println(rep.SourceIP, rep.OriginalRcpt)
	fmt.Println(rep.Stamps, rep.MessageID, rep.QueueIDs)
	// Output:
	// jmrp abuse true
	// 192.0.2.25 reader@hotmail.com
	// [v1.example] m1@example.org [4Xyz123abc]
}
