// Package detect decides whether a recipient domain's mail is handled by
// Microsoft: Outlook.com consumer mailboxes (hotmail.com, outlook.fr, ...) or
// Microsoft 365 / Exchange Online tenants, whose inbound servers share the
// reputation of the sending IP that the milter protects.
//
// A domain is Microsoft's when it is one of the built-in consumer domains
// (ConsumerDomains) or one of the admin's extra domains, both decided without
// DNS, or when any of its MX hosts ends with one of Microsoft's MX suffixes
// (.olc.protection.outlook.com, .mail.protection.outlook.com, .mx.microsoft,
// .mail.eo.outlook.com, .mail.protection.office365.us,
// .mail.protection.partner.outlook.cn) or one of the admin's extra suffixes.
// MX answers are cached, positive and negative (RFC 2308 §5), for their TTL
// within configured bounds, and concurrent lookups of one domain share a
// single DNS query.
//
// The package answers the question and nothing more. When the answer cannot
// be known (SERVFAIL, timeout, network error) Detect returns an error
// wrapping ErrLookup and caches nothing; what the message then gets is the
// caller's configured choice (on_dns_failure: fail open or closed). It does
// not read the clock for its decisions either: callers pass now.
package detect
