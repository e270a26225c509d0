package bodyparser

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON reads a JSON body as Express's body-parser does in strict mode:
// an empty body is {}, a body must start with { or [, an array becomes an
// object keyed by index, and a syntax error is a *SyntaxError worded as
// Node's JSON.parse words it, so clients that show it see what they saw
// before. text is the body already decoded from its charset, BOM removed.
func parseJSON(text string) (*Object, error) {
	if !utf8.ValidString(text) {
		// Read hands over valid UTF-8 only; for any other caller, each
		// invalid byte is one U+FFFD, as JavaScript would see it.
		text = string([]rune(text))
	}
	if text == "" {
		return &Object{}, nil
	}
	p := &jsonParser{src: text}
	p.skipSpace()
	if p.pos == len(text) {
		return nil, errEnd
	}
	if c := text[p.pos]; c != '{' && c != '[' {
		return nil, p.unexpectedToken() // body-parser's strict check, worded by JSON.parse
	}
	v, err := p.parse()
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case *Object:
		return v, nil
	case []any:
		o := &Object{members: make([]member, len(v))}
		for i, e := range v {
			o.members[i] = member{strconv.Itoa(i), e}
		}
		return o, nil
	}
	panic("unreachable: the first character was { or [")
}

// Limits of a JSON body that no client of this API comes near (its bodies
// are flat objects of two or three strings), so that no body costs more
// than a few times its size to refuse, nor answers more than a few KB. V8
// has neither limit: past them this service answers where NestJS would go on.
const (
	// maxJSONDepth is how deeply objects and arrays may nest. Deeper is a
	// 400 in JSON.parse's words: "Nesting deeper than 64 levels in JSON at
	// position N", N the position of the bracket too many.
	maxJSONDepth = 64
	// maxJSONMembers is how many keys one object, or elements one array, may
	// have: qs's parameterLimit, which body-parser sets for urlencoded bodies.
	// More is body-parser's 413 for a form with too many parameters.
	maxJSONMembers = formParameterLimit
)

var errTooManyMembers = &Error{Status: http.StatusRequestEntityTooLarge, Message: "too many parameters"}

// jsonParser is a JSON parser that words its errors as V8's JSON.parse does
// (Node 20).
//
// It reads the UTF-8 text as it is. V8 reads UTF-16 code units, which
// matters in three places only, each handled where it arises: an escaped
// surrogate pair ("\ud83d\ude00") is one character; the positions in error
// messages count code units (utf16Offset: the byte offset for ASCII text);
// and the context an error quotes is cut by code units (unexpectedToken).
// So a valid body is never converted to UTF-16: only an error is.
type jsonParser struct {
	src   string
	pos   int // a byte offset in src
	depth int // objects and arrays open at pos
}

// A SyntaxError is JSON.parse's refusal of a body, worded as V8 (Node 20)
// words it. NestJS answers it with a 400.
type SyntaxError struct {
	// Message is V8's message. It quotes the body cut by UTF-16 code units,
	// which may cut a surrogate pair in two, so it is JavaScript text.
	Message JSString
}

func (e *SyntaxError) Error() string { return e.Message.String() }

func newSyntaxError(format string, args ...any) *SyntaxError {
	return &SyntaxError{Message: JSString(utf16.Encode([]rune(fmt.Sprintf(format, args...))))}
}

var errEnd = newSyntaxError("Unexpected end of JSON input")

// JSString is a JavaScript string: UTF-16 code units, lone surrogates
// included, which a Go string cannot hold.
type JSString []uint16

// String is s as Go text, a lone surrogate as U+FFFD.
func (s JSString) String() string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		r := rune(s[i])
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(byte(r))
			continue
		case utf16.IsSurrogate(r) && i+1 < len(s):
			if pair := utf16.DecodeRune(r, rune(s[i+1])); pair != utf8.RuneError {
				r = pair
				i++
			}
		}
		b.WriteRune(r) // a lone surrogate is written as U+FFFD
	}
	return b.String()
}

// MarshalJSON writes s as JSON.stringify does: a lone surrogate as \udxxx,
// other text raw but for " \ and controls.
func (s JSString) MarshalJSON() ([]byte, error) {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		c := rune(s[i])
		if utf16.IsSurrogate(c) {
			if i+1 < len(s) {
				if r := utf16.DecodeRune(c, rune(s[i+1])); r != utf8.RuneError {
					b = utf8.AppendRune(b, r)
					i++
					continue
				}
			}
			b = fmt.Appendf(b, `\u%04x`, c)
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', byte(c))
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			if c < 0x20 {
				b = fmt.Appendf(b, `\u%04x`, c)
			} else {
				b = utf8.AppendRune(b, c)
			}
		}
	}
	return append(b, '"'), nil
}

// toUTF16 is text in UTF-16 code units.
func toUTF16(text string) []uint16 {
	u := make([]uint16, 0, len(text))
	for _, r := range text {
		u = utf16.AppendRune(u, r)
	}
	return u
}

// endOfInput stands for the character past the end of the source.
const endOfInput = -1

func (p *jsonParser) parse() (any, error) {
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.src) {
		// V8's wording for this one has no "in JSON".
		return nil, newSyntaxError("Unexpected non-whitespace character after JSON at position %d", p.utf16Offset())
	}
	return v, nil
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// utf16Offset is pos as V8 counts it, in UTF-16 code units. Errors are
// the only callers: a body that parses never pays for it.
func (p *jsonParser) utf16Offset() int {
	n := 0
	for _, r := range p.src[:p.pos] {
		n += utf16.RuneLen(r)
	}
	return n
}

// at words an error with the position of the character at fault.
func (p *jsonParser) at(msg string) *SyntaxError {
	return newSyntaxError("%s in JSON at position %d", msg, p.utf16Offset())
}

// unexpected reports the character at pos where no rule names what was
// expected, as V8 does by the kind of token it starts.
func (p *jsonParser) unexpected() *SyntaxError {
	switch c := p.peek(); {
	case c == endOfInput:
		return errEnd
	case c == '"':
		return p.at("Unexpected string")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.at("Unexpected number")
	}
	return p.unexpectedToken()
}

// unexpectedToken is V8's message for an unexpected character, with up to
// ten code units of context on each side when the source is long. V8 cuts
// by code units, so this is the one error that reads the source as UTF-16.
func (p *jsonParser) unexpectedToken() *SyntaxError {
	const ctx = 10
	if p.src == "[object Object]" {
		// One of V8's "special strings": what String(obj) sends.
		return newSyntaxError(`"[object Object]" is not valid JSON`)
	}
	src, pos := toUTF16(p.src), p.utf16Offset()
	n := len(src)
	before, quoted, after := `"`, src, `"`
	switch {
	case n < 2*ctx+1:
	case pos < ctx:
		quoted, after = src[:pos+ctx], `"...`
	case pos < n-ctx:
		before, quoted, after = `..."`, src[pos-ctx:pos+ctx], `"...`
	default:
		before, quoted = `..."`, src[pos-ctx:]
	}
	var msg JSString
	for _, part := range [][]uint16{
		utf16.Encode([]rune("Unexpected token '")), src[pos : pos+1],
		utf16.Encode([]rune("', " + before)), quoted, utf16.Encode([]rune(after + " is not valid JSON")),
	} {
		msg = append(msg, part...)
	}
	return &SyntaxError{Message: msg}
}

// peek returns the byte at pos, or endOfInput. Every byte the grammar
// names is ASCII, and no byte of a multi-byte character is.
func (p *jsonParser) peek() int {
	if p.pos < len(p.src) {
		return int(p.src[p.pos])
	}
	return endOfInput
}

func (p *jsonParser) value() (any, error) {
	p.skipSpace()
	switch c := p.peek(); {
	case c == endOfInput:
		return nil, errEnd
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.unexpected()
}

func (p *jsonParser) literal(word string) error {
	for i := range len(word) {
		if p.peek() != int(word[i]) {
			return p.unexpected() // "tru" ends the input, "t1" is an unexpected number
		}
		p.pos++
	}
	return nil
}

// enter opens an object or array at pos, unless that nests too deeply.
func (p *jsonParser) enter() error {
	if p.depth == maxJSONDepth {
		return p.at(fmt.Sprintf("Nesting deeper than %d levels", maxJSONDepth))
	}
	p.depth++
	p.pos++
	return nil
}

func (p *jsonParser) object() (*Object, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	o := &Object{}
	p.skipSpace()
	if p.peek() == '}' {
		p.pos++
		return o, nil
	}
	if p.peek() != '"' {
		return nil, p.at("Expected property name or '}'")
	}
	for first := true; ; first = false {
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		if len(o.members) == maxJSONMembers && o.find(key) < 0 {
			return nil, errTooManyMembers
		}
		p.skipSpace()
		if p.peek() != ':' {
			if first {
				return nil, p.at("Expected ':' after property name")
			}
			return nil, p.unexpected() // V8 names the colon after the first key only
		}
		p.pos++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		o.set(key, v)
		p.skipSpace()
		switch p.peek() {
		case '}':
			p.pos++
			o.orderKeys()
			return o, nil
		case ',':
			p.pos++
			p.skipSpace()
			if p.peek() != '"' {
				return nil, p.at("Expected double-quoted property name")
			}
		default:
			return nil, p.at("Expected ',' or '}' after property value")
		}
	}
}

func (p *jsonParser) array() ([]any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	arr := []any{}
	p.skipSpace()
	if p.peek() == ']' {
		p.pos++
		return arr, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if len(arr) == maxJSONMembers {
			return nil, errTooManyMembers
		}
		arr = append(arr, v)
		p.skipSpace()
		switch p.peek() {
		case ']':
			p.pos++
			return arr, nil
		case ',':
			p.pos++
		default:
			return nil, p.at("Expected ',' or ']' after array element")
		}
	}
}

// string reads a string literal. A string without escapes, the common
// case, is a slice of the source: no copy. A lone surrogate (from "\ud800")
// becomes U+FFFD: Go strings hold UTF-8 only.
func (p *jsonParser) string() (string, error) {
	p.pos++ // "
	start := p.pos
	var out []byte // nil until the first escape
	for {
		run := p.pos
		for p.pos < len(p.src) && p.src[p.pos] >= 0x20 && p.src[p.pos] != '"' && p.src[p.pos] != '\\' {
			p.pos++
		}
		if out == nil && p.peek() == '"' {
			p.pos++
			return p.src[start : p.pos-1], nil
		}
		out = append(out, p.src[run:p.pos]...)
		c := p.peek()
		switch {
		case c == endOfInput:
			return "", p.at("Unterminated string")
		case c == '"':
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", p.at("Bad control character in string literal")
		}
		p.pos++ // \
		switch e := p.peek(); e {
		case endOfInput:
			return "", errEnd
		case '"', '\\', '/':
			out = append(out, byte(e))
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, err := p.unicodeEscape()
			if err != nil {
				return "", err
			}
			if utf16.IsSurrogate(r) {
				r = p.surrogatePair(r)
			}
			out = utf8.AppendRune(out, r)
		default:
			// V8 words a character past Latin-1 here as an unexpected token.
			if r, _ := utf8.DecodeRuneInString(p.src[p.pos:]); r > 0xFF {
				return "", p.unexpectedToken()
			}
			return "", p.at("Bad escaped character")
		}
		p.pos++
	}
}

// unicodeEscape reads the four hex digits of the \u escape whose u is at
// pos, and leaves pos on the last of them. V8 reports the first character
// that is not a hex digit.
func (p *jsonParser) unicodeEscape() (rune, error) {
	var u rune
	for range 4 {
		p.pos++
		d := hexDigit(p.peek())
		if d < 0 {
			return 0, p.at("Bad Unicode escape")
		}
		u = u<<4 | rune(d)
	}
	return u, nil
}

// surrogatePair completes the escaped surrogate s, whose last digit is at
// pos: when s is a high surrogate and the source goes on with the escape
// of a low one, it takes that escape too and returns the pair's character.
// Any other surrogate is lone, U+FFFD. (Raw text never holds a surrogate:
// in UTF-8 a character outside the BMP is whole.)
func (p *jsonParser) surrogatePair(s rune) rune {
	next := p.src[p.pos+1:]
	if len(next) < 6 || next[0] != '\\' || next[1] != 'u' {
		return utf8.RuneError
	}
	var low rune
	for i := 2; i < 6; i++ {
		d := hexDigit(int(next[i]))
		if d < 0 {
			return utf8.RuneError // the escape's own error is reported when it is read
		}
		low = low<<4 | rune(d)
	}
	r := utf16.DecodeRune(s, low)
	if r != utf8.RuneError {
		p.pos += 6
	}
	return r
}

func hexDigit(c int) int {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return -1
}

func (p *jsonParser) number() (float64, error) {
	start := p.pos
	isDigit := func() bool { c := p.peek(); return c >= '0' && c <= '9' }
	digits := func() int {
		n := 0
		for ; isDigit(); n++ {
			p.pos++
		}
		return n
	}
	if p.peek() == '-' {
		p.pos++
		if !isDigit() {
			return 0, p.at("No number after minus sign")
		}
	}
	if p.peek() == '0' {
		p.pos++
		if isDigit() { // a leading zero: V8 reports the next digit
			return 0, p.at("Unexpected number")
		}
	} else {
		digits()
	}
	if p.peek() == '.' {
		p.pos++
		if digits() == 0 {
			return 0, p.at("Unterminated fractional number")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if digits() == 0 {
			return 0, p.at("Exponent part is missing a number")
		}
	}
	// The grammar is checked, and ParseFloat takes it all, overflow (±Inf,
	// as in JavaScript) included.
	f, _ := strconv.ParseFloat(p.src[start:p.pos], 64)
	return f, nil
}
