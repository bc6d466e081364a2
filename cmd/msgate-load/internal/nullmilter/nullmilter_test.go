package nullmilter

import (
	"context"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

func TestParseMode(t *testing.T) {
	for _, s := range []string{"full", "envelope"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("body"); err == nil {
		t.Error(`ParseMode("body") succeeded`)
	}
}

func TestProtocol(t *testing.T) {
	if ModeFull.Protocol() != 0 {
		t.Errorf("full negotiates %#x away", ModeFull.Protocol())
	}
	// The envelope form negotiates away what msgate does and sets no
	// "no reply" flag, which go-milter v0.5 cannot honour.
	want := gomilter.OptNoHelo | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody | gomilter.OptNoUnknown | gomilter.OptNoData
	if got := ModeEnvelope.Protocol(); got != want {
		t.Errorf("envelope %#x, want %#x", got, want)
	}
}

// Serve returns nil when its context ends.
func TestServeStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, ModeFull) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
}
