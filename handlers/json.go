package handlers

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON reads a JSON body as Express's body-parser does in strict mode:
// an empty body is {}, a body must start with { or [, an array becomes an
// object keyed by index, and a syntax error answers 400 with the message
// Node's JSON.parse gives, so clients that show it see what they saw before.
// text is the body already decoded from its charset, BOM removed.
func parseJSON(text string) (*object, error) {
	// V8 counts positions, and cuts its error context, in UTF-16 code units:
	// parsing code units gives the same numbers after an emoji, and turns an
	// escaped surrogate pair ("\ud83d\ude00") into one character.
	src := toUTF16(text)
	if len(src) == 0 {
		return &object{vals: map[string]any{}}, nil
	}
	p := &jsonParser{src: src}
	p.skipSpace()
	if p.pos == len(src) {
		return nil, badJSON(errEnd)
	}
	if c := src[p.pos]; c != '{' && c != '[' {
		return nil, badJSON(p.unexpectedToken()) // body-parser's strict check, worded by JSON.parse
	}
	v, err := p.parse()
	if err != nil && err.limit != nil {
		return nil, err.limit
	}
	if err != nil {
		return nil, badJSON(err)
	}
	switch v := v.(type) {
	case *object:
		return v, nil
	case []any:
		o := &object{vals: make(map[string]any, len(v))}
		for i, e := range v {
			o.set(strconv.Itoa(i), e)
		}
		return o, nil
	}
	panic("unreachable: the first character was { or [")
}

func badJSON(err *jsonError) error { return newHTTPError(http.StatusBadRequest, err.msg) }

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

var errTooManyMembers = parserError(http.StatusRequestEntityTooLarge, "too many parameters")

// jsonParser is a JSON parser that words its errors as V8's JSON.parse does
// (Node 20), positions counted in UTF-16 code units.
type jsonParser struct {
	src   []uint16
	pos   int
	depth int // objects and arrays open at pos
}

// jsonError is a JSON.parse error. Its message is JavaScript text: V8 quotes
// the source by code units, and may cut a surrogate pair in two. A body past
// one of the parser's limits has limit, the answer to give instead.
type jsonError struct {
	msg   jsText
	limit *httpError
}

func (e *jsonError) Error() string { return e.msg.String() }

func newJSONError(format string, args ...any) *jsonError {
	return &jsonError{msg: jsText(utf16.Encode([]rune(fmt.Sprintf(format, args...))))}
}

var errEnd = newJSONError("Unexpected end of JSON input")

// jsText is a JavaScript string: UTF-16 code units, lone surrogates included.
type jsText []uint16

func (s jsText) String() string { return fromUTF16(s) }

// toUTF16 is text in UTF-16 code units, an invalid UTF-8 byte as U+FFFD.
func toUTF16(text string) []uint16 {
	u := make([]uint16, 0, len(text))
	for _, r := range text {
		u = utf16.AppendRune(u, r)
	}
	return u
}

// fromUTF16 is utf16.Decode as a string, a lone surrogate as U+FFFD,
// without its []rune.
func fromUTF16(u []uint16) string {
	var b strings.Builder
	b.Grow(len(u))
	for i := 0; i < len(u); i++ {
		r := rune(u[i])
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(byte(r))
			continue
		case utf16.IsSurrogate(r) && i+1 < len(u):
			if pair := utf16.DecodeRune(r, rune(u[i+1])); pair != utf8.RuneError {
				r = pair
				i++
			}
		}
		b.WriteRune(r) // a lone surrogate is written as U+FFFD
	}
	return b.String()
}

// MarshalJSON writes s as JSON.stringify does: a lone surrogate as \udxxx
// (which a Go string cannot hold), other text raw but for " \ and controls.
func (s jsText) MarshalJSON() ([]byte, error) {
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

// endOfInput stands for the character past the end of the source.
const endOfInput = -1

func (p *jsonParser) parse() (any, *jsonError) {
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.src) {
		// V8's wording for this one has no "in JSON".
		return nil, newJSONError("Unexpected non-whitespace character after JSON at position %d", p.pos)
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

// at words an error with the position of the character at fault.
func (p *jsonParser) at(msg string) *jsonError {
	return newJSONError("%s in JSON at position %d", msg, p.pos)
}

// unexpected reports the character at pos where no rule names what was
// expected, as V8 does by the kind of token it starts.
func (p *jsonParser) unexpected() *jsonError {
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
// ten code units of context on each side when the source is long.
func (p *jsonParser) unexpectedToken() *jsonError {
	const ctx = 10
	n := len(p.src)
	if n == len("[object Object]") && jsText(p.src).String() == "[object Object]" {
		// One of V8's "special strings": what String(obj) sends.
		return newJSONError(`"[object Object]" is not valid JSON`)
	}
	before, quoted, after := `"`, p.src, `"`
	switch {
	case n < 2*ctx+1:
	case p.pos < ctx:
		quoted, after = p.src[:p.pos+ctx], `"...`
	case p.pos < n-ctx:
		before, quoted, after = `..."`, p.src[p.pos-ctx:p.pos+ctx], `"...`
	default:
		before, quoted = `..."`, p.src[p.pos-ctx:]
	}
	var msg jsText
	for _, part := range [][]uint16{
		utf16.Encode([]rune("Unexpected token '")), p.src[p.pos : p.pos+1],
		utf16.Encode([]rune("', " + before)), quoted, utf16.Encode([]rune(after + " is not valid JSON")),
	} {
		msg = append(msg, part...)
	}
	return &jsonError{msg: msg}
}

// peek returns the code unit at pos, or endOfInput.
func (p *jsonParser) peek() int {
	if p.pos < len(p.src) {
		return int(p.src[p.pos])
	}
	return endOfInput
}

func (p *jsonParser) value() (any, *jsonError) {
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

func (p *jsonParser) literal(word string) *jsonError {
	for _, want := range word {
		if p.peek() != int(want) {
			return p.unexpected() // "tru" ends the input, "t1" is an unexpected number
		}
		p.pos++
	}
	return nil
}

// enter opens an object or array at pos, unless that nests too deeply.
func (p *jsonParser) enter() *jsonError {
	if p.depth == maxJSONDepth {
		err := p.at(fmt.Sprintf("Nesting deeper than %d levels", maxJSONDepth))
		err.limit = newHTTPError(http.StatusBadRequest, err.msg)
		return err
	}
	p.depth++
	p.pos++
	return nil
}

func (p *jsonParser) object() (*object, *jsonError) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	o := &object{vals: map[string]any{}}
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
		_, seen := o.vals[key]
		if !seen && len(o.keys) == maxJSONMembers {
			return nil, &jsonError{limit: errTooManyMembers}
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
		if !seen {
			o.keys = append(o.keys, key)
		}
		o.vals[key] = v // like JSON.parse: the last duplicate wins, in the first one's place
		p.skipSpace()
		switch p.peek() {
		case '}':
			p.pos++
			sortIndexKeys(o.keys)
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

func (p *jsonParser) array() ([]any, *jsonError) {
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
			return nil, &jsonError{limit: errTooManyMembers}
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

// string reads a string literal. A lone surrogate (from "\ud800") becomes
// U+FFFD: Go strings hold UTF-8 only.
func (p *jsonParser) string() (string, *jsonError) {
	p.pos++ // "
	var out []uint16
	for {
		// A run of plain characters is taken whole; a string without
		// escapes is read straight from the source.
		start := p.pos
		for p.pos < len(p.src) && p.src[p.pos] >= 0x20 && p.src[p.pos] != '"' && p.src[p.pos] != '\\' {
			p.pos++
		}
		if out == nil && p.peek() == '"' {
			p.pos++
			return fromUTF16(p.src[start : p.pos-1]), nil
		}
		out = append(out, p.src[start:p.pos]...)
		c := p.peek()
		switch {
		case c == endOfInput:
			return "", p.at("Unterminated string")
		case c == '"':
			p.pos++
			return fromUTF16(out), nil
		case c < 0x20:
			return "", p.at("Bad control character in string literal")
		}
		p.pos++ // \
		switch e := p.peek(); e {
		case endOfInput:
			return "", errEnd
		case '"', '\\', '/':
			out = append(out, uint16(e))
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
			var u uint16
			for range 4 {
				p.pos++ // V8 reports the first unit that is not a hex digit
				d := hexDigit(p.peek())
				if d < 0 {
					return "", p.at("Bad Unicode escape")
				}
				u = u<<4 | uint16(d)
			}
			out = append(out, u)
		default:
			if e > 0xFF { // V8 words a non-Latin-1 character here as an unexpected token
				return "", p.unexpectedToken()
			}
			return "", p.at("Bad escaped character")
		}
		p.pos++
	}
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

func (p *jsonParser) number() (float64, *jsonError) {
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
	// as in JavaScript) included. A short number's text stays on the stack.
	text := make([]byte, p.pos-start)
	for i, c := range p.src[start:p.pos] {
		text[i] = byte(c) // ASCII only
	}
	f, _ := strconv.ParseFloat(string(text), 64)
	return f, nil
}

// sortIndexKeys puts array-index keys ("0", "17") first in ascending order,
// as JavaScript orders an object's own properties; other keys keep their
// order. It sorts in n log n: a body of thousands of keys in descending
// order must not cost a quadratic insertion sort.
func sortIndexKeys(keys []string) {
	type indexKey struct {
		n   uint32
		key string
	}
	var idx []indexKey
	rest := 0
	for _, k := range keys {
		if n, ok := arrayIndex(k); ok {
			idx = append(idx, indexKey{n, k})
		} else {
			keys[rest] = k // other keys move up, in their order
			rest++
		}
	}
	if len(idx) == 0 {
		return
	}
	// Keys are unique, so the order of equal indexes never matters.
	slices.SortFunc(idx, func(a, b indexKey) int { return cmp.Compare(a.n, b.n) })
	copy(keys[len(idx):], keys[:rest])
	for i, e := range idx {
		keys[i] = e.key
	}
}

// arrayIndex reads an array-index key: a canonical decimal below 2^32-1.
func arrayIndex(k string) (uint32, bool) {
	if k == "" || len(k) > 10 || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	if err != nil || n >= 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}
