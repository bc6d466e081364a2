// Package milter is msgate's protocol adapter: it speaks the Sendmail milter
// protocol to Postfix or Sendmail, turns each command into a policy call,
// and translates the returned policy.Decision into a milter reply. It knows
// the wire and no policy.
//
// It reads and writes the protocol's packets itself (wire.go), with
// github.com/emersion/go-milter's constants: go-milter's own session loop
// allocates a packet, a map and a 4 KiB write buffer per command, which
// under load cost more than msgate's decisions, and cannot leave commands
// unanswered. With an MTA of protocol version 6 (Postfix, Sendmail 8.14 and
// later) msgate negotiates the stages it does not need away, asks for no
// answer at connect and MAIL (each is then a write for the MTA, not a round
// trip), and accepts at DATA a message that needs nothing at end of message
// (no Microsoft recipient), so that the MTA leaves msgate out of the rest
// of it; older MTAs get version 2 and an answer to every command. Each
// stage's macros are asked for in the negotiation. A session keeps its
// connection data across the messages of one connection (msgate never
// sends a final accept or refusal), reads the
// macros each stage needs as their packet arrives, gives a transaction's
// reserved units back when the transaction is aborted or the connection
// drops, sends the stamp header, a quarantine request and the answer at end
// of message in one write, sets read and write deadlines, and shuts down
// gracefully. A policy problem never ends a connection, which would leave
// the answer to the MTA's milter_default_action.
package milter
