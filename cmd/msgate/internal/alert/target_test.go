package alert

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/msgate/msgate/policy/config"
)

func TestAlertHTTPTarget(t *testing.T) {
	var got *http.Request
	var body string
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	tg := HTTP(srv.URL+"/hook", []config.HTTPHeader{{Name: "Authorization", Value: "Bearer s3cret"}, {Name: "X-Team", Value: "mail"}})
	if err := tg.Send(context.Background(), []byte(`{"event":"flagged"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/hook" || got.Header.Get("Content-Type") != "application/json" ||
		got.Header.Get("Authorization") != "Bearer s3cret" || got.Header.Get("X-Team") != "mail" || body != `{"event":"flagged"}`+"\n" {
		t.Errorf("request %s %s %v body %q", got.Method, got.URL, got.Header, body)
	}
	for _, s := range []int{http.StatusInternalServerError, http.StatusFound, http.StatusUnauthorized} {
		status = s
		err := tg.Send(context.Background(), []byte("{}"))
		if err == nil || !strings.Contains(err.Error(), http.StatusText(s)) {
			t.Errorf("answer %d: error %v, want one naming the status", s, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows a header: %v", err)
		}
	}
}

func TestAlertHTTPTargetDeadReceivers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	if err := HTTP(closed, nil).Send(context.Background(), []byte("{}")); err == nil {
		t.Error("a closed port was a delivery")
	}
	// A receiver that never answers: the attempt ends with its context.
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- HTTP(srv.URL, nil).Send(ctx, []byte("{}")) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("hung receiver: %v, want context.Canceled", err)
	}
	u := "http://msgate:pa55word@" + strings.TrimPrefix(closed, "http://")
	if err := HTTP(u, nil).Send(context.Background(), []byte("{}")); err == nil || strings.Contains(err.Error(), "pa55word") {
		t.Errorf("the error shows the URL's password: %v", err)
	}
}

func TestAlertCommandTarget(t *testing.T) {
	var argv []string
	var stdin []byte
	run := func(_ context.Context, a []string, in []byte) error {
		argv, stdin = a, in
		if a[1] == "fail" {
			return errors.New("exit status 3")
		}
		return nil
	}
	if err := Command([]string{"/usr/local/bin/notify", "ok"}, run).Send(context.Background(), []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(argv, []string{"/usr/local/bin/notify", "ok"}) || string(stdin) != "{}\n" {
		t.Errorf("ran %q with %q", argv, stdin)
	}
	if err := Command([]string{"/usr/local/bin/notify", "fail"}, run).Send(context.Background(), nil); err == nil {
		t.Error("a failing command was a delivery")
	}
}
