package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// variableRow is a row of a configuration table: | `NAME` | default | meaning |.
var variableRow = regexp.MustCompile("^\\| `([A-Z][A-Z0-9_]*)` \\| ([^|]*) \\|")

// documentedVariables returns the rows of the table under the heading
// "## Configuration" of the Markdown file at path: each variable's name and
// its default cell, in the table's order.
func documentedVariables(t *testing.T, path string) (names []string, defaults map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatalf("%s has no section \"## Configuration\"", path)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	defaults = map[string]string{}
	for line := range strings.Lines(section) {
		if m := variableRow.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
			defaults[m[1]] = m[2]
		}
	}
	return names, defaults
}

// TestAPIDocListsVariables: the configuration table of docs/API.md lists
// exactly the variables of Variables (which Load reads), each with its
// default, so that the documented configuration cannot drift from the code.
func TestAPIDocListsVariables(t *testing.T) {
	names, defaults := documentedVariables(t, "../docs/API.md")
	for _, v := range Variables {
		d, ok := defaults[v.Name]
		if !ok {
			t.Errorf("docs/API.md does not document %s", v.Name)
			continue
		}
		if !strings.Contains(d, v.Default) {
			t.Errorf("docs/API.md gives %s the default %q, want one that says %q", v.Name, strings.TrimSpace(d), v.Default)
		}
	}
	for _, name := range names {
		if !slices.ContainsFunc(Variables, func(v Variable) bool { return v.Name == name }) {
			t.Errorf("docs/API.md documents %s, which the service does not read", name)
		}
	}
	if len(names) != len(defaults) {
		t.Errorf("docs/API.md lists a variable twice: %v", names)
	}
}

// TestREADMEListsVariables: README's configuration table names the same
// variables.
func TestREADMEListsVariables(t *testing.T) {
	names, _ := documentedVariables(t, "../README.md")
	var want []string
	for _, v := range Variables {
		want = append(want, v.Name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("README.md's Configuration lists %v, want %v", names, want)
	}
}
