package milterclient

import "strconv"

// Version is the milter protocol version offered: Postfix's highest.
const Version = 6

// Actions are the SMFIF_* flags: what a milter may ask of the MTA.
type Actions uint32

const (
	AddHeaders    Actions = 1 << 0 // SMFIF_ADDHDRS (also insert header)
	ChangeBody    Actions = 1 << 1 // SMFIF_CHGBODY
	AddRcpt       Actions = 1 << 2 // SMFIF_ADDRCPT
	DelRcpt       Actions = 1 << 3 // SMFIF_DELRCPT
	ChangeHeaders Actions = 1 << 4 // SMFIF_CHGHDRS
	Quarantine    Actions = 1 << 5 // SMFIF_QUARANTINE
	ChangeFrom    Actions = 1 << 6 // SMFIF_CHGFROM
	AddRcptArgs   Actions = 1 << 7 // SMFIF_ADDRCPT_PAR
	SetSymList    Actions = 1 << 8 // SMFIF_SETSYMLIST

	// AllActions is what Postfix 3 offers.
	AllActions Actions = 1<<9 - 1
)

// Protocol holds the SMFIP_* flags: stages the milter does not want, and
// stages it will not answer.
type Protocol uint32

const (
	NoConnect       Protocol = 1 << 0  // SMFIP_NOCONNECT
	NoHelo          Protocol = 1 << 1  // SMFIP_NOHELO
	NoMail          Protocol = 1 << 2  // SMFIP_NOMAIL
	NoRcpt          Protocol = 1 << 3  // SMFIP_NORCPT
	NoBody          Protocol = 1 << 4  // SMFIP_NOBODY
	NoHeaders       Protocol = 1 << 5  // SMFIP_NOHDRS
	NoEOH           Protocol = 1 << 6  // SMFIP_NOEOH
	NoReplyHeader   Protocol = 1 << 7  // SMFIP_NR_HDR (SMFIP_NOHREPL)
	NoUnknown       Protocol = 1 << 8  // SMFIP_NOUNKNOWN
	NoData          Protocol = 1 << 9  // SMFIP_NODATA
	Skip            Protocol = 1 << 10 // SMFIP_SKIP: the MTA understands SMFIR_SKIP
	RcptRej         Protocol = 1 << 11 // SMFIP_RCPT_REJ
	NoReplyConnect  Protocol = 1 << 12 // SMFIP_NR_CONN
	NoReplyHelo     Protocol = 1 << 13 // SMFIP_NR_HELO
	NoReplyMail     Protocol = 1 << 14 // SMFIP_NR_MAIL
	NoReplyRcpt     Protocol = 1 << 15 // SMFIP_NR_RCPT
	NoReplyData     Protocol = 1 << 16 // SMFIP_NR_DATA
	NoReplyUnknown  Protocol = 1 << 17 // SMFIP_NR_UNKN
	NoReplyEOH      Protocol = 1 << 18 // SMFIP_NR_EOH
	NoReplyBody     Protocol = 1 << 19 // SMFIP_NR_BODY
	HeaderLeadSpace Protocol = 1 << 20 // SMFIP_HDR_LEADSPC

	// AllProtocol is what Postfix 3 offers with milter_protocol = 6.
	AllProtocol Protocol = 1<<21 - 1
)

// Stage is an event of an SMTP session that the MTA reports to the milter.
type Stage uint8

const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageData
	StageHeader
	StageEOH
	StageBody
	StageEOM
	numStages
)

// Stages lists every stage in the order of a session.
var Stages = []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageData, StageHeader, StageEOH, StageBody, StageEOM}

// Macro lists are indexed by the SMFIM_* numbers of the milter protocol.
const (
	macroConnect  = 0 // SMFIM_CONNECT
	macroHelo     = 1 // SMFIM_HELO
	macroMail     = 2 // SMFIM_ENVFROM
	macroRcpt     = 3 // SMFIM_ENVRCPT
	macroData     = 4 // SMFIM_DATA
	macroEOM      = 5 // SMFIM_EOM
	macroEOH      = 6 // SMFIM_EOH
	numMacroLists = 7
	noMacros      = -1
)

type stageInfo struct {
	name    string
	cmd     byte     // SMFIC_*
	skip    Protocol // the milter does not want the stage (0: always sent)
	noReply Protocol // the milter will not answer it (0: always answered)
	since   uint32   // the first protocol version that has the stage
	macros  int      // its macro list, or noMacros
}

var stages = [numStages]stageInfo{
	StageConnect: {"connect", 'C', NoConnect, NoReplyConnect, 2, macroConnect},
	StageHelo:    {"helo", 'H', NoHelo, NoReplyHelo, 2, macroHelo},
	StageMail:    {"mail", 'M', NoMail, NoReplyMail, 2, macroMail},
	StageRcpt:    {"rcpt", 'R', NoRcpt, NoReplyRcpt, 2, macroRcpt},
	StageData:    {"data", 'T', NoData, NoReplyData, 4, macroData},
	StageHeader:  {"header", 'L', NoHeaders, NoReplyHeader, 2, noMacros},
	StageEOH:     {"end-of-header", 'N', NoEOH, NoReplyEOH, 2, macroEOH},
	StageBody:    {"body", 'B', NoBody, NoReplyBody, 2, noMacros},
	StageEOM:     {"end-of-message", 'E', 0, 0, 2, macroEOM},
}

func (s Stage) String() string {
	if s < numStages {
		return stages[s].name
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// DefaultMacros are the macro lists sent when the milter names none for a
// stage: Postfix 3.7's defaults, plus {client_addr} and {client_name} at
// connect (as real-mtas.md's Postfix sets milter_connect_macros). Indexed
// like the SMFIM_* numbers: connect, helo, mail, rcpt, data, end of
// message, end of header. Macros without a value are not sent.
var DefaultMacros = [numMacroLists][]string{
	macroConnect: {"j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}", "{client_name}"},
	macroHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	macroMail:    {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	macroRcpt:    {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	macroData:    {"i"},
	macroEOM:     {"i"},
	macroEOH:     {"i"},
}

// Action is the milter's answer to a stage (SMFIR_*).
type Action byte

const (
	Continue  Action = 'c' // SMFIR_CONTINUE
	Accept    Action = 'a' // SMFIR_ACCEPT
	Reject    Action = 'r' // SMFIR_REJECT
	TempFail  Action = 't' // SMFIR_TEMPFAIL
	Discard   Action = 'd' // SMFIR_DISCARD
	ReplyCode Action = 'y' // SMFIR_REPLYCODE: a custom SMTP reply
	SkipRest  Action = 's' // SMFIR_SKIP: send no more of this stage's events
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case TempFail:
		return "tempfail"
	case Discard:
		return "discard"
	case ReplyCode:
		return "replycode"
	case SkipRest:
		return "skip"
	}
	return "action(" + strconv.QuoteRune(rune(a)) + ")"
}

// Reply is the milter's answer to one stage, or what stands for it.
type Reply struct {
	Stage Stage
	// Sent is false when the stage was not sent: the milter negotiated it
	// away, or an earlier answer made it moot.
	Sent bool
	// Replied is false when no answer was read: the stage was not sent, or
	// the milter negotiated not to answer it. Action is then Continue.
	Replied bool
	Action  Action
	// Code and Text are a ReplyCode's SMTP reply ("451", "4.7.1 ...").
	Code int
	Text string
}

// Refused reports a refusal: reject, tempfail, or a 4xx/5xx reply.
func (r Reply) Refused() bool {
	switch r.Action {
	case Reject, TempFail:
		return true
	case ReplyCode:
		return r.Code >= 400
	}
	return false
}

// decided reports an answer that ends the milter's part in what it was
// asked about: anything but continue and skip.
func (r Reply) decided() bool { return r.Action != Continue && r.Action != SkipRest }

// Outcome names the reply for counting: continue, accept, reject, tempfail,
// discard, reply-4xx or reply-5xx.
func (r Reply) Outcome() string {
	if r.Action == ReplyCode {
		switch r.Code / 100 {
		case 4:
			return "reply-4xx"
		case 5:
			return "reply-5xx"
		}
		return "reply-other"
	}
	return r.Action.String()
}

// Modifications counts the changes the milter asked for at end of message.
type Modifications struct {
	AddHeader    int `json:"add_header"`
	InsertHeader int `json:"insert_header"`
	ChangeHeader int `json:"change_header"`
	Quarantine   int `json:"quarantine"`
	AddRcpt      int `json:"add_rcpt"`
	DelRcpt      int `json:"del_rcpt"`
	ReplaceBody  int `json:"replace_body"`
	ChangeFrom   int `json:"change_from"`
}

// Add adds n's counts to m.
func (m *Modifications) Add(n Modifications) {
	m.AddHeader += n.AddHeader
	m.InsertHeader += n.InsertHeader
	m.ChangeHeader += n.ChangeHeader
	m.Quarantine += n.Quarantine
	m.AddRcpt += n.AddRcpt
	m.DelRcpt += n.DelRcpt
	m.ReplaceBody += n.ReplaceBody
	m.ChangeFrom += n.ChangeFrom
}

// modification is one SMFIR_* edit request and the action it needs.
type modification struct {
	needs Actions
	count func(*Modifications) *int
}

var modifications = map[byte]modification{
	'h': {AddHeaders, func(m *Modifications) *int { return &m.AddHeader }},          // SMFIR_ADDHEADER
	'i': {AddHeaders, func(m *Modifications) *int { return &m.InsertHeader }},       // SMFIR_INSHEADER
	'm': {ChangeHeaders, func(m *Modifications) *int { return &m.ChangeHeader }},    // SMFIR_CHGHEADER
	'q': {Quarantine, func(m *Modifications) *int { return &m.Quarantine }},         // SMFIR_QUARANTINE
	'+': {AddRcpt | AddRcptArgs, func(m *Modifications) *int { return &m.AddRcpt }}, // SMFIR_ADDRCPT
	'2': {AddRcptArgs, func(m *Modifications) *int { return &m.AddRcpt }},           // SMFIR_ADDRCPT_PAR
	'-': {DelRcpt, func(m *Modifications) *int { return &m.DelRcpt }},               // SMFIR_DELRCPT
	'b': {ChangeBody, func(m *Modifications) *int { return &m.ReplaceBody }},        // SMFIR_REPLBODY
	'e': {ChangeFrom, func(m *Modifications) *int { return &m.ChangeFrom }},         // SMFIR_CHGFROM
}
