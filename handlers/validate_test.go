package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestValidateCapsMessages(t *testing.T) {
	body := func(keys ...string) *object {
		o := &object{vals: map[string]any{}}
		for _, k := range keys {
			o.set(k, 0.0)
		}
		return o
	}
	unknown := func(n int) []string {
		var keys []string
		for i := range n {
			keys = append(keys, fmt.Sprintf("k%d", i))
		}
		return keys
	}
	should := func(keys ...string) []string {
		var msgs []string
		for _, k := range keys {
			msgs = append(msgs, "property "+k+" should not exist")
		}
		return msgs
	}
	tokenMsgs := []string{"refreshToken should not be empty", "refreshToken must be a string"}
	long := strings.Repeat("é", 100)
	for _, tc := range []struct {
		name string
		body *object
		want []string
	}{
		{"14 unknown and 2 rules: all listed", body(unknown(14)...), append(should(unknown(14)...), tokenMsgs...)},
		{"15 unknown and 2 rules: 16 listed, 1 counted", body(unknown(15)...), append(should(unknown(15)...), tokenMsgs[0], "1 more errors not listed")},
		{"14000 unknown", body(unknown(14_000)...), append(should(unknown(16)...), "13986 more errors not listed")},
		{"64-character name kept", body(strings.Repeat("x", 64)), append(should(strings.Repeat("x", 64)), tokenMsgs...)},
		{"65-character name cut", body(strings.Repeat("x", 65)), append(should(strings.Repeat("x", 63)+"…"), tokenMsgs...)},
		{"cut by characters", body(long), append(should(strings.Repeat("é", 63)+"…"), tokenMsgs...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var he *httpError
			if err := validate(tc.body, refreshTokenDTO); !errors.As(err, &he) || he.status != http.StatusBadRequest {
				t.Fatalf("validate = %v, want a 400", err)
			}
			if got, _ := he.message.([]string); !slices.Equal(got, tc.want) {
				t.Errorf("messages\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
