package handlers

import (
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// bodyLimit is Express's default body-parser limit, "100kb".
const bodyLimit = 100 << 10

// compressedLimit caps a gzip or deflate body as sent. body-parser limits
// only what it inflates to, so a stream that inflates to nothing (empty
// gzip members back to back, empty deflate blocks) is read for as long as
// the client sends it; here it is a 413 past twice bodyLimit. A body that
// inflates to bodyLimit or less is never that long: deflate's stored blocks
// add 5 bytes per 64 KB to incompressible data.
const compressedLimit = 2 * bodyLimit

// bodyKey is where parseBody leaves the request body for the handlers.
const bodyKey = "body"

// object is a request body as a JavaScript object: values by key, and the
// keys in JavaScript's property order, which class-validator reports in.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) set(key string, v any) {
	if _, seen := o.vals[key]; !seen {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v // like JSON.parse: the last duplicate wins, in the first one's place
}

// parseBody is middleware that reads the body the way NestJS's Express
// adapter does, before routing (a malformed body is a 400 even on an unknown
// route): application/json and application/x-www-form-urlencoded are parsed,
// any other type counts as an empty body, and a body over 100 KB is a 413.
func parseBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readBody(c.Request())
		if err != nil {
			return err
		}
		c.Set(bodyKey, body)
		return next(c)
	}
}

// readBody follows body-parser's steps, in its order: the type, the charset,
// the Content-Encoding, the declared length, then reading, decoding and
// parsing.
func readBody(r *http.Request) (*object, error) {
	empty := &object{vals: map[string]any{}}
	// type-is's hasBody: a Content-Length (0 included) or a Transfer-Encoding.
	// net/http gives both no body and "Content-Length: 0" http.NoBody.
	if r.Body == nil || (r.Body == http.NoBody && r.Header.Get("Content-Length") == "") {
		return empty, nil
	}
	mediaType, charset := parseContentType(r.Header.Get("Content-Type"))
	form := mediaType == "application/x-www-form-urlencoded"
	if mediaType != "application/json" && !form {
		return empty, nil // body-parser leaves other types, and none, unread
	}
	if charset == "" {
		charset = "utf-8"
	}
	// JSON takes any "utf-" charset (RFC 7159 8.1), forms utf-8 and iso-8859-1.
	if (form && charset != "utf-8" && charset != "iso-8859-1") || (!form && !strings.HasPrefix(charset, "utf-")) {
		return nil, unsupportedCharset(charset)
	}
	src, closeSrc, err := inflate(r)
	if err != nil {
		return nil, err
	}
	defer closeSrc()
	// raw-body checks the declared length only of an uncompressed body, and
	// before it looks the charset up; compressedLimit is this service's own.
	if (src == r.Body && r.ContentLength > bodyLimit) || r.ContentLength > compressedLimit {
		return nil, errTooLarge
	}
	decode, ok := decoders[iconvName(charset)]
	if !ok {
		return nil, unsupportedCharset(charset)
	}
	raw, err := io.ReadAll(io.LimitReader(src, bodyLimit+1))
	if err != nil && src == r.Body {
		return nil, parserError(http.StatusBadRequest, "request aborted") // raw-body's words for a body cut short
	}
	if err != nil {
		return nil, inflateError(err)
	}
	if len(raw) > bodyLimit {
		return nil, errTooLarge
	}
	text := strings.TrimPrefix(decode(raw), "\uFEFF") // iconv-lite drops a BOM
	if form {
		return parseForm(text, charset == "iso-8859-1")
	}
	return parseJSON(text)
}

var errTooLarge = parserError(http.StatusRequestEntityTooLarge, "request entity too large")

func unsupportedCharset(charset string) error {
	return parserError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported charset %q", strings.ToUpper(charset)))
}

// parseContentType reads a Content-Type as body-parser's content-type 2 and
// type-is do: the media type lowercased, the charset parameter lowercased
// ("" when absent). They are lenient: a malformed parameter is skipped, and
// the first of two charsets wins, where Go's mime.ParseMediaType would give up.
func parseContentType(header string) (mediaType, charset string) {
	typ, params, _ := strings.Cut(header, ";")
	typ = strings.ToLower(strings.Trim(typ, " \t"))
	if !mediaTypeRE.MatchString(typ) {
		return "", ""
	}
	found := false
	for params != "" && !found {
		var param string
		param, params, _ = strings.Cut(params, ";")
		name, value, ok := strings.Cut(param, "=")
		if !ok || strings.ToLower(strings.Trim(name, " \t")) != "charset" {
			continue
		}
		found = true
		value = strings.TrimLeft(value, " \t")
		if !strings.HasPrefix(value, `"`) {
			charset = strings.TrimRight(value, " \t")
			break
		}
		// A quoted value runs to the closing quote, ';' included; \ escapes.
		value = value[1:] + ";" + params
		var b strings.Builder
		for i := 0; i < len(value) && value[i] != '"'; i++ {
			if value[i] == '\\' && i+1 < len(value) {
				i++
			}
			b.WriteByte(value[i])
		}
		charset = b.String()
	}
	return typ, strings.ToLower(charset)
}

// mediaTypeRE is media-typer's test, which type-is applies.
var mediaTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$`)

// inflate returns the body decoded as its Content-Encoding says, as
// body-parser does for gzip and deflate (zlib). Brotli, which Node also
// inflates, has no decoder in Go's standard library and answers 415.
func inflate(r *http.Request) (io.Reader, func(), error) {
	noop := func() {}
	enc := strings.ToLower(r.Header.Get("Content-Encoding"))
	var (
		zr  io.ReadCloser
		err error
	)
	switch enc {
	case "", "identity":
		return r.Body, noop, nil
	case "gzip":
		zr, err = gzip.NewReader(&capReader{r: r.Body, n: compressedLimit})
	case "deflate":
		zr, err = zlib.NewReader(&capReader{r: r.Body, n: compressedLimit})
	default: // x-gzip included: body-parser knows it not
		return nil, noop, parserError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported content encoding %q", enc))
	}
	if err != nil {
		return nil, noop, inflateError(err)
	}
	return zr, func() { zr.Close() }, nil
}

// capReader reads r up to n bytes, and fails with errCapped when r has more.
type capReader struct {
	r io.Reader
	n int64
}

var errCapped = errors.New("compressed body over its limit")

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var probe [1]byte
		if k, err := c.r.Read(probe[:]); k == 0 {
			return 0, err // the end of the body, or the reader's own error
		}
		return 0, errCapped
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}

// inflateError words a failure to inflate the body as Node's zlib does.
func inflateError(err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, errCapped):
		return errTooLarge
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, zlib.ErrHeader):
		return parserError(http.StatusBadRequest, "incorrect header check")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return parserError(http.StatusBadRequest, "unexpected end of file")
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, zlib.ErrChecksum):
		return parserError(http.StatusBadRequest, "incorrect data check")
	case errors.As(err, &corrupt):
		return parserError(http.StatusBadRequest, "invalid block type")
	}
	return parserError(http.StatusBadRequest, "request aborted") // the client went away mid-body
}

// The limits body-parser gives qs for urlencoded bodies.
const (
	formParameterLimit = 1000
	formDepth          = 32
)

// parseForm reads a urlencoded body as body-parser's extended parser (qs)
// does, as far as validation can tell: the top-level keys in order, a plain
// key's string, and anything else (a repeated key, a[b]=1) as a non-string.
func parseForm(text string, latin1 bool) (*object, error) {
	o := &object{vals: map[string]any{}}
	if text == "" {
		return o, nil
	}
	if strings.Count(text, "&")+1 > formParameterLimit {
		return nil, parserError(http.StatusRequestEntityTooLarge, "too many parameters")
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
			val = map[string]any{key: val}
		}
		switch prev := o.vals[top].(type) {
		case nil:
			o.set(top, val)
		case []any:
			o.set(top, append(prev, val))
		default: // qs merges a second value into an array or object: not a string any more
			o.set(top, []any{prev, val})
		}
	}
	sortIndexKeys(o.keys)
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
			return "", false, parserError(http.StatusBadRequest, "The input exceeded the depth")
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
