package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// parseJSON reads a JSON body as Express's body-parser does in strict mode:
// an empty body is {}, a body must start with { or [, an array becomes an
// object keyed by index, and a syntax error answers 400 with the message
// Node's JSON.parse gives, so clients that show it see what they saw before.
func parseJSON(raw []byte) (*object, error) {
	src := []rune(string(raw))
	if len(src) > 0 && src[0] == '\uFEFF' {
		src = src[1:]
	}
	if len(src) == 0 {
		return &object{vals: map[string]any{}}, nil
	}
	p := &jsonParser{src: src}
	p.skipSpace()
	if p.pos == len(src) {
		return nil, badJSON(unexpectedEnd)
	}
	if c := src[p.pos]; c != '{' && c != '[' {
		return nil, badJSON(p.unexpectedToken()) // body-parser's strict check, worded by JSON.parse
	}
	v, err := p.parse()
	if err != nil {
		return nil, badJSON(err.Error())
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

func badJSON(msg string) error { return newHTTPError(http.StatusBadRequest, msg) }

const unexpectedEnd = "Unexpected end of JSON input"

// jsonParser is a JSON parser that words its errors as V8's JSON.parse does
// (Node 20), positions counted in characters.
type jsonParser struct {
	src []rune
	pos int
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

func (p *jsonParser) parse() (any, error) {
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.src) {
		return nil, p.at("Unexpected non-whitespace character after JSON")
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
func (p *jsonParser) at(msg string) error {
	return jsonError(fmt.Sprintf("%s in JSON at position %d", msg, p.pos))
}

// unexpected reports a token no rule names, as V8 does by its kind.
func (p *jsonParser) unexpected() error {
	if p.pos >= len(p.src) {
		return jsonError(unexpectedEnd)
	}
	switch c := p.src[p.pos]; {
	case c == '"':
		return p.at("Unexpected string")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.at("Unexpected number")
	}
	return jsonError(p.unexpectedToken())
}

// unexpectedToken is V8's message for an unexpected character, with up to
// ten characters of context on each side when the source is long.
func (p *jsonParser) unexpectedToken() string {
	const ctx = 10
	tok, n := string(p.src[p.pos]), len(p.src)
	switch {
	case n < 2*ctx+1:
		return fmt.Sprintf("Unexpected token '%s', \"%s\" is not valid JSON", tok, string(p.src))
	case p.pos < ctx:
		return fmt.Sprintf("Unexpected token '%s', \"%s\"... is not valid JSON", tok, string(p.src[:p.pos+ctx]))
	case p.pos < n-ctx:
		return fmt.Sprintf("Unexpected token '%s', ...\"%s\"... is not valid JSON", tok, string(p.src[p.pos-ctx:p.pos+ctx]))
	default:
		return fmt.Sprintf("Unexpected token '%s', ...\"%s\" is not valid JSON", tok, string(p.src[p.pos-ctx:]))
	}
}

func (p *jsonParser) peek() rune {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return utf8.RuneError
}

func (p *jsonParser) value() (any, error) {
	p.skipSpace()
	if p.pos >= len(p.src) {
		return nil, jsonError(unexpectedEnd)
	}
	switch c := p.src[p.pos]; {
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
	for _, want := range word {
		if p.pos >= len(p.src) {
			return jsonError(unexpectedEnd)
		}
		if p.src[p.pos] != want {
			return jsonError(p.unexpectedToken())
		}
		p.pos++
	}
	return nil
}

func (p *jsonParser) object() (*object, error) {
	o := &object{vals: map[string]any{}}
	p.pos++ // {
	p.skipSpace()
	if p.peek() == '}' {
		p.pos++
		return o, nil
	}
	if p.peek() != '"' {
		return nil, p.at("Expected property name or '}'")
	}
	for {
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.peek() != ':' {
			return nil, p.at("Expected ':' after property name")
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

func (p *jsonParser) array() ([]any, error) {
	arr := []any{}
	p.pos++ // [
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

func (p *jsonParser) string() (string, error) {
	p.pos++ // "
	var out []rune
	for {
		if p.pos >= len(p.src) {
			return "", p.at("Unterminated string")
		}
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", p.at("Bad control character in string literal")
		case c == '\\':
			p.pos++
			if p.pos >= len(p.src) {
				return "", p.at("Unterminated string")
			}
			switch e := p.src[p.pos]; e {
			case '"', '\\', '/':
				out = append(out, e)
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
				if p.pos+4 >= len(p.src) {
					return "", p.at("Bad Unicode escape")
				}
				n, err := strconv.ParseUint(string(p.src[p.pos+1:p.pos+5]), 16, 16)
				if err != nil {
					return "", p.at("Bad Unicode escape")
				}
				out = append(out, rune(n))
				p.pos += 4
			default:
				return "", p.at("Bad escaped character")
			}
			p.pos++
		default:
			out = append(out, c)
			p.pos++
		}
	}
}

func (p *jsonParser) number() (float64, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.peek() == '-' {
		p.pos++
		if c := p.peek(); c < '0' || c > '9' {
			return 0, p.at("No number after minus sign")
		}
	}
	if p.peek() == '0' {
		p.pos++
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
	f, _ := strconv.ParseFloat(string(p.src[start:p.pos]), 64) // grammar checked; overflow gives ±Inf as in JS
	return f, nil
}

// sortIndexKeys puts array-index keys ("0", "17") first in ascending order,
// as JavaScript orders an object's own properties; other keys keep their order.
func sortIndexKeys(keys []string) {
	var idx, rest []string
	for _, k := range keys {
		if isArrayIndex(k) {
			idx = append(idx, k)
		} else {
			rest = append(rest, k)
		}
	}
	if len(idx) == 0 {
		return
	}
	// insertion sort: bodies have a handful of keys
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && indexLess(idx[j], idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	copy(keys, idx)
	copy(keys[len(idx):], rest)
}

func isArrayIndex(k string) bool {
	if k == "" || len(k) > 10 || (len(k) > 1 && k[0] == '0') {
		return false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	return err == nil && n < 1<<32-1
}

func indexLess(a, b string) bool {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	return x < y
}
