package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestPackageDocs enforces STYLE.md rule 2: every package has exactly one
// package doc comment saying what it owns (in a non-test file; a package of
// tests only has it in one of its test files).
func TestPackageDocs(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Skipf("module root not found above the package directory: %v", err)
	}
	// docs[dir] counts doc comments in non-test and test files.
	type count struct{ src, test, srcFiles int }
	docs := map[string]*count{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "out" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		c := docs[dir]
		if c == nil {
			c = &count{}
			docs[dir] = c
		}
		test := strings.HasSuffix(path, "_test.go")
		has := f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != ""
		switch {
		case !test:
			c.srcFiles++
			if has {
				c.src++
			}
		case has:
			c.test++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, 0, len(docs))
	for d := range docs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		c, rel := docs[d], strings.TrimPrefix(d, root+"/")
		switch {
		case c.srcFiles > 0 && c.src == 0:
			t.Errorf("%s: no package doc comment; add one (in doc.go for a long one) saying what the package owns", rel)
		case c.srcFiles > 0 && c.src > 1:
			t.Errorf("%s: %d files carry a package doc comment; keep exactly one", rel, c.src)
		case c.srcFiles == 0 && c.test == 0:
			t.Errorf("%s: a package of tests without a package doc comment; add one to one of its files", rel)
		}
	}
}
