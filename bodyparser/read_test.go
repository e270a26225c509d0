package bodyparser

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// endless repeats a chunk forever.
type endless struct {
	chunk []byte
	off   int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], e.chunk[e.off:])
		n += k
		e.off = (e.off + k) % len(e.chunk)
	}
	return n, nil
}

// TestReadBoundsCompressedInput: a compressed body is read no further
// than it must be to refuse it, however much the client would send.
func TestReadBoundsCompressedInput(t *testing.T) {
	var emptyGzip, emptyZlib bytes.Buffer
	gzip.NewWriter(&emptyGzip).Close()
	zw := zlib.NewWriter(&emptyZlib)
	zw.Flush() // an empty sync block: deflate that inflates to nothing
	var zeros bytes.Buffer
	gw := gzip.NewWriter(&zeros)
	gw.Write(make([]byte, 10<<20))
	gw.Close()

	for _, tc := range []struct {
		name, encoding string
		body           io.Reader
		maxRead        int64
	}{
		{"empty gzip members without end", "gzip", &endless{chunk: emptyGzip.Bytes()}, compressedLimit + 4096},
		{"empty deflate blocks without end", "deflate", io.MultiReader(bytes.NewReader(emptyZlib.Bytes()[:2]), &endless{chunk: emptyZlib.Bytes()[2:]}), compressedLimit + 4096},
		{"10 MB of zeros", "gzip", bytes.NewReader(zeros.Bytes()), 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{r: tc.body}
			req := httptest.NewRequest(http.MethodPost, "/auth/refresh", body)
			req.ContentLength = -1
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", tc.encoding)
			if _, err := Read(req); err != ErrTooLarge {
				t.Fatalf("Read = %v, want ErrTooLarge", err)
			}
			if body.n > tc.maxRead {
				t.Errorf("read %d bytes of the body, want %d at most", body.n, tc.maxRead)
			}
		})
	}

	// Declared too long: refused before a byte of the body is inflated.
	req := httptest.NewRequest(http.MethodPost, "/auth/refresh", strings.NewReader(emptyGzip.String()))
	req.ContentLength = compressedLimit + 1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	if _, err := Read(req); err != ErrTooLarge {
		t.Errorf("Read of a gzip body declared %d bytes = %v, want ErrTooLarge", req.ContentLength, err)
	}
}

func TestCapReaderExactLength(t *testing.T) {
	data := strings.Repeat("x", 100)
	got, err := io.ReadAll(&capReader{r: strings.NewReader(data), n: 100})
	if err != nil || string(got) != data {
		t.Errorf("capReader of exactly n bytes = %d bytes, %v; want all, no error", len(got), err)
	}
	_, err = io.ReadAll(&capReader{r: strings.NewReader(data), n: 99})
	if !errors.Is(err, errCapped) {
		t.Errorf("capReader of n+1 bytes: %v, want errCapped", err)
	}
}
