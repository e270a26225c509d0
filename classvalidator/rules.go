package classvalidator

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// A Rule is one class-validator decorator: its check and its message, as
// class-validator words it.
type Rule struct {
	ok          func(v any, present bool) bool
	msg         string // "$property" stands for the property's name
	stringsOnly bool   // ok passes nothing but strings
}

// named is rules with the property's name in their messages, written once
// when the class is declared.
func named(name string, rules []Rule) []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		r.msg = strings.ReplaceAll(r.msg, "$property", name)
		out[i] = r
	}
	return out
}

// IsString is @IsString().
func IsString() Rule {
	return Rule{func(v any, _ bool) bool { _, ok := v.(string); return ok }, "$property must be a string", true}
}

// IsNotEmpty is @IsNotEmpty(): present, and neither null nor "".
func IsNotEmpty() Rule {
	return Rule{func(v any, present bool) bool { return present && v != nil && v != "" }, "$property should not be empty", false}
}

// IsEmail is @IsEmail(): validator.js's isEmail with its default options.
func IsEmail() Rule {
	return Rule{func(v any, _ bool) bool { s, ok := v.(string); return ok && isEmail(s) }, "$property must be an email", true}
}

// MaxLength is @MaxLength(n): at most n characters, counted as
// validator.js's isLength counts them.
func MaxLength(n int) Rule {
	return Rule{func(v any, _ bool) bool { s, ok := v.(string); return ok && jsLength(s) <= n },
		"$property must be shorter than or equal to " + strconv.Itoa(n) + " characters", true}
}

// MinLengthBytes is @MinLength(n) counting UTF-8 bytes, where
// class-validator counts characters; the message is @MinLength's. It is
// for a limit that the contract states in bytes (bcrypt's), so that
// "éééé" (8 bytes, 4 characters) passes a minimum of 8.
func MinLengthBytes(n int) Rule {
	return Rule{func(v any, _ bool) bool { s, ok := v.(string); return ok && len(s) >= n },
		"$property must be longer than or equal to " + strconv.Itoa(n) + " characters", true}
}

// IsByteLength is @IsByteLength(lo, hi): lo to hi UTF-8 bytes.
func IsByteLength(lo, hi int) Rule {
	return Rule{func(v any, _ bool) bool { s, ok := v.(string); return ok && len(s) >= lo && len(s) <= hi },
		"$property's byte length must fall into (" + strconv.Itoa(lo) + ", " + strconv.Itoa(hi) + ") range", true}
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
