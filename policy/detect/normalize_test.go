package detect

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		in   string
		want string // "" = invalid
	}{
		{"example.com", "example.com"},
		{" Hotmail.COM. ", "hotmail.com"},
		{"\texample.com\r\n", "example.com"},
		{"EXAMPLE.com.", "example.com"},
		{"sub.example.co.uk", "sub.example.co.uk"},
		{"123.example.com", "123.example.com"},
		{"a-b.example", "a-b.example"},
		{"xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"bücher.de", "xn--bcher-kva.de"},
		{"BÜCHER.de.", "xn--bcher-kva.de"},
		{"Bücher.DE", "xn--bcher-kva.de"},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah"},
		{"example\u3002com", "example.com"},
		{"example.com\u3002", "example.com"},
		{long63 + ".com", long63 + ".com"},

		{"", ""},
		{"   ", ""},
		{".", ""},
		{"..", ""},
		{"example.com..", ""},
		{".example.com", ""},
		{"a..b.com", ""},
		{"[1.2.3.4]", ""},
		{"[IPv6:2001:db8::1]", ""},
		{"1.2.3.4", ""},
		{"example.123", ""},
		{"localhost", ""},
		{"-a.com", ""},
		{"a-.com", ""},
		{"exa mple.com", ""},
		{"a_b.com", ""},
		{"user@example.com", ""},
		{"example.com/", ""},
		{long63 + "a.com", ""},
		{strings.Repeat("a.", 126) + "com", ""}, // 255 bytes
		{"\xff.com", ""},
		{"\ufffd.com", ""},
		{"\u200b.com", ""},
		{"bü\x00cher.de", ""},
	}
	for _, tt := range tests {
		got, ok := normalize(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("normalize(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.want != "")
		}
	}
}

func TestNormalizeLengthLimit(t *testing.T) {
	name := strings.Repeat("a.", 125) + "com" // 253 bytes: the longest name
	if got, ok := normalize(name + "."); !ok || got != name {
		t.Errorf("253-byte name refused")
	}
	if _, ok := normalize("a" + name); ok {
		t.Errorf("254-byte name accepted")
	}
}

func TestNormalizeCanonicalDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := normalize(" example.com. "); !ok {
			t.Fatal("refused")
		}
	})
	if allocs != 0 {
		t.Errorf("normalize allocates %v times for canonical input", allocs)
	}
}

func TestMatchSuffix(t *testing.T) {
	tests := []struct {
		host, suffix string
		want         bool
	}{
		{"x.mail.protection.outlook.com", "mail.protection.outlook.com", true},
		{"mail.protection.outlook.com", "mail.protection.outlook.com", true},
		{"a.b.mx.microsoft", "mx.microsoft", true},
		{"xmail.protection.outlook.com", "mail.protection.outlook.com", false},
		{"x.mail.protection.outlook.com.evil.net", "mail.protection.outlook.com", false},
		{"protection.outlook.com", "mail.protection.outlook.com", false},
		{"", "mx.microsoft", false},
		{"microsoft", "mx.microsoft", false},
	}
	for _, tt := range tests {
		if got := matchSuffix(tt.host, tt.suffix); got != tt.want {
			t.Errorf("matchSuffix(%q, %q) = %v, want %v", tt.host, tt.suffix, got, tt.want)
		}
	}
}
