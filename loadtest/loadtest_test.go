package loadtest

import (
	"bytes"
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
