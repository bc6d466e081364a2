package config

import (
	"cmp"
	"encoding"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Key is the setting at fault as written in TOML, with the index of
	// array elements: "milter.listen", "rate[1].window". It is empty for a
	// TOML syntax error, whose Msg starts with the line instead.
	Key string
	Msg string
}

// String returns "KEY: MSG", or just MSG when there is no key.
func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// Error is a configuration that cannot be used, with every problem found in it.
type Error struct {
	File     string // as given to Load, or the name given to Parse
	Problems []Problem
}

// Error lists the problems one per line as "FILE: KEY: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteString(": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads the configuration file at path; see Parse. An error reading the
// file is returned wrapped (errors.Is(err, fs.ErrNotExist) works); every
// problem with its content is an *Error that names path as given.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a TOML configuration, fills every key it leaves unset with
// its default, and validates the result. Unknown keys and values of the wrong
// type are problems like invalid values. The error, if any, is an *Error
// naming the file as name and listing every problem, in the order of the keys
// in Config (unknown keys after the known ones of their table). A TOML syntax
// error is reported alone, with its line.
func Parse(data []byte, name string) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, &Error{File: name, Problems: []Problem{syntaxProblem(err)}}
	}
	cfg := Default()
	d := decoder{rank: map[string]int{}}
	d.table("", raw, reflect.ValueOf(cfg).Elem())

	problems := slices.Clone(d.problems)
	for _, p := range cfg.Validate() {
		// A value that did not decode left a default or zero behind;
		// what Validate thinks of that would only confuse.
		if !slices.ContainsFunc(d.problems, func(q Problem) bool { return within(p.Key, q.Key) }) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(d.rankOf(a.Key), d.rankOf(b.Key)) })
		return nil, &Error{File: name, Problems: problems}
	}
	cfg.normalize()
	return cfg, nil
}

func syntaxProblem(err error) Problem {
	if pe, ok := err.(toml.ParseError); ok {
		return Problem{Msg: fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)}
	}
	return Problem{Msg: err.Error()}
}

// within reports whether key is parent or a key under it ("rate[1].name" is
// within "rate[1]" and "rate", not within "rat").
func within(key, parent string) bool {
	if !strings.HasPrefix(key, parent) {
		return false
	}
	rest := key[len(parent):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

// parentKey strips the last element of a key: "rate[1].name" -> "rate[1]" ->
// "rate" -> "".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// decoder fills a Config from the generic map that toml.Decode produces,
// driven by the toml struct tags. Unlike toml.Decode into the struct, it
// goes on past a value of the wrong type, names array elements by index and
// matches keys case-sensitively, as TOML does.
type decoder struct {
	problems []Problem
	rank     map[string]int // order in which keys were visited, for sorting problems
}

func (d *decoder) visit(key string) {
	if _, ok := d.rank[key]; !ok {
		d.rank[key] = len(d.rank)
	}
}

func (d *decoder) rankOf(key string) int {
	for ; key != ""; key = parentKey(key) {
		if r, ok := d.rank[key]; ok {
			return r
		}
	}
	return -1 // syntax errors and whole-file problems come first
}

func (d *decoder) problem(key, format string, args ...any) {
	d.visit(key)
	d.problems = append(d.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// field is a TOML key of a struct.
type field struct {
	name     string
	index    int
	required bool // set by the tag msgate:"required"
}

func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{name: name, index: i, required: f.Tag.Get("msgate") == "required"})
	}
	return fs
}

// table decodes the TOML table raw into the struct v. Keys raw does not
// have keep v's values.
func (d *decoder) table(key string, raw map[string]any, v reflect.Value) {
	fields := fieldsOf(v.Type())
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
		k := joinKey(key, f.name)
		d.visit(k)
		val, ok := raw[f.name]
		if !ok {
			if f.required {
				d.problem(k, "required")
			}
			continue
		}
		d.value(k, val, v.Field(f.index))
	}
	var unknown []string
	for name := range raw {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		what := "key"
		switch raw[name].(type) {
		case map[string]any, []map[string]any:
			what = "table"
		}
		d.problem(joinKey(key, name), "unknown %s%s", what, suggest(name, fields, v.Type()))
	}
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// value decodes one TOML value into v, leaving v as it was if the value has
// the wrong type.
func (d *decoder) value(key string, raw any, v reflect.Value) {
	t := v.Type()
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := raw.(string)
		if !ok {
			d.mismatch(key, t, raw)
			return
		}
		nv := reflect.New(t)
		if err := nv.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.problem(key, "%v", err)
			return
		}
		v.Set(nv.Elem())
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.mismatch(key, t, raw)
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.mismatch(key, t, raw)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			d.mismatch(key, t, raw)
			return
		}
		if v.OverflowInt(n) {
			d.problem(key, "%d is too large", n)
			return
		}
		v.SetInt(n)
	case reflect.Float64:
		switch n := raw.(type) {
		case float64:
			v.SetFloat(n)
		case int64:
			v.SetFloat(float64(n))
		default:
			d.mismatch(key, t, raw)
		}
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.mismatch(key, t, raw)
			return
		}
		d.table(key, m, v)
	case reflect.Slice:
		var elems []any
		switch a := raw.(type) {
		case []any:
			elems = a
		case []map[string]any:
			for _, m := range a {
				elems = append(elems, m)
			}
		default:
			d.mismatch(key, t, raw)
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			ev := s.Index(i)
			if dv, ok := ev.Addr().Interface().(interface{ setDefaults() }); ok {
				dv.setDefaults()
			}
			k := fmt.Sprintf("%s[%d]", key, i)
			d.visit(k)
			d.value(k, e, ev)
		}
		v.Set(s)
	default:
		panic(fmt.Sprintf("config: no decoding for %s (%s)", key, t))
	}
}

func (d *decoder) mismatch(key string, want reflect.Type, raw any) {
	d.problem(key, "must be %s, not %s", describeType(want), describeValue(raw))
}

func describeType(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a duration string such as "90s", "1h30m" or "7d"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Struct:
		return "a table"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "an array of tables"
	case t.Kind() == reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	}
	return t.String()
}

func describeValue(raw any) string {
	switch v := raw.(type) {
	case string:
		return fmt.Sprintf("a string (%q)", v)
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		return fmt.Sprintf("a float (%v)", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case time.Time:
		return "a date/time"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("%T", raw)
}

// suggest returns a hint naming the known key that name is most likely a
// misspelling of, or the table where name belongs, or "".
func suggest(name string, fields []field, in reflect.Type) string {
	best, bestDist := "", 3 // at most two edits away
	for _, f := range fields {
		if strings.EqualFold(name, f.name) {
			return fmt.Sprintf(" (did you mean %q? keys are case-sensitive)", f.name)
		}
		if dist := editDistance(name, f.name); dist < bestDist && dist < len(f.name) {
			best, bestDist = f.name, dist
		}
	}
	if best == "" {
		// "listen_addr" for "listen", "timeout" for "dns_timeout"
		for _, f := range fields {
			if len(name) >= 4 && len(f.name) >= 4 && (strings.HasPrefix(name, f.name) || strings.HasSuffix(f.name, name)) {
				best = f.name
				break
			}
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	var homes []string
	for _, t := range tables {
		if t.typ != in && slices.ContainsFunc(fieldsOf(t.typ), func(f field) bool { return f.name == name }) {
			homes = append(homes, t.header)
		}
	}
	if len(homes) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s belongs in %s)", name, strings.Join(homes, " or "))
}

// schemaTable is a table of Config with the header that opens it.
type schemaTable struct {
	header string // "[milter]", "[[rate]]"
	typ    reflect.Type
}

var tables = func() []schemaTable {
	var ts []schemaTable
	ct := reflect.TypeFor[Config]()
	for _, f := range fieldsOf(ct) {
		switch t := ct.Field(f.index).Type; {
		case t.Kind() == reflect.Struct:
			ts = append(ts, schemaTable{"[" + f.name + "]", t})
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			ts = append(ts, schemaTable{"[[" + f.name + "]]", t.Elem()})
		}
	}
	return ts
}()

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinKey appends name to the TOML key parent, quoting name when it is not
// a bare key.
func joinKey(parent, name string) string {
	k := toml.Key{name}.String()
	if parent == "" {
		return k
	}
	return parent + "." + k
}
