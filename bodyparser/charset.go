package bodyparser

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// body-parser decodes a body with iconv-lite, in the charset of its
// Content-Type, before it parses it; these are the decoders it would use.

// iconvName is iconv-lite's canonical form of a charset name: lower case,
// without a ":dddd" suffix, letters and digits only.
func iconvName(charset string) string {
	charset = strings.ToLower(charset)
	if n := len(charset); n >= 5 && charset[n-5] == ':' && strings.Trim(charset[n-4:], "0123456789") == "" {
		charset = charset[:n-5]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, charset)
}

// decoder returns iconv-lite's decoder for a charset, lowercased, that
// body-parser accepts. The default, "utf-8", is found without building
// its canonical name: that would cost every request an allocation.
func decoder(charset string) (func([]byte) string, bool) {
	if charset == "utf-8" {
		return decodeUTF8, true
	}
	decode, ok := decoders[iconvName(charset)]
	return decode, ok
}

// decoders are iconv-lite's decoders for the charsets body-parser accepts.
// UTF-7 is read as UTF-8: the same text for the ASCII bodies clients send.
var decoders = map[string]func([]byte) string{
	"utf8":          decodeUTF8,
	"utf7":          decodeUTF8,
	"utf7imap":      decodeUTF8,
	"iso88591":      decodeLatin1,
	"utf16le":       func(b []byte) string { return decodeUTF16(b, false) },
	"utf16be":       func(b []byte) string { return decodeUTF16(b, true) },
	"utf16":         func(b []byte) string { return decodeUTF16(b, utf16IsBE(b)) },
	"utf32le":       func(b []byte) string { return decodeUTF32(b, false) },
	"utf32be":       func(b []byte) string { return decodeUTF32(b, true) },
	"utf32":         func(b []byte) string { return decodeUTF32(b, utf32IsBE(b)) },
	"unicode11utf8": decodeUTF8,
}

// decodeUTF8 is Node's UTF-8 decoding: each maximal invalid subpart becomes
// one U+FFFD.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/2)
	for len(b) > 0 {
		valid := 0 // the valid run before the next invalid byte, written whole
		for valid < len(b) {
			r, n := utf8.DecodeRune(b[valid:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			valid += n
		}
		sb.Write(b[:valid])
		if b = b[valid:]; len(b) > 0 {
			sb.WriteString("\uFFFD")
			b = b[invalidPrefix(b):]
		}
	}
	return sb.String()
}

// invalidPrefix is the length of the truncated sequence that b starts with:
// a lead byte and the continuation bytes that fit it (WHATWG's rule).
func invalidPrefix(b []byte) int {
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		n++
		lo, hi = 0x80, 0xBF
	}
	return n
}

func decodeLatin1(b []byte) string {
	rs := make([]rune, len(b))
	for i, c := range b {
		rs[i] = rune(c)
	}
	return string(rs)
}

// decodeUTF16 decodes code-unit pairs; an odd last byte is dropped.
func decodeUTF16(b []byte, bigEndian bool) string {
	units := make([]uint16, len(b)/2)
	for i := range units {
		if bigEndian {
			units[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		} else {
			units[i] = uint16(b[2*i+1])<<8 | uint16(b[2*i])
		}
	}
	return string(utf16.Decode(units))
}

// utf16IsBE is iconv-lite's guess for "utf-16": the BOM, else whichever
// byte order makes more of the first 100 units ASCII, else little-endian.
func utf16IsBE(b []byte) bool {
	if len(b) >= 2 && b[0] == 0xFE && b[1] == 0xFF {
		return true
	}
	if len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE {
		return false
	}
	le, be := 0, 0
	for i := 0; i+1 < len(b) && i < 200; i += 2 {
		if b[i] == 0 && b[i+1] != 0 {
			be++
		}
		if b[i] != 0 && b[i+1] == 0 {
			le++
		}
	}
	return be > le
}

// decodeUTF32 decodes 4-byte code points; one out of range, and a cut last
// one, are U+FFFD.
func decodeUTF32(b []byte, bigEndian bool) string {
	var sb strings.Builder
	for ; len(b) >= 4; b = b[4:] {
		var cp uint32
		if bigEndian {
			cp = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		} else {
			cp = uint32(b[3])<<24 | uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
		}
		if cp > utf8.MaxRune {
			cp = utf8.RuneError
		}
		sb.WriteRune(rune(cp))
	}
	if len(b) > 0 {
		sb.WriteRune(utf8.RuneError)
	}
	return sb.String()
}

// utf32IsBE is iconv-lite's guess for "utf-32", like utf16IsBE.
func utf32IsBE(b []byte) bool {
	if len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0xFE && b[3] == 0xFF {
		return true
	}
	if len(b) >= 4 && b[0] == 0xFF && b[1] == 0xFE && b[2] == 0 && b[3] == 0 {
		return false
	}
	le, be := 0, 0 // BMP characters minus invalid ones, in each order
	for i := 0; i+3 < len(b) && i < 400; i += 4 {
		if b[i] != 0 || b[i+1] > 0x10 {
			be--
		}
		if b[i+3] != 0 || b[i+2] > 0x10 {
			le--
		}
		if b[i] == 0 && b[i+1] == 0 && (b[i+2] != 0 || b[i+3] != 0) {
			be++
		}
		if (b[i] != 0 || b[i+1] != 0) && b[i+2] == 0 && b[i+3] == 0 {
			le++
		}
	}
	return be > le
}
