// Package feedback turns one complaint report into a counted complaint
// against the account that sent the reported message.
//
// It decides attribution: the stamp msgate added to the message (verified
// with the configured keys; an altered or foreign stamp attributes to
// nobody), or, when the copy lost the stamp, the Postfix queue id of the
// copy's Received header as remembered at end of message. It records the
// complaint once per report. Parsing is left to policy/feedback/report,
// what complaints do to an account (thresholds, flags) to the policy
// engine, and spooling and notification to the daemon.
package feedback
