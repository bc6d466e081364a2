package policy

import (
	"strings"
)

// AccountKind says where an account's name came from.
type AccountKind string

const (
	AccountSASL   AccountKind = "sasl"
	AccountSender AccountKind = "sender"
	AccountIP     AccountKind = "ip"
	AccountNone   AccountKind = "none"
)

// Envelope is what the MTA told msgate about the sending side of one
// transaction.
type Envelope struct {
	SASLLogin string // {auth_authen}; empty when the client did not authenticate
	Sender    string // envelope sender without angle brackets
	// NullSender is true for MAIL FROM:<> (bounces).
	NullSender bool
	ClientIP   string // {client_addr} or the connect address
	// NonSMTP is true for mail that did not come over SMTP (Postfix's
	// sendmail command): it cannot be refused per recipient.
	NonSMTP bool
	QueueID string
}

// Account is who is sending.
type Account struct {
	Name string
	Kind AccountKind
}

// AccountOf names the sending account of an envelope: the SASL login when
// there is one, else the lower-cased envelope sender, else the client IP.
// Mail from the null sender (bounces) belongs to no account, and so does a
// transaction that names no one at all.
func AccountOf(env Envelope) Account {
	if login := strings.TrimSpace(env.SASLLogin); login != "" {
		return Account{Name: login, Kind: AccountSASL}
	}
	if env.NullSender {
		return Account{Kind: AccountNone}
	}
	if sender := strings.Trim(strings.TrimSpace(env.Sender), "<>"); sender != "" {
		return Account{Name: strings.ToLower(sender), Kind: AccountSender}
	}
	if ip := strings.TrimSpace(env.ClientIP); ip != "" {
		return Account{Name: ip, Kind: AccountIP}
	}
	return Account{Kind: AccountNone}
}

// Domain returns the lower-cased domain of an address, or "" when it has
// none ("postmaster").
func Domain(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}
