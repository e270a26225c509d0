// Package bodyparser reads a request body as NestJS's Express adapter does
// with body-parser: into a JavaScript object, the keys in JavaScript's
// order, or into the error Express would answer.
//
// It mirrors body-parser's json and urlencoded parsers (Express's
// defaults, strict JSON, qs's extended syntax and limits), iconv-lite's
// charsets, Node's zlib for gzip and deflate, and V8's JSON.parse messages,
// positions included, so that a client of the NestJS service sees the same
// answers to the same bodies. Read is the entry point; package
// classvalidator checks what it returns against a DTO.
package bodyparser

import (
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

// An Error is body-parser's refusal of a body, as Express answers it: a
// status (400, 413 or 415) and a message, which NestJS writes as
// {"statusCode", "message"}. A body that is not JSON is a *SyntaxError.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func newError(status int, message string) *Error { return &Error{Status: status, Message: message} }

// ErrTooLarge is body-parser's 413 for a body over the limit.
var ErrTooLarge = newError(http.StatusRequestEntityTooLarge, "request entity too large")

// bodyLimit is Express's default body-parser limit, "100kb".
const bodyLimit = 100 << 10

// compressedLimit caps a gzip or deflate body as sent. body-parser limits
// only what it inflates to, so a stream that inflates to nothing (empty
// gzip members back to back, empty deflate blocks) is read for as long as
// the client sends it; here it is a 413 past twice bodyLimit. A body that
// inflates to bodyLimit or less is never that long: deflate's stored blocks
// add 5 bytes per 64 KB to incompressible data.
const compressedLimit = 2 * bodyLimit

// Read reads r's body the way NestJS's Express adapter does:
// application/json and application/x-www-form-urlencoded bodies are parsed,
// a body of any other type, or none, is an empty object, and a body over
// 100 KB is ErrTooLarge. It fails with an *Error or a *SyntaxError.
//
// It follows body-parser's steps, in its order: the type, the charset, the
// Content-Encoding, the declared length, then reading, decoding and
// parsing.
func Read(r *http.Request) (*Object, error) {
	// type-is's hasBody: a Content-Length (0 included) or a Transfer-Encoding.
	// net/http gives both no body and "Content-Length: 0" http.NoBody.
	if r.Body == nil || (r.Body == http.NoBody && r.Header.Get("Content-Length") == "") {
		return &Object{}, nil
	}
	mediaType, charset := parseContentType(r.Header.Get("Content-Type"))
	form := mediaType == "application/x-www-form-urlencoded"
	if mediaType != "application/json" && !form {
		return &Object{}, nil // body-parser leaves other types, and none, unread
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
		return nil, ErrTooLarge
	}
	decode, ok := decoder(charset)
	if !ok {
		return nil, unsupportedCharset(charset)
	}
	sizeHint := r.ContentLength
	if src != r.Body {
		sizeHint = -1 // the declared length is the compressed one
	}
	raw, err := readAll(src, sizeHint)
	if err != nil && src == r.Body {
		return nil, newError(http.StatusBadRequest, "request aborted") // raw-body's words for a body cut short
	}
	if err != nil {
		return nil, inflateError(err)
	}
	if len(raw) > bodyLimit {
		return nil, ErrTooLarge
	}
	text := strings.TrimPrefix(decode(raw), "\uFEFF") // iconv-lite drops a BOM
	if form {
		return parseForm(text, charset == "iso-8859-1")
	}
	return parseJSON(text)
}

// readAll reads src to its end, or to one byte past bodyLimit. A body of
// known length is read into a buffer of exactly that size, rather than
// io.ReadAll's 512 bytes and more: the bodies of this API are some 60 to
// 200 bytes, and the buffer is the largest allocation of a request.
func readAll(src io.Reader, sizeHint int64) ([]byte, error) {
	size := 512
	if sizeHint >= 0 && sizeHint <= bodyLimit {
		size = int(sizeHint) + 1 // the one byte more finds the end without growing
	}
	b := make([]byte, 0, size)
	for {
		n, err := src.Read(b[len(b):min(cap(b), bodyLimit+1)])
		b = b[:len(b)+n]
		switch {
		case err == io.EOF:
			return b, nil
		case err != nil:
			return b, err
		case len(b) > bodyLimit:
			return b, nil
		case len(b) == cap(b):
			b = append(b, 0)[:len(b)] // let append pick the next size
		}
	}
}

func unsupportedCharset(charset string) error {
	return newError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported charset %q", strings.ToUpper(charset)))
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
		return nil, noop, newError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported content encoding %q", enc))
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
		return ErrTooLarge
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, zlib.ErrHeader):
		return newError(http.StatusBadRequest, "incorrect header check")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, "unexpected end of file")
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, zlib.ErrChecksum):
		return newError(http.StatusBadRequest, "incorrect data check")
	case errors.As(err, &corrupt):
		return newError(http.StatusBadRequest, "invalid block type")
	}
	return newError(http.StatusBadRequest, "request aborted") // the client went away mid-body
}
