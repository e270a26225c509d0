package handlers

import (
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// bodyLimit is Express's default body-parser limit, "100kb".
const bodyLimit = 100 << 10

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

func readBody(r *http.Request) (*object, error) {
	empty := &object{vals: map[string]any{}}
	if r.Body == nil || r.Body == http.NoBody {
		return empty, nil
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return empty, nil // no or unreadable type: body-parser leaves the body alone
	}
	form := mediaType == "application/x-www-form-urlencoded"
	if mediaType != "application/json" && !form {
		return empty, nil
	}
	if cs, ok := params["charset"]; ok {
		cs = strings.ToLower(cs)
		if (form && cs != "utf-8") || (!form && !strings.HasPrefix(cs, "utf-")) {
			return nil, parserError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported charset %q", strings.ToUpper(cs)))
		}
	}
	raw, err := readLimited(r)
	if err != nil {
		return nil, err
	}
	if form {
		return parseForm(string(raw)), nil
	}
	return parseJSON(raw)
}

// readLimited reads the body, inflating it as Content-Encoding says, and
// fails with 413 past bodyLimit decoded bytes.
func readLimited(r *http.Request) ([]byte, error) {
	if r.ContentLength > bodyLimit {
		return nil, errTooLarge
	}
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, parserError(http.StatusBadRequest, "incorrect header check")
		}
		defer zr.Close()
		src = zr
	case "deflate":
		zr, err := zlib.NewReader(r.Body)
		if err != nil {
			return nil, parserError(http.StatusBadRequest, "incorrect header check")
		}
		defer zr.Close()
		src = zr
	default:
		return nil, parserError(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported content encoding %q", enc))
	}
	raw, err := io.ReadAll(io.LimitReader(src, bodyLimit+1))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, errTooLarge
		}
		return nil, parserError(http.StatusBadRequest, "request aborted")
	}
	if len(raw) > bodyLimit {
		return nil, errTooLarge
	}
	return raw, nil
}

var errTooLarge = parserError(http.StatusRequestEntityTooLarge, "request entity too large")

// parseForm reads a urlencoded body as qs does for Express: a repeated key
// becomes an array and a key with brackets (a[b]=1) an object.
func parseForm(s string) *object {
	o := &object{vals: map[string]any{}}
	for pair := range strings.SplitSeq(s, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			val = v
		}
		if base, sub, ok := strings.Cut(key, "["); ok && base != "" {
			nested, _ := o.vals[base].(map[string]any)
			if nested == nil {
				nested = map[string]any{}
			}
			nested[strings.TrimSuffix(sub, "]")] = val
			o.set(base, nested)
			continue
		}
		switch prev := o.vals[key].(type) {
		case nil:
			o.set(key, val)
		case []any:
			o.set(key, append(prev, val))
		default:
			o.set(key, []any{prev, val})
		}
	}
	return o
}
