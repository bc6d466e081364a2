// Package report parses one complaint report, a whole email as delivered to
// the complaint mailbox, into a Report.
//
// It decides:
//
//   - whether the mail is a complaint report at all. A DSN
//     (multipart/report; report-type=delivery-status, RFC 3464), a read
//     receipt, an autoreply or any ordinary message is ErrNotReport; input
//     that is empty, garbage, larger than MaxSize or cut before its kind can
//     be told is ErrUnparseable.
//   - its Format. ARF (RFC 5965): a message/feedback-report part, normally
//     inside multipart/report; report-type=feedback-report, whoever sends it,
//     Microsoft included. JMRP: Microsoft's own format, a multipart/mixed
//     report whose Subject reads "complaint about message from <IP>" or whose
//     attached original carries X-HmXmrOriginalRecipient, with no
//     machine-readable part.
//   - whether it is a complaint: every JMRP report is ("abuse"); for ARF the
//     RFC 5965 §7.3 types abuse, fraud, virus and other are, while
//     auth-failure (DMARC forensic reports, RFC 6591), not-spam (RFC 6650)
//     and unknown types are not.
//   - what it says about the original message: the StampHeader values, the
//     Message-ID, the queue ids Postfix wrote into its Received fields, the
//     envelope sender and recipient, the IP the provider received it from and
//     when, taken from the feedback-report fields first and the original's
//     header after. JMRP's X-Reporter-IP is the complaining user's address
//     and is ignored.
//   - an ID for de-duplication (see Report.ID).
//
// Real reports are messy and Parse is lenient where it can be: the
// original's header is read line by line, skipping mbox "From " lines and
// junk; a missing closing boundary is ignored; unknown charsets and
// transfer encodings are read as they are, since every field used is ASCII.
// A report cut short after its kind is known is returned with what precedes
// the cut and Truncated set (see Report.Truncated), not rejected: the
// complaint happened even if the stamp was lost.
//
// It leaves to others: checking that the report really comes from the
// provider it names (its From is not authenticated here), verifying the
// stamp and attributing the complaint to a sending account, counting
// complaints and acting on them, and remembering IDs already seen.
package report
