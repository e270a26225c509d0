package handlers

import (
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
// it never panics, it accepts exactly the objects and arrays encoding/json
// accepts (after body-parser's strict first-character rule), and it reads
// the same values.
func FuzzParseJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `{"email":"a@b.co","password":"x"}`, `{"a":1,"a":2}`, `{"2":1,"1":2,"b":3}`,
		`{"s":"\ud83d\ude00 \u00e9 \n \" \\ \/"}`, `{"n":-1.5e3,"z":0,"t":true,"f":false,"u":null}`,
		`[1,[2,{"x":[]}]]`, `{"a":{"b":{"c":[1,2,3]}}}`, ` {"a" : 1 } `, "\ufeff{}", "{\"a\":\"\xff\"}",
		`{"a":01}`, `{"a":1,}`, `{"a"}`, `{"a":"\x01"}`, `{"a":"\u12"}`, `{"a":1}x`, `null`, `"x"`, ``, ` `,
		`{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`, `{"a":"`, `[1 2]`, `{"a" 1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := parseJSON(string(raw))
		var he *httpError
		if err != nil && !errors.As(err, &he) {
			t.Fatalf("parseJSON(%q) = %v, want an httpError", raw, err)
		}
		if he != nil && he.status != 400 {
			t.Fatalf("parseJSON(%q) answered %d, want 400", raw, he.status)
		}

		var want any
		stdErr := json.Unmarshal(raw, &want)
		switch want.(type) {
		case map[string]any, []any:
		default:
			if len(raw) > 0 && stdErr == nil {
				stdErr = errors.New("not an object or array") // body-parser's strict mode
			}
		}
		if len(raw) == 0 {
			stdErr = nil // an empty body is {}
			want = map[string]any{}
		}
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("parseJSON(%q) error = %v, encoding/json error = %v", raw, err, stdErr)
		}
		if err != nil {
			return
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
	})
}

// plain turns parsed values into encoding/json's: objects become maps.
func plain(v any) any {
	switch v := v.(type) {
	case *object:
		m := make(map[string]any, len(v.vals))
		for k, e := range v.vals {
			m[k] = plain(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = plain(e)
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
			var he *httpError
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("parseJSON = %v, want it accepted", err)
			case tc.status == 0:
			case !errors.As(err, &he):
				t.Fatalf("parseJSON = %v, want a %d", err, tc.status)
			case he.status != tc.status || fmt.Sprint(he.message) != tc.msg:
				t.Fatalf("parseJSON = %d %q, want %d %q", he.status, he.message, tc.status, tc.msg)
			}
		})
	}
}

// TestSortIndexKeys checks the order against a plain sort: index keys
// first, ascending by value, then the other keys in their order.
func TestSortIndexKeys(t *testing.T) {
	keys := []string{"b", "10", "2", "a", "01", "4294967294", "4294967295", "0", "-1", "1.5", "", "9"}
	want := []string{"0", "2", "9", "10", "4294967294", "b", "a", "01", "4294967295", "-1", "1.5", ""}
	got := slices.Clone(keys)
	sortIndexKeys(got)
	if !slices.Equal(got, want) {
		t.Errorf("sortIndexKeys(%q) = %q, want %q", keys, got, want)
	}

	// 20k keys in descending order, mixed with others: the sort is
	// n log n, and the result is the reference order.
	var many []string
	for i := 20_000; i > 0; i-- {
		many = append(many, strconv.Itoa(i), "k"+strconv.Itoa(i))
	}
	got = slices.Clone(many)
	sortIndexKeys(got)
	for i := range 20_000 {
		if got[i] != strconv.Itoa(i+1) || got[20_000+i] != "k"+strconv.Itoa(20_000-i) {
			t.Fatalf("sortIndexKeys of 40k keys: position %d is %q, %d is %q", i, got[i], 20_000+i, got[20_000+i])
		}
	}
}
