// Package policy decides what happens to each Microsoft-hosted recipient of a
// message: whether it fits the sending account's rate limits, and what to
// answer when it does not or when DNS or state fails.
//
// It knows nothing of milter, sockets or the clock: callers pass an Envelope,
// each recipient and the current time, and get a Decision back as a value.
// Recognising Microsoft's recipients is left to policy/detect, counting to a
// policy/state Store, and turning a Decision into a protocol reply to the
// milter package.
//
// A transaction reserves one unit per Microsoft recipient at RCPT; the units
// are committed when the message is accepted at end of message, and released
// when the transaction is aborted or the session drops. Mail injected without
// SMTP (Postfix's sendmail command) cannot be refused per recipient, so its
// refusals are collected and applied to the whole message at end of message.
//
// It also decides an account's standing: flagged by complaints reaching a
// threshold or by the admin, unflagged by the admin (complaints received
// until then are forgiven). Recording a complaint, flagging and unflagging
// return a Transition, which says whether the change flagged the account;
// callers act on that (notification, logs) and keep no rules of their own.
package policy
