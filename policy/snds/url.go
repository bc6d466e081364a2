package snds

import (
	"fmt"
	"net/url"
	"time"
)

// DataURL is the data export's address under base (SNDS's automated
// access root, ending in "/"): the latest day's data, or date's when it is
// not zero.
func DataURL(base, key string, date time.Time) (string, error) {
	q := url.Values{"key": {key}}
	if !date.IsZero() {
		q.Set("date", date.Format("010206"))
	}
	return endpoint(base, "data.aspx", q)
}

// StatusURL is the IP status export's address under base.
func StatusURL(base, key string) (string, error) {
	return endpoint(base, "ipStatus.aspx", url.Values{"key": {key}})
}

func endpoint(base, page string, q url.Values) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("SNDS base URL %q is not an http(s) URL", base)
	}
	u = u.JoinPath(page)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
