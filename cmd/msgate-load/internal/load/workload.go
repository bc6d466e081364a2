package load

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/msgate/msgate/cmd/msgate-load/internal/milterclient"
)

// poolSize is how many recipient addresses each class of domain has.
const poolSize = 4096

// workload holds what every session draws its messages from; it is read
// only once made.
type workload struct {
	cfg        Config
	accounts   []string // account addresses; an authenticated login is the address
	msRcpts    []string
	otherRcpts []string
	body       []byte
}

var subjects = []string{
	"Invoice 2024-118", "Re: meeting on Thursday", "Your order has shipped", "Weekly report",
	"Fwd: photos", "Password reset requested", "Newsletter: what's new", "Re: Re: quote request",
}

func newWorkload(cfg Config) *workload {
	w := &workload{cfg: cfg, accounts: make([]string, cfg.Accounts)}
	for i := range w.accounts {
		w.accounts[i] = "user" + strconv.Itoa(i) + "@example.org"
	}
	w.msRcpts = rcptPool(cfg.MSDomains)
	w.otherRcpts = rcptPool(cfg.OtherDomains)
	w.body = makeBody(cfg.BodySize)
	return w
}

func rcptPool(domains []string) []string {
	if len(domains) == 0 {
		return nil
	}
	pool := make([]string, poolSize)
	for i := range pool {
		pool[i] = "rcpt" + strconv.Itoa(i) + "@" + domains[i%len(domains)]
	}
	return pool
}

// makeBody returns size bytes of text in CRLF lines.
func makeBody(size int) []byte {
	const line = "The quick brown fox jumps over the lazy dog, and then it sends an e-mail about it.\r\n"
	b := make([]byte, 0, size)
	for len(b) < size {
		b = append(b, line[:min(len(line), size-len(b))]...)
	}
	return b
}

// generator makes one session's messages. The Message it returns is reused
// by the next call.
type generator struct {
	w       *workload
	rng     *rand.Rand
	session uint64
	auth    bool
	seq     uint64
	date    string
	msg     milterclient.Message
	ms      []bool // whether each recipient of msg is at a Microsoft domain
	headers [5]milterclient.Header
	buf     []byte
}

func (w *workload) generator(session int) *generator {
	g := &generator{
		w:       w,
		rng:     rand.New(rand.NewPCG(w.cfg.Seed, uint64(session))),
		session: uint64(session),
		auth:    session < w.cfg.authSessions(),
		date:    time.Now().Format(time.RFC1123Z),
	}
	g.msg.Body = w.body
	return g
}

// client is the SMTP client of a session: an address from the
// documentation ranges (RFC 5737), which never leaves the macros.
func (g *generator) client() milterclient.Client {
	nets := [...]string{"192.0.2.", "198.51.100.", "203.0.113."}
	n := g.session % (3 * 254)
	addr := nets[n/254] + strconv.Itoa(int(n%254)+1)
	name := "client" + strconv.Itoa(int(g.session)) + ".load.test"
	return milterclient.Client{Name: name, Addr: addr, Port: uint16(40000 + g.session%20000), Helo: name}
}

// next makes the session's next message.
func (g *generator) next() *milterclient.Message {
	cfg := &g.w.cfg
	g.seq++
	m := &g.msg

	// A queue id like Postfix's short ones: upper-case hex, unique per run.
	g.buf = strconv.AppendUint(g.buf[:0], g.session<<32|g.seq, 16)
	for i, c := range g.buf {
		if c >= 'a' {
			g.buf[i] = c - 'a' + 'A'
		}
	}
	m.QueueID = string(g.buf)

	m.From = g.w.accounts[g.rng.IntN(len(g.w.accounts))]
	m.Login = ""
	if g.auth {
		m.Login = m.From
	}

	n := cfg.RcptsMin
	if cfg.RcptsMax > cfg.RcptsMin {
		n += g.rng.IntN(cfg.RcptsMax - cfg.RcptsMin + 1)
	}
	m.Rcpts, g.ms = m.Rcpts[:0], g.ms[:0]
	for range n {
		ms := g.rng.Float64() < cfg.MSFraction
		pool := g.w.otherRcpts
		if ms {
			pool = g.w.msRcpts
		}
		m.Rcpts = append(m.Rcpts, pool[g.rng.IntN(len(pool))])
		g.ms = append(g.ms, ms)
	}

	g.buf = append(append(append(g.buf[:0], '<'), m.QueueID...), "@mx.load.test>"...)
	g.headers = [5]milterclient.Header{
		{Name: "From", Value: m.From},
		{Name: "To", Value: m.Rcpts[0]},
		{Name: "Subject", Value: subjects[g.rng.IntN(len(subjects))]},
		{Name: "Message-ID", Value: string(g.buf)},
		{Name: "Date", Value: g.date},
	}
	m.Headers = g.headers[:]
	return m
}
