package bodyparser

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The limits body-parser gives qs for urlencoded bodies.
const (
	formParameterLimit = 1000
	formDepth          = 32
)

// parseForm reads a urlencoded body as body-parser's extended parser (qs)
// does, as far as validation can tell: the top-level keys in order, a plain
// key's string, and anything else (a repeated key, a[b]=1) as a non-string.
func parseForm(text string, latin1 bool) (*Object, error) {
	o := &Object{}
	if text == "" {
		return o, nil
	}
	if strings.Count(text, "&")+1 > formParameterLimit {
		return nil, errTooManyMembers
	}
	text = bracketUnescaper.Replace(text)
	for part := range strings.SplitSeq(text, "&") {
		// qs splits a pair at "]=" when there is one, else at the first "=".
		pos := strings.Index(part, "]=")
		if pos >= 0 {
			pos++
		} else {
			pos = strings.IndexByte(part, '=')
		}
		k, v := part, ""
		if pos >= 0 {
			k, v = part[:pos], part[pos+1:]
		}
		key := formDecode(k, latin1)
		if key == "" {
			continue // qs drops a pair without a name
		}
		top, nested, err := formKey(key)
		if err != nil {
			return nil, err
		}
		var val any = formDecode(v, latin1)
		if nested {
			val = &Object{members: []member{{key, val}}}
		}
		prev, _ := o.Get(top)
		switch prev := prev.(type) {
		case nil:
			o.set(top, val)
		case []any:
			o.set(top, append(prev, val))
		default: // qs merges a second value into an array or object: not a string any more
			o.set(top, []any{prev, val})
		}
	}
	o.orderKeys()
	return o, nil
}

// bracketUnescaper undoes the escaping of brackets, as qs does first.
var bracketUnescaper = strings.NewReplacer("%5B", "[", "%5b", "[", "%5D", "]", "%5d", "]")

// formKey splits a qs key into the top-level property it sets and whether
// the value goes below it (a[b]=1). "[a]=1" sets a, "[]=1" sets 0. More than
// formDepth bracket groups is an error, as qs's strictDepth makes it.
func formKey(key string) (top string, nested bool, err error) {
	first := strings.IndexByte(key, '[')
	if first < 0 {
		return key, false, nil
	}
	firstEnd := closingBracket(key, first)
	for open, groups := first, 0; open >= 0; groups++ {
		if groups == formDepth {
			return "", false, newError(http.StatusBadRequest, "The input exceeded the depth")
		}
		end := closingBracket(key, open)
		if end < 0 {
			break // an unterminated group stays one literal segment
		}
		open = strings.IndexByte(key[end+1:], '[')
		if open >= 0 {
			open += end + 1
		}
	}
	switch {
	case first > 0:
		return key[:first], true, nil
	case firstEnd < 0:
		return key, false, nil // "[a": qs keeps it whole
	case firstEnd == 1:
		return "0", strings.IndexByte(key[2:], '[') >= 0, nil
	}
	return key[1:firstEnd], strings.IndexByte(key[firstEnd+1:], '[') >= 0, nil
}

// closingBracket is the index of the ']' that closes the '[' at open, or -1.
func closingBracket(s string, open int) int {
	level := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '[':
			level++
		case ']':
			if level--; level == 0 {
				return i
			}
		}
	}
	return -1
}

var percentByte = regexp.MustCompile(`%[0-9a-fA-F]{2}`)

// formDecode is qs's decoder: + is a space, %XX is a UTF-8 byte (a Latin-1
// character for iso-8859-1), and text that does not decode to valid UTF-8
// (decodeURIComponent throws) is kept as it is.
func formDecode(s string, latin1 bool) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return s
	}
	if latin1 {
		return percentByte.ReplaceAllStringFunc(s, func(m string) string {
			b, _ := strconv.ParseUint(m[1:], 16, 8)
			return string(rune(b))
		})
	}
	u, err := url.PathUnescape(s)
	if err != nil || !utf8.ValidString(u) {
		return s
	}
	return u
}
