package milter

import "testing"

func TestAckAtOnceDetectsSplitWrites(t *testing.T) {
	macroOnly := []byte{0, 0, 0, 5, 'D', 'M', 'i', 0, 0}
	macroOnly = macroOnly[:4+5]
	macroAndMail := append(append([]byte(nil), macroOnly...), 0, 0, 0, 3, 'M', '<', '>')
	for _, tt := range []struct {
		name  string
		reads [][]byte
		want  bool
	}{
		{"Postfix: macro and command together", [][]byte{macroAndMail, macroAndMail}, false},
		{"Sendmail: macro packet alone", [][]byte{macroAndMail, macroOnly}, true},
		{"a command alone", [][]byte{{0, 0, 0, 1, 'E'}}, false},
		{"too short", [][]byte{{0, 0, 0}}, false},
	} {
		c := &conn{}
		for _, r := range tt.reads {
			c.ackAtOnce(r)
		}
		if c.splitWrites != tt.want {
			t.Errorf("%s: splitWrites = %v, want %v", tt.name, c.splitWrites, tt.want)
		}
	}
}
