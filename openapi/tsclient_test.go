package openapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/openapi"
)

// TestTypeScriptClient generates TypeScript types from the document with
// openapi-typescript, as a NestJS user would, and type-checks with tsc a
// small client written against them (tsclient/client.ts): a document that
// openapi-typescript cannot read, or a change that breaks such a client,
// fails. The npm packages are installed (npm ci) only when
// tsclient/package-lock.json changed since the last install, so the test
// runs offline after the first.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("needs npm and Node.js 20+ on PATH (openapi-typescript and tsc type-check tsclient/client.ts)")
	}
	dir, err := filepath.Abs("tsclient")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "node_modules", ".bin")

	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	stamp := filepath.Join(dir, "node_modules", ".authsvc-installed")
	if got, _ := os.ReadFile(stamp); string(got) != hex.EncodeToString(sum[:]) {
		run(t, 5*time.Minute, dir, npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
		if err := os.WriteFile(stamp, []byte(hex.EncodeToString(sum[:])), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The document the service serves, not only the file next to it.
	doc := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(doc, openapi.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, 2*time.Minute, dir, filepath.Join(bin, "openapi-typescript"), doc, "--output", filepath.Join("generated", "api.ts"))
	run(t, 3*time.Minute, dir, filepath.Join(bin, "tsc"), "--noEmit", "--project", ".")
}

// run runs a command in dir and fails t with its output if it fails or
// outlives limit.
func run(t *testing.T, limit time.Duration, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "NO_COLOR=1")
	// A child that keeps the output open must not keep the test waiting.
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		t.Fatalf("%s %q: %v\n%s", filepath.Base(name), args, err, out.Bytes())
	}
}
