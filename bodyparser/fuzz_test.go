package bodyparser

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
)

// maxErrorBody is the most a refusal of a body may weigh, as written.
const maxErrorBody = 8 << 10

// FuzzParseForm checks the urlencoded parser: it never panics; it refuses
// only past qs's limits (1000 parameters: 413, 32 bracket groups: 400);
// its keys are unique and in JavaScript's order; and where the body has no
// brackets and url.ParseQuery reads it cleanly, it reads the same keys, a
// single value as that string and a repeated one as a non-string.
func FuzzParseForm(f *testing.F) {
	for _, seed := range []string{
		"", "a=1", "email=a%40b.co&password=x", "a=1&a=2", "a[b]=1", "a[b][c]=1&a=2", "[a]=1", "[]=1", "[a=1",
		"a]=1", "a=%ZZ", "a=%E9", "%FF=1", "a+b=c+d", "=x&&b", "2=x&1=y&b=z", "a=1;b=2", "a%5Bb%5D=1", "a[[b]]=1",
		"a" + strings.Repeat("[b]", 33) + "=1", strings.Repeat("a=1&", 1000) + "a=1", "__proto__=1&constructor[x]=1",
	} {
		f.Add(seed, false)
	}
	f.Add("a=%E9t%E9", true)
	f.Fuzz(func(t *testing.T, text string, latin1 bool) {
		if !utf8.ValidString(text) {
			text = decodeUTF8([]byte(text)) // what Read hands it
		}
		o, err := parseForm(text, latin1)
		if err != nil {
			var e *Error
			switch {
			case !errors.As(err, &e):
				t.Fatalf("parseForm(%q) = %v, want an *Error (body-parser's shape)", text, err)
			case e.Status == http.StatusRequestEntityTooLarge && strings.Count(text, "&") < formParameterLimit:
				t.Fatalf("parseForm(%q): %v with %d parameters", text, err, strings.Count(text, "&")+1)
			case e.Status == http.StatusBadRequest && strings.Count(strings.NewReplacer("%5B", "[", "%5b", "[").Replace(text), "[") <= formDepth:
				t.Fatalf("parseForm(%q): %v with %d brackets", text, err, strings.Count(text, "["))
			case e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge:
				t.Fatalf("parseForm(%q) answered %d", text, e.Status)
			}
			return
		}
		checkKeys(t, o)
		for i := range o.Len() {
			if k, _ := o.At(i); !utf8.ValidString(k) {
				t.Fatalf("parseForm(%q): key %q is not UTF-8", text, k)
			}
		}
		if latin1 || strings.ContainsAny(text, "[]") || strings.Contains(strings.ToLower(text), "%5b") || strings.Contains(strings.ToLower(text), "%5d") {
			return
		}
		want, err := url.ParseQuery(text)
		if err != nil {
			return // a bad escape (qs keeps it as it is) or a ';'
		}
		delete(want, "") // qs drops a pair without a name
		for k, vs := range want {
			for _, s := range append(vs, k) {
				if !utf8.ValidString(s) {
					return // qs keeps such text undecoded
				}
			}
		}
		if len(want) != o.Len() {
			t.Fatalf("parseForm(%q) has %d keys, url.ParseQuery %v", text, o.Len(), want)
		}
		for k, vs := range want {
			got, ok := o.Get(k)
			s, isString := got.(string)
			switch {
			case !ok:
				t.Fatalf("parseForm(%q) has no key %q", text, k)
			case len(vs) == 1 && (!isString || s != vs[0]):
				t.Fatalf("parseForm(%q)[%q] = %#v, want %q", text, k, got, vs[0])
			case len(vs) > 1 && isString:
				t.Fatalf("parseForm(%q)[%q] = %q, want a non-string for %d values", text, k, s, len(vs))
			}
		}
	})
}

// FuzzDecodeCharset checks the charset decoders against independent ones:
// UTF-8 by WHATWG's rule (each maximal prefix of a valid sequence is one
// U+FFFD), UTF-16 and UTF-32 against golang.org/x/text, Latin-1 byte for
// character. None panics and all give valid UTF-8, whatever the bytes.
func FuzzDecodeCharset(f *testing.F) {
	for _, seed := range []string{
		"", "a", "é", "😀", "\xff", "\xc3", "\xe0\x80", "\xe0\xa0", "\xed\xa0\x80", "\xf0\x90\x80", "\xf4\x90\x80\x80",
		"\xf0\x9f\x98", "a\xffb\xc3\xa9\xe2\x82", "\xfe\xff\x00a", "\xff\xfea\x00", "\x00\xd8\x00\xdc", "\x00\xdc",
		"\x00\x00\xfe\xff\x00\x00\x00a", "\xff\xfe\x00\x00", "\x00\x00\x11\x00", "\x00\xd8\x00\x00",
	} {
		f.Add([]byte(seed))
	}
	utf16le := unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewDecoder()
	utf16be := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewDecoder()
	utf32le := utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM).NewDecoder()
	utf32be := utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM).NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := decodeUTF8(b), whatwgUTF8(b); got != want {
			t.Fatalf("decodeUTF8(%q) = %q, want %q", b, got, want)
		}
		if got := decodeLatin1(b); utf8.RuneCountInString(got) != len(b) || !utf8.ValidString(got) {
			t.Fatalf("decodeLatin1(%q) = %q", b, got)
		}
		even := b[:len(b)&^1] // iconv-lite drops an odd last byte
		for _, c := range []struct {
			name  string
			got   string
			std   interface{ Bytes([]byte) ([]byte, error) }
			in    []byte
			units []rune // UTF-16 code units, or UTF-32 values; nil for UTF-32
		}{
			{"utf16le", decodeUTF16(b, false), utf16le, even, units16(even, false)},
			{"utf16be", decodeUTF16(b, true), utf16be, even, units16(even, true)},
			{"utf32le", decodeUTF32(b, false), utf32le, b, nil},
			{"utf32be", decodeUTF32(b, true), utf32be, b, nil},
		} {
			if c.units != nil {
				// A lone surrogate is one character for JavaScript, one
				// U+FFFD here; x/text makes one of a run of them.
				if points := codePoints(c.units); utf8.RuneCountInString(c.got) != points {
					t.Fatalf("%s(%q) = %q: %d characters, want %d", c.name, b, c.got, utf8.RuneCountInString(c.got), points)
				}
				if hasLoneSurrogate(c.units) {
					continue
				}
			}
			want, err := c.std.Bytes(c.in)
			if err != nil {
				t.Fatalf("x/text %s(%q): %v", c.name, c.in, err)
			}
			if c.got != string(want) {
				t.Fatalf("%s(%q) = %q, x/text %q", c.name, b, c.got, want)
			}
		}
		for name, decode := range decoders {
			if s := decode(b); !utf8.ValidString(s) {
				t.Fatalf("decoder %s(%q) = %q, not UTF-8", name, b, s)
			}
		}
		_ = iconvName(string(b))
	})
}

// units16 reads b as UTF-16 code units.
func units16(b []byte, bigEndian bool) []rune {
	u := make([]rune, len(b)/2)
	for i := range u {
		hi, lo := b[2*i+1], b[2*i]
		if bigEndian {
			hi, lo = lo, hi
		}
		u[i] = rune(hi)<<8 | rune(lo)
	}
	return u
}

func isHigh(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func isLow(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }

// codePoints counts the characters of UTF-16 code units as JavaScript
// does: a high surrogate followed by a low one is one, any other unit one.
func codePoints(u []rune) int {
	n := 0
	for i := 0; i < len(u); i++ {
		if isHigh(u[i]) && i+1 < len(u) && isLow(u[i+1]) {
			i++
		}
		n++
	}
	return n
}

func hasLoneSurrogate(u []rune) bool {
	for i := 0; i < len(u); i++ {
		switch {
		case isHigh(u[i]) && i+1 < len(u) && isLow(u[i+1]):
			i++
		case isHigh(u[i]) || isLow(u[i]):
			return true
		}
	}
	return false
}

// whatwgUTF8 decodes UTF-8 as the WHATWG Encoding standard (and Node) do,
// by its definition: at an invalid byte, the longest prefix of some valid
// sequence (found by trying every completion) becomes one U+FFFD.
func whatwgUTF8(b []byte) string {
	var out strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n > 1 {
			out.Write(b[:n])
			b = b[n:]
			continue
		}
		bad := 1
		for k := 2; k <= 3 && k <= len(b); k++ {
			if validPrefix(b[:k]) {
				bad = k
			}
		}
		out.WriteRune(utf8.RuneError)
		b = b[bad:]
	}
	return out.String()
}

// validPrefix reports whether p is the start of the valid UTF-8 encoding
// of one character: whether continuation bytes complete it into one. Only
// the byte after the lead has a range of its own (E0 A0..BF, ED 80..9F, F0
// 90..BF, F4 80..8F), so trying each value there, when p is the lead alone,
// and 0x80 everywhere else suffices.
func validPrefix(p []byte) bool {
	if len(p) >= utf8.UTFMax {
		return false
	}
	var q [utf8.UTFMax]byte
	n := copy(q[:], p)
	last := byte(0x80)
	if n == 1 {
		last = 0xBF
	}
	for c := byte(0x80); c <= last; c++ {
		q[n] = c
		for total := n + 1; total <= utf8.UTFMax; total++ {
			if total > n+1 {
				q[total-1] = 0x80
			}
			if utf8.Valid(q[:total]) && utf8.RuneCount(q[:total]) == 1 {
				return true
			}
		}
	}
	return false
}

// FuzzReadBody sends any body, with any Content-Type and Content-Encoding,
// through body-parser's steps: it never panics; a refusal is an *Error
// (400, 413 or 415 with a message) or a *SyntaxError; an accepted body is
// an object with unique keys in JavaScript's order; and no refusal weighs
// more than 8 KB as NestJS writes it.
func FuzzReadBody(f *testing.F) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	zl := func(s string) []byte {
		var b bytes.Buffer
		zw := zlib.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	for _, seed := range []struct {
		ctype, encoding string
		body            []byte
	}{
		{"application/json", "", []byte(`{"refreshToken":"x"}`)},
		{"application/json; charset=utf-16", "", []byte("{\x00}\x00")},
		{"application/json; charset=utf-32be", "", []byte("\x00\x00\x00{\x00\x00\x00}")},
		{"application/json; charset=\"utf-8\"", "gzip", gz(`{"a":1}`)},
		{"application/json", "deflate", zl(`{"b":[1,2]}`)},
		{"application/json", "gzip", []byte("not gzip")},
		{"application/json", "br", []byte("{}")},
		{"application/json; charset=latin1", "", []byte("{}")},
		{"application/x-www-form-urlencoded", "", []byte("email=a%40b.co&password=x&x[y]=1")},
		{"application/x-www-form-urlencoded; charset=iso-8859-1", "", []byte("a=%E9\xe9")},
		{"text/plain", "", []byte(`{"a":1}`)},
		{"", "", []byte("x")},
		{"multipart/form-data; boundary=x", "", []byte("--x--")},
		{"APPLICATION/JSON;CHARSET=UTF-8;charset=utf-16", "identity", []byte(`{"` + strings.Repeat("k", 200) + `":1}`)},
	} {
		f.Add(seed.ctype, seed.encoding, seed.body)
	}
	f.Fuzz(func(t *testing.T, ctype, encoding string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/auth/refresh", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Content-Encoding", encoding)
		o, err := Read(req)
		if err == nil {
			checkKeyOrder(t, o)
			return
		}
		var e *Error
		var se *SyntaxError
		var message any
		switch {
		case errors.As(err, &se):
			message = se.Message
		case !errors.As(err, &e):
			t.Fatalf("Read(%q, %q, %q) = %v, want an *Error or a *SyntaxError", ctype, encoding, body, err)
		case e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge && e.Status != http.StatusUnsupportedMediaType:
			t.Fatalf("Read(%q, %q, %q) answered %d", ctype, encoding, body, e.Status)
		case e.Message == "":
			t.Fatalf("Read(%q, %q, %q) answered %d without a message", ctype, encoding, body, e.Status)
		default:
			message = e.Message
		}
		// NestJS's largest shape: {"message", "error", "statusCode"}.
		b, err := json.Marshal(struct {
			Message    any    `json:"message"`
			Error      string `json:"error"`
			StatusCode int    `json:"statusCode"`
		}{message, "Unsupported Media Type", 415})
		if err != nil {
			t.Fatalf("marshal %#v: %v", message, err)
		}
		if len(b) > maxErrorBody {
			t.Fatalf("answer of %d bytes: %.200s...", len(b), b)
		}
	})
}

func TestWHATWGUTF8Oracle(t *testing.T) {
	// The Encoding standard's own examples, and Unicode's table 3-8.
	for in, want := range map[string]string{
		"\xc0\xaf":         "\ufffd\ufffd",
		"\xe0\x80\xaf":     "\ufffd\ufffd\ufffd",
		"\xf0\x9f\x98":     "\ufffd",
		"\xe2\x82":         "\ufffd",
		"\xed\xa0\x80":     "\ufffd\ufffd\ufffd",
		"\xf4\x90\x80\x80": "\ufffd\ufffd\ufffd\ufffd",
		"a\xf1\x80\x80b":   "a\ufffdb",
		"\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64": "a\ufffd\ufffd\ufffdb\ufffdc\ufffd\ufffdd",
	} {
		if got := whatwgUTF8([]byte(in)); got != want {
			t.Errorf("whatwgUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}
