package handlers

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// A field is one property of a request DTO as class-validator checks it.
type field struct {
	name     string
	optional bool   // @IsOptional(): null or missing skips every rule
	rules    []rule // in the order class-validator reports them: the decorator nearest the property first
}

type rule struct {
	ok  func(v any, present bool) bool
	msg string // with the property name in place of $property
}

// The DTOs of the API, with the rules and messages of class-validator.
var (
	registerDTO = []field{
		{name: "email", rules: []rule{isEmailRule("email")}},
		{name: "password", rules: []rule{
			{isByteLength(0, 72), "password's byte length must fall into (0, 72) range"},
			{maxLength(72), "password must be shorter than or equal to 72 characters"},
			// The contract: "8 to 72 bytes (bcrypt's limit)". NestJS's @MinLength(8)
			// counts characters, so "éééé" (8 bytes) passes here and not there;
			// the message stays class-validator's.
			{minBytes(8), "password must be longer than or equal to 8 characters"},
			isStringRule("password"),
		}},
		{name: "name", optional: true, rules: []rule{
			{maxLength(100), "name must be shorter than or equal to 100 characters"},
			isStringRule("name"),
		}},
	}
	loginDTO = []field{
		{name: "email", rules: []rule{isEmailRule("email")}},
		{name: "password", rules: []rule{isNotEmptyRule("password"), isStringRule("password")}},
	}
	refreshTokenDTO = []field{
		{name: "refreshToken", rules: []rule{isNotEmptyRule("refreshToken"), isStringRule("refreshToken")}},
	}
)

// The list of validation failures is bounded, where class-validator (with
// whitelist and forbidNonWhitelisted) lists every unknown property, each
// named in full: a 100 KB body of short keys would answer some 400 KB, and
// one long key its own length. So the answer lists the first maxMessages
// failures, in class-validator's order, and then, if there were more, one
// last line that counts them ("14000 more errors not listed"); and an
// unknown property's name is cut to maxKeyInMessage characters, ending in
// "…". The DTOs' own rules fail at most 7 times, and a client sends a
// handful of unknown keys at most, so no real answer is changed. The
// largest 400 is under 8 KB: 16 names of 64 characters each written as
// \u00XX take 6.6 KB.
const (
	maxMessages     = 16
	maxKeyInMessage = 64
)

// validate checks body against a DTO the way NestJS's ValidationPipe with
// whitelist and forbidNonWhitelisted does, and returns the 400 it would
// answer, or nil. Unknown properties come first, in body order, then each
// field's failures in declaration order; the list is cut as said above.
func validate(body *object, dto []field) error {
	var msgs []string
	failed := 0
	fail := func(msg func() string) {
		if failed++; failed <= maxMessages {
			msgs = append(msgs, msg())
		}
	}
	for _, k := range body.keys {
		if !declared(dto, k) && !neverCopied[k] {
			fail(func() string { return "property " + cutName(k) + " should not exist" })
		}
	}
	for _, f := range dto {
		v, present := body.vals[f.name]
		if f.optional && v == nil {
			continue
		}
		for _, r := range f.rules {
			if !r.ok(v, present) {
				fail(func() string { return r.msg })
			}
		}
	}
	if msgs == nil {
		return nil
	}
	if failed > maxMessages {
		msgs = append(msgs, strconv.Itoa(failed-maxMessages)+" more errors not listed")
	}
	return newHTTPError(http.StatusBadRequest, msgs)
}

// cutName is a property name for a message: at most maxKeyInMessage
// characters, the last "…" when it is cut.
func cutName(k string) string {
	n := 0
	for i := range k {
		if n == maxKeyInMessage-1 {
			if utf8.RuneCountInString(k[i:]) > 1 {
				return k[:i] + "…"
			}
			break
		}
		n++
	}
	return k
}

// neverCopied are the keys that never reach class-validator, so are never
// reported: ValidationPipe deletes __proto__, prototype and constructor, and
// class-transformer skips a key whose value on the new DTO is a function,
// as Object.prototype's methods are.
var neverCopied = map[string]bool{
	"__proto__": true, "prototype": true, "constructor": true,
	"__defineGetter__": true, "__defineSetter__": true, "__lookupGetter__": true, "__lookupSetter__": true,
	"hasOwnProperty": true, "isPrototypeOf": true, "propertyIsEnumerable": true,
	"toString": true, "toLocaleString": true, "valueOf": true,
}

func declared(dto []field, key string) bool {
	for _, f := range dto {
		if f.name == key {
			return true
		}
	}
	return false
}

func isStringRule(name string) rule {
	return rule{func(v any, _ bool) bool { _, ok := v.(string); return ok }, name + " must be a string"}
}

func isNotEmptyRule(name string) rule {
	return rule{func(v any, present bool) bool { return present && v != nil && v != "" }, name + " should not be empty"}
}

func isEmailRule(name string) rule {
	return rule{func(v any, _ bool) bool { s, ok := v.(string); return ok && isEmail(s) }, name + " must be an email"}
}

func minBytes(n int) func(any, bool) bool {
	return func(v any, _ bool) bool { s, ok := v.(string); return ok && len(s) >= n }
}

func maxLength(n int) func(any, bool) bool {
	return func(v any, _ bool) bool { s, ok := v.(string); return ok && jsLength(s) <= n }
}

func isByteLength(lo, hi int) func(any, bool) bool {
	return func(v any, _ bool) bool { s, ok := v.(string); return ok && len(s) >= lo && len(s) <= hi }
}

// jsLength is validator.js's isLength count: characters, where an astral
// character is one and a variation selector after a character is none.
func jsLength(s string) int {
	rs := []rune(s)
	n := len(rs)
	for i := 0; i+1 < len(rs); i++ {
		if !isVariationSelector(rs[i]) && isVariationSelector(rs[i+1]) {
			n--
			i++
		}
	}
	return n
}

func isVariationSelector(r rune) bool { return r == '\uFE0E' || r == '\uFE0F' }

// utf16Len is a string's length in JavaScript.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// The character classes of validator.js 13 (isEmail and isFQDN with their
// default options), in Go's regexp syntax.
var (
	emailUserUTF8Part = regexp.MustCompile("(?i)^[a-z\\d!#$%&'*+\\-/=?^_`{|}~\u00A1-\uD7FF\uF900-\uFDCF\uFDF0-\uFFEF]+$")
	// Regexp escapes, not Go ones: a raw ']' (\x5d) would end the class.
	quotedEmailUserUTF8 = regexp.MustCompile(`(?i)^(?:[\s\x01-\x08\x0b\x0c\x0e-\x1f\x7f\x21\x23-\x5b\x5d-\x7e\x{A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}]|\\[\x01-\x09\x0b\x0c\x0d-\x7f\x{A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])*$`)
	fqdnTLD             = regexp.MustCompile("(?i)^(?:[a-z\u00A1-\u00A8\u00AA-\uD7FF\uF900-\uFDCF\uFDF0-\uFFEF]{2,}|xn[a-z0-9-]{2,})$")
	// JavaScript matches \u00a1-\uffff per UTF-16 unit, so astral characters
	// (two surrogates, both in range) pass too.
	fqdnPart  = regexp.MustCompile(`(?i)^[a-z_\x{a1}-\x{10FFFF}0-9-]+$`)
	fullWidth = regexp.MustCompile("[\uff01-\uff5e]")
	allDigits = regexp.MustCompile(`^\d+$`)
)

// isEmail is validator.js's isEmail with its default options, which
// class-validator's @IsEmail() uses.
func isEmail(s string) bool {
	if !utf8.ValidString(s) || utf16Len(s) > 254 {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return false
	}
	user, domain := s[:at], s[at+1:]
	if len(user) > 64 || len(domain) > 254 || !isFQDN(domain) {
		return false
	}
	if user != "" && user[0] == '"' && user[len(user)-1] == '"' {
		inner := ""
		if len(user) > 1 {
			inner = user[1 : len(user)-1]
		}
		return quotedEmailUserUTF8.MatchString(inner)
	}
	for part := range strings.SplitSeq(user, ".") {
		if !emailUserUTF8Part.MatchString(part) {
			return false
		}
	}
	return true
}

// isJSSpace is JavaScript's \s: Unicode's white space and the BOM, but not NEL.
func isJSSpace(r rune) bool { return unicode.IsSpace(r) && r != '\u0085' || r == '\uFEFF' }

func isFQDN(s string) bool {
	parts := strings.Split(s, ".")
	tld := parts[len(parts)-1]
	if len(parts) < 2 || !fqdnTLD.MatchString(tld) || strings.IndexFunc(tld, isJSSpace) >= 0 || allDigits.MatchString(tld) {
		return false
	}
	for _, part := range parts {
		if utf16Len(part) > 63 || !fqdnPart.MatchString(part) || fullWidth.MatchString(part) ||
			strings.HasPrefix(part, "-") || strings.HasSuffix(part, "-") || strings.Contains(part, "_") {
			return false
		}
	}
	return true
}
