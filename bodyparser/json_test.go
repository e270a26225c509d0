package bodyparser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseJSON checks the hand-written JSON parser against encoding/json:
// it never panics, it refuses with a 400 (or, past a limit, the limit's
// answer), and past its limits it refuses only bodies that the standard
// decoder sees exceed them. Under them it accepts exactly the objects and
// arrays encoding/json accepts (after body-parser's strict first-character
// rule), reads the same values, and orders keys as JavaScript does.
// Numbers are compared as strconv.ParseFloat reads encoding/json's text, so
// that 1e400 is +Inf in both, as in JavaScript, where json.Unmarshal into a
// float64 would refuse it.
func FuzzParseJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `{"email":"a@b.co","password":"x"}`, `{"a":1,"a":2}`, `{"2":1,"1":2,"b":3}`,
		`{"s":"\ud83d\ude00 \u00e9 \n \" \\ \/"}`, `{"n":-1.5e3,"z":0,"t":true,"f":false,"u":null}`,
		`[1,[2,{"x":[]}]]`, `{"a":{"b":{"c":[1,2,3]}}}`, ` {"a" : 1 } `, "\ufeff{}", "{\"a\":\"\xff\"}",
		`{"a":01}`, `{"a":1,}`, `{"a"}`, `{"a":"\x01"}`, `{"a":"\u12"}`, `{"a":1}x`, `null`, `"x"`, ``, ` `,
		`{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`, `{"a":"`, `[1 2]`, `{"a" 1}`,
		`[1e400,-1e400,1e-400,-0]`, `{"n":` + strings.Repeat("9", 400) + `}`,
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		strings.Repeat(`{"a":`, 65) + "0" + strings.Repeat("}", 65),
		"[" + strings.Repeat("0,", 1000) + "0]", `{"4294967294":0,"4294967295":0,"01":0,"10":0,"9":0}`,
		`{"__proto__":{"a":1},"constructor":0}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := parseJSON(string(raw))
		status, msg, ok := answer(err)
		if err != nil && !ok {
			t.Fatalf("parseJSON(%q) = %v, want an *Error or a *SyntaxError", raw, err)
		}
		if err != nil {
			if err == errTooManyMembers || strings.HasPrefix(msg, "Nesting deeper than") {
				if !exceedsJSONLimits(raw) {
					t.Fatalf("parseJSON(%q) = %d %v, but the body is within the limits", raw, status, msg)
				}
				return
			}
			if status != 400 {
				t.Fatalf("parseJSON(%q) answered %d, want 400", raw, status)
			}
		}

		stdOK := json.Valid(raw)
		if i := bytes.IndexFunc(raw, func(r rune) bool { return !strings.ContainsRune(" \t\n\r", r) }); i < 0 || raw[i] != '{' && raw[i] != '[' {
			stdOK = false // body-parser's strict mode: an object or an array
		}
		if len(raw) == 0 {
			stdOK = true // an empty body is {}
		}
		if (err == nil) != stdOK {
			t.Fatalf("parseJSON(%q) error = %v, json.Valid = %v", raw, err, stdOK)
		}
		if err != nil {
			return
		}
		var want any = map[string]any{}
		if len(raw) > 0 {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&want); err != nil {
				t.Fatalf("json.Decode(%q): %v, where json.Valid accepts it", raw, err)
			}
			want = floats(want)
		}
		if arr, ok := want.([]any); ok {
			m := map[string]any{}
			for i, v := range arr {
				m[itoa(i)] = v
			}
			want = m
		}
		if got := plain(got); !reflect.DeepEqual(got, want) {
			t.Fatalf("parseJSON(%q) = %#v, encoding/json = %#v", raw, got, want)
		}
		checkKeyOrder(t, got)
	})
}

// exceedsJSONLimits reports whether encoding/json's tokenizer, reading raw,
// finds objects or arrays nested deeper than maxJSONDepth, or one with more
// than maxJSONMembers members, before any syntax error.
func exceedsJSONLimits(raw []byte) bool {
	type level struct {
		object   bool
		keys     map[string]bool
		elements int
		wantKey  bool
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		switch {
		case top != nil && top.object && top.wantKey:
			key := tok.(string)
			if !top.keys[key] && len(top.keys) == maxJSONMembers {
				return true
			}
			top.keys[key], top.wantKey = true, false
			continue
		case top != nil && top.object:
			top.wantKey = true // this token is the value
		case top != nil:
			if top.elements++; top.elements > maxJSONMembers {
				return true
			}
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) == maxJSONDepth {
				return true
			}
			stack = append(stack, &level{object: d == '{', keys: map[string]bool{}, wantKey: true})
		}
	}
}

// floats turns encoding/json's numbers into float64, as JavaScript reads
// them: out of range is ±Inf (or 0), not an error.
func floats(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, _ := strconv.ParseFloat(string(v), 64)
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = floats(e)
		}
	case []any:
		for i, e := range v {
			v[i] = floats(e)
		}
	}
	return v
}

// checkKeyOrder checks every object's keys: array indexes first, ascending.
func checkKeyOrder(t *testing.T, v any) {
	t.Helper()
	switch v := v.(type) {
	case *Object:
		checkKeys(t, v)
		for _, m := range v.members {
			checkKeyOrder(t, m.val)
		}
	case []any:
		for _, e := range v {
			checkKeyOrder(t, e)
		}
	}
}

// checkKeys checks an object's keys: unique, each found by Get, array
// indexes first in ascending order.
func checkKeys(t *testing.T, o *Object) {
	t.Helper()
	keys := make([]string, o.Len())
	seen := map[string]bool{}
	for i := range o.Len() {
		k, v := o.At(i)
		keys[i] = k
		if seen[k] {
			t.Fatalf("key %q twice", k)
		}
		seen[k] = true
		if got, ok := o.Get(k); !ok || !reflect.DeepEqual(got, v) {
			t.Fatalf("Get(%q) = %#v, %v; At(%d) has %#v", k, got, ok, i, v)
		}
	}
	last, indexes := -1, true
	for _, k := range keys {
		n, isIndex := arrayIndex(k)
		switch {
		case isIndex && !indexes:
			t.Fatalf("index key %q after other keys in %q", k, keys)
		case isIndex && int(n) <= last:
			t.Fatalf("index key %q out of order in %q", k, keys)
		case isIndex:
			last = int(n)
		default:
			indexes = false
		}
	}
}

// plain turns parsed values into encoding/json's: objects become maps.
func plain(v any) any {
	switch v := v.(type) {
	case *Object:
		m := make(map[string]any, v.Len())
		for _, e := range v.members {
			m[e.key] = plain(e.val)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = plain(e)
		}
		return out
	}
	return v
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestParseJSONLimits(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	nestObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	members := func(n int, unit string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(unit, i)
		}
		return strings.Join(parts, ",")
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int    // 0: accepted
		msg    string // the message of a refusal
	}{
		{"64 arrays deep", nest(64), 0, ""},
		{"65 arrays deep", nest(65), 400, "Nesting deeper than 64 levels in JSON at position 64"},
		{"64 objects deep", nestObj(64), 0, ""},
		{"65 objects deep", nestObj(65), 400, "Nesting deeper than 64 levels in JSON at position 320"},
		{"10k unclosed", strings.Repeat("[", 10_000), 400, "Nesting deeper than 64 levels in JSON at position 64"},
		{"depth counts open brackets only", "[" + strings.Repeat(nest(63)+",", 100) + "0]", 0, ""},
		{"1000 keys", "{" + members(1000, `"%d":0`) + "}", 0, ""},
		{"1001 keys", "{" + members(1001, `"%d":0`) + "}", 413, "too many parameters"},
		{"1001 keys, one repeated", "{" + members(1000, `"%d":0`) + `,"7":1}`, 0, ""},
		{"1000 elements", "[" + members(1000, `%d`) + "]", 0, ""},
		{"1001 elements", "[" + members(1001, `%d`) + "]", 413, "too many parameters"},
		{"1001 nested elements", `{"a":[` + members(1001, `%d`) + "]}", 413, "too many parameters"},
		{"a syntax error first", `{"a":x,` + members(1001, `"%d":0`) + "}", 400, `Unexpected token 'x', "{"a":x,"0":0,"1"... is not valid JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJSON(tc.body)
			status, msg, ok := answer(err)
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("parseJSON = %v, want it accepted", err)
			case tc.status == 0:
			case !ok:
				t.Fatalf("parseJSON = %v, want a %d", err, tc.status)
			case status != tc.status || msg != tc.msg:
				t.Fatalf("parseJSON = %d %q, want %d %q", status, msg, tc.status, tc.msg)
			}
		})
	}
}

// TestOrderKeys checks the order against a plain sort: index keys first,
// ascending by value, then the other keys in their order; and that every
// key is still found after the sort.
func TestOrderKeys(t *testing.T) {
	order := func(keys []string) []string {
		o := &Object{}
		for i, k := range keys {
			o.set(k, float64(i))
		}
		o.orderKeys()
		got := make([]string, o.Len())
		for i := range got {
			got[i], _ = o.At(i)
		}
		for i, k := range keys {
			if v, ok := o.Get(k); !ok || v != float64(i) {
				t.Fatalf("after ordering, Get(%q) = %v, %v; want %d", k, v, ok, i)
			}
		}
		return got
	}
	keys := []string{"b", "10", "2", "a", "01", "4294967294", "4294967295", "0", "-1", "1.5", "", "9"}
	want := []string{"0", "2", "9", "10", "4294967294", "b", "a", "01", "4294967295", "-1", "1.5", ""}
	if got := order(keys); !slices.Equal(got, want) {
		t.Errorf("orderKeys(%q) = %q, want %q", keys, got, want)
	}

	// 20k keys in descending order, mixed with others: the sort is
	// n log n, and the result is the reference order.
	var many []string
	for i := 20_000; i > 0; i-- {
		many = append(many, strconv.Itoa(i), "k"+strconv.Itoa(i))
	}
	got := order(many)
	for i := range 20_000 {
		if got[i] != strconv.Itoa(i+1) || got[20_000+i] != "k"+strconv.Itoa(20_000-i) {
			t.Fatalf("sortIndexKeys of 40k keys: position %d is %q, %d is %q", i, got[i], 20_000+i, got[20_000+i])
		}
	}
}

// answer is the status and message a refusal of a body is answered with,
// and whether err is one.
func answer(err error) (status int, msg string, ok bool) {
	var e *Error
	var se *SyntaxError
	switch {
	case errors.As(err, &e):
		return e.Status, e.Message, true
	case errors.As(err, &se):
		return 400, se.Error(), true
	}
	return 0, "", false
}
