package classvalidator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// object is an Object for tests: keys in the order given.
type object struct {
	keys []string
	vals map[string]any
}

func newObject(kv ...any) *object {
	o := &object{vals: map[string]any{}}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if _, seen := o.vals[k]; !seen {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = kv[i+1]
	}
	return o
}

func (o *object) Len() int                   { return len(o.keys) }
func (o *object) At(i int) (string, any)     { return o.keys[i], o.vals[o.keys[i]] }
func (o *object) Get(key string) (any, bool) { v, ok := o.vals[key]; return v, ok }

type tokenInput struct{ Token string }

var tokenDTO = NewClass(Required("refreshToken", func(in *tokenInput) *string { return &in.Token }, IsNotEmpty(), IsString()))

type profileInput struct {
	Email string
	Name  *string
}

var profileDTO = NewClass(
	Required("email", func(in *profileInput) *string { return &in.Email }, IsEmail()),
	Optional("name", func(in *profileInput) **string { return &in.Name }, MaxLength(3), IsString()),
)

func TestValidateFills(t *testing.T) {
	name := "Ann"
	for _, tc := range []struct {
		name string
		body *object
		want profileInput
	}{
		{"name missing", newObject("email", "a@b.co"), profileInput{Email: "a@b.co"}},
		{"name null", newObject("email", "a@b.co", "name", nil), profileInput{Email: "a@b.co"}},
		{"name given", newObject("name", "Ann", "email", "a@b.co"), profileInput{Email: "a@b.co", Name: &name}},
		{"__proto__ ignored", newObject("email", "a@b.co", "__proto__", 1.0), profileInput{Email: "a@b.co"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := profileDTO.Validate(tc.body)
			if err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if got.Email != tc.want.Email || (got.Name == nil) != (tc.want.Name == nil) || got.Name != nil && *got.Name != *tc.want.Name {
				t.Errorf("Validate = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidateMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		body *object
		want []string
	}{
		{"empty", newObject(), []string{"email must be an email"}},
		{"wrong types", newObject("email", 1.0, "name", true), []string{"email must be an email", "name must be shorter than or equal to 3 characters", "name must be a string"}},
		{"too long", newObject("email", "a@b.co", "name", "Anne"), []string{"name must be shorter than or equal to 3 characters"}},
		{"unknown first", newObject("email", "x", "b", 1.0, "a", 1.0), []string{"property b should not exist", "property a should not exist", "email must be an email"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := profileDTO.Validate(tc.body)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %+v, %v; want a *ValidationError", got, err)
			}
			if !slices.Equal(ve.Messages, tc.want) {
				t.Errorf("messages\n got %q\nwant %q", ve.Messages, tc.want)
			}
			if got != (profileInput{}) {
				t.Errorf("Validate filled %+v with an invalid body", got)
			}
		})
	}
}

func TestNewClassNeedsAStringRule(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewClass accepted a property that may hold a non-string")
		}
	}()
	NewClass(Required("token", func(in *tokenInput) *string { return &in.Token }, IsNotEmpty()))
}

func TestValidateCapsMessages(t *testing.T) {
	body := func(keys ...string) *object {
		o := newObject()
		for _, k := range keys {
			o.keys = append(o.keys, k)
			o.vals[k] = 0.0
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
			_, err := tokenDTO.Validate(tc.body)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if !slices.Equal(ve.Messages, tc.want) {
				t.Errorf("messages\n got %q\nwant %q", ve.Messages, tc.want)
			}
		})
	}
}
