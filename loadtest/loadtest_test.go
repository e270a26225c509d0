package loadtest

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
)

// TestMainUsage covers the runs that stop before any request: every one
// writes to stderr only and exits 2, except a request for help (0).
func TestMainUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no mode", nil, 2, "usage: loadtest <mode>"},
		{"help", []string{"-h"}, 0, "usage: loadtest <mode>"},
		{"unknown mode", []string{"hammer"}, 2, `unknown mode "hammer"`},
		{"storm help", []string{"storm", "-h"}, 0, "usage: loadtest storm"},
		{"chain help", []string{"chain", "--help"}, 0, "usage: loadtest chain"},
		{"bad flag value", []string{"storm", "-n", "many"}, 2, `invalid value "many" for flag -n`},
		{"unknown flag", []string{"chain", "--turbo"}, 2, "flag provided but not defined: -turbo"},
		{"zero n", []string{"storm", "-n", "0"}, 2, "-n 0: want at least 1"},
		{"email without password", []string{"storm", "--email", "a@example.com"}, 2, "--email and --password go together"},
		{"count and duration", []string{"chain", "--count", "5", "--duration", "1s"}, 2, "--duration and --count exclude each other"},
		{"bad url", []string{"chain", "--url", "localhost:3000"}, 2, `--url "localhost:3000": want an http:// or https:// URL`},
		{"stray argument", []string{"storm", "now"}, 2, `unexpected argument "now"`},
		{"second url bad", []string{"storm", "--url", "http://127.0.0.1:3001", "--url", "127.0.0.1:3002"}, 2, `--url "127.0.0.1:3002": want an http:// or https:// URL`},
		{"url twice", []string{"chain", "--url", "http://127.0.0.1:3001", "--url", "http://127.0.0.1:3001/"}, 2, `--url "http://127.0.0.1:3001/": given twice`},
		{"zero timeout", []string{"chain", "--timeout", "0s"}, 2, "--timeout 0s: want a positive duration"},
		{"help names repeated urls", []string{"storm", "-h"}, 0, "repeat it for several instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := Main(t.Context(), tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("Main(%q) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, &stderr)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("Main(%q) stderr = %q, want it to contain %q", tt.args, &stderr, tt.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("Main(%q) stdout = %q, want nothing", tt.args, &stdout)
			}
		})
	}
}

// TestURLFlag: --url defaults to the service's own address; the first --url
// replaces the default, and the others add to it, in order, without a
// trailing slash.
func TestURLFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{"http://127.0.0.1:3000"}},
		{[]string{"--url", "http://a:1/"}, []string{"http://a:1"}},
		{[]string{"--url", "http://a:1", "--url", "https://b:2/", "-url", "http://c:3"}, []string{"http://a:1", "https://b:2", "http://c:3"}},
	}
	for _, tt := range tests {
		var c commonFlags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		c.register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("parse %q: %v", tt.args, err)
		}
		if err := c.check(); err != nil {
			t.Fatalf("check %q: %v", tt.args, err)
		}
		if !slices.Equal(c.urls.urls, tt.want) {
			t.Errorf("--url of %q = %q, want %q", tt.args, c.urls.urls, tt.want)
		}
	}
}
