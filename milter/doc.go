// Package milter is msgate's protocol adapter: it speaks the Sendmail milter
// protocol to Postfix or Sendmail through github.com/emersion/go-milter,
// turns each callback into a policy call, and translates the returned
// policy.Decision into a milter reply. It knows the wire and no policy.
//
// It also does what the library leaves to its users (see
// ../shared/notes/real-mtas.md): it keeps a session's data across the
// messages of one connection by never sending a final response (which would
// make the library replace the handler), copies macros as each packet
// arrives, gives a transaction's reserved units back when the transaction is
// aborted or the connection drops, sets read and write deadlines, and shuts
// down gracefully. A policy problem never becomes a callback error, which
// would drop the connection and leave the answer to milter_default_action.
package milter
