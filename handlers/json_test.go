package handlers

import (
	"encoding/json"
	"errors"
	"reflect"
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
