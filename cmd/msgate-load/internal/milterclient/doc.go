// Package milterclient speaks the MTA's side of the Sendmail milter
// protocol the way Postfix's milter8 client does, for load generation and
// tests: it offers protocol version 6 with every action and every protocol
// flag, and then sends only what the milter negotiated.
//
// What the milter negotiates is honoured stage by stage:
//
//   - a stage it negotiated away (SMFIP_NOCONNECT, NOHELO, NOMAIL, NORCPT,
//     NOHDRS, NOEOH, NOBODY, NODATA) is not sent, and neither is DATA to a
//     milter of protocol version 2 or 3, which has no such stage;
//   - a stage it said it will not answer (SMFIP_NR_CONN ... NR_BODY, NR_HDR)
//     is sent and no reply is awaited, as Postfix does even for milters that
//     claim version 2 (go-milter v0.5 breaks on this: it answers anyway);
//   - the macros of a stage are the milter's own list when it sent one
//     (SMFIF_SETSYMLIST), else Postfix's defaults. Like Postfix, the macros
//     of a stage that exists in the milter's protocol version are sent even
//     when the stage itself was negotiated away; a stage whose macros are
//     all undefined sends no macro packet (Postfix sends an empty one);
//   - SMFIR_SKIP stops the headers or body chunks that remain; SMFIP_HDR_LEADSPC
//     sends header values with their leading space.
//
// What a reply means follows Postfix too: an accept or a refusal at connect
// or HELO holds for the whole connection and nothing more is sent on it; an
// accept or discard in a transaction ends the milter's part in that message;
// a refusal of MAIL or of the message aborts the transaction (SMFIC_ABORT);
// a refused recipient is only that recipient, and a transaction left
// without recipients is aborted. Writes are buffered and flushed when a
// reply is awaited, so macros and their command travel in one write, as
// with Postfix's VSTREAMs. SMFIC_UNKNOWN is never sent: the transactions
// built here have no unknown SMTP commands.
//
// msgate's own milter.Client, on go-milter's ClientSession, cannot send
// DATA or body chunks, ignores the milter's macro lists, and writes every
// packet through a new buffer in a system call of its own. A load tool
// shares the CPU with the milter it measures, and rspamd (protocol 6, which
// expects DATA and answers only at end of message) must see what Postfix
// would send it.
package milterclient
