package tests

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hostileSize is the size of the hostile bodies: body-parser's limit.
const hostileSize = 100 << 10

// hostileBody is one request body that an attacker would send, and the
// headers that go with it.
type hostileBody struct {
	name     string
	ctype    string
	body     string
	encoding string // Content-Encoding, none when empty
}

// numericKeys is a JSON object of n keys "0".."n-1", in the order that
// order gives the indexes 0..n-1, each with the value 0.
func numericKeys(order []int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d":0`, k)
	}
	b.WriteByte('}')
	return b.String()
}

// numericOrders returns as many indexes as fit in about size bytes of
// numericKeys, ascending, descending and shuffled (with a fixed seed).
func numericOrders(size int) (asc, desc, shuffled []int) {
	total := len("{}") - len(",") // the first key has no comma before it
	for n := 0; ; n++ {
		k := len(fmt.Sprint(n)) + len(`"":0,`)
		if total+k > size {
			break
		}
		asc = append(asc, n)
		total += k
	}
	for i := range asc {
		desc = append(desc, asc[len(asc)-1-i])
	}
	shuffled = append([]int(nil), asc...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	return asc, desc, shuffled
}

// fill repeats unit (with sep between) for as long as it fits in size bytes
// once wrapped in open and close.
func fill(open, unit, sep, close string, size int) string {
	n := (size - len(open) - len(close) + len(sep)) / (len(unit) + len(sep))
	return open + strings.Repeat(unit+sep, n-1) + unit + close
}

// gzipBomb is a gzip stream of n zero bytes: a few KB that inflate to n.
func gzipBomb(n int) string {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zero := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, len(zero))
		zw.Write(zero[:k])
		n -= k
	}
	zw.Close()
	return b.String()
}

// emptyGzipMembers is n empty gzip members back to back: a stream that never
// inflates to anything, however long it is.
func emptyGzipMembers(n int) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Close()
	return strings.Repeat(b.String(), n)
}

// hostileBodies are the attacks that cost the parser the most per byte, at
// 100 KB, with ordinary 100 KB bodies first to compare them with.
func hostileBodies() []hostileBody {
	asc, desc, shuffled := numericOrders(hostileSize)
	// Objects of 900 numeric keys each, descending: under any key limit,
	// still quadratic for an insertion sort.
	nestedDesc := make([]string, 0, 16)
	for i := 0; len(strings.Join(nestedDesc, ",")) < hostileSize-12_000; i++ {
		order := make([]int, 900)
		for j := range order {
			order[j] = 899 - j
		}
		nestedDesc = append(nestedDesc, fmt.Sprintf(`"o%d":%s`, i, numericKeys(order)))
	}
	unknown := make([]string, 0, 1000)
	for i := range 999 {
		unknown = append(unknown, fmt.Sprintf(`"k%03d%s":0`, i, strings.Repeat("_", 90)))
	}
	formParams := make([]string, 0, 1000)
	for i := range 1000 {
		formParams = append(formParams, fmt.Sprintf("k%d=%s", i, strings.Repeat("v", 90)))
	}
	return []hostileBody{
		{name: "ordinary long string", ctype: ctJSON, body: fill(`{"refreshToken":"`, "x", "", `"}`, hostileSize)},
		{name: "ordinary long unknown string", ctype: ctJSON, body: fill(`{"refreshToken":"x","pad":"`, "x", "", `"}`, hostileSize)},
		{name: "numeric keys ascending", ctype: ctJSON, body: numericKeys(asc)},
		{name: "numeric keys descending", ctype: ctJSON, body: numericKeys(desc)},
		{name: "numeric keys shuffled", ctype: ctJSON, body: numericKeys(shuffled)},
		{name: "numeric keys descending, 900 per object", ctype: ctJSON, body: "{" + strings.Join(nestedDesc, ",") + "}"},
		{name: "999 unknown properties", ctype: ctJSON, body: "{" + strings.Join(unknown, ",") + "}"},
		{name: "long unknown key", ctype: ctJSON, body: fill(`{"`, "k", "", `":0}`, hostileSize)},
		{name: "deep arrays", ctype: ctJSON, body: strings.Repeat("[", hostileSize/2) + strings.Repeat("]", hostileSize/2)},
		{name: "deep objects", ctype: ctJSON, body: strings.Repeat(`{"a":`, hostileSize/6) + "0" + strings.Repeat("}", hostileSize/6)},
		{name: "unclosed arrays", ctype: ctJSON, body: strings.Repeat("[", hostileSize)},
		{name: "long array", ctype: ctJSON, body: fill("[", "0", ",", "]", hostileSize)},
		{name: "array of empty objects", ctype: ctJSON, body: fill("[", "{}", ",", "]", hostileSize)},
		{name: "10k-digit integer", ctype: ctJSON, body: `{"refreshToken":` + strings.Repeat("9", 10_000) + `}`},
		{name: "100 KB number", ctype: ctJSON, body: fill(`{"refreshToken":`, "9", "", `}`, hostileSize)},
		{name: "1e400", ctype: ctJSON, body: fill(`[`, "1e400", ",", `]`, hostileSize)},
		{name: "escapes", ctype: ctJSON, body: fill(`{"refreshToken":"`, `\u0000`, "", `"}`, hostileSize)},
		{name: "surrogate pairs", ctype: ctJSON, body: fill(`{"refreshToken":"`, `\ud83d\ude00`, "", `"}`, hostileSize)},
		{name: "invalid UTF-8", ctype: ctJSON, body: fill(`{"refreshToken":"`, "\xff", "", `"}`, hostileSize)},
		{name: "duplicate keys", ctype: ctJSON, body: fill("{", `"x":0`, ",", "}", hostileSize)},
		{name: "utf-16 charset", ctype: ctJSON + "; charset=utf-16", body: fill(`{"refreshToken":"`, "x", "", `"}`, hostileSize)},
		{name: "form 1000 parameters", ctype: ctForm, body: strings.Join(formParams, "&")},
		{name: "form brackets", ctype: ctForm, body: fill("a", "[", "", "=1", hostileSize)},
		{name: "gzip bomb", ctype: ctJSON, body: gzipBomb(10 << 20), encoding: "gzip"},
		{name: "empty gzip members", ctype: ctJSON, body: emptyGzipMembers(50_000), encoding: "gzip"}, // 1 MB
	}
}

// BenchmarkHostileBodies measures the server's own cost (ServeHTTP, no
// network) of answering each hostile body posted to /auth/refresh. Compare
// each sub-benchmark's ns/op with "ordinary long string": a bounded parser
// costs a few times as much at most.
func BenchmarkHostileBodies(b *testing.B) {
	a := newApp(b, defaultConfig())
	handler := a.Server.Config.Handler
	for _, h := range hostileBodies() {
		b.Run(strings.ReplaceAll(h.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(h.body)))
			var out int
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/auth/refresh", strings.NewReader(h.body))
				req.Header.Set("Content-Type", h.ctype)
				if h.encoding != "" {
					req.Header.Set("Content-Encoding", h.encoding)
				}
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code >= 500 {
					b.Fatalf("%s: %d %s", h.name, rec.Code, rec.Body)
				}
				out = rec.Body.Len()
			}
			b.ReportMetric(float64(out), "resp-bytes")
		})
	}
}
