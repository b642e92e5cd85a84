// Package testcorpus reads the manifest of the image corpus in thumbnail/testdata
// (a copy of shared/testdata/images): MANIFEST.tsv has one row per file saying what it
// is and what the service must do with it. The tests of thumbnail and of its decoders
// are driven by those rows, so a file added to the manifest is tested too.
package testcorpus

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Row is a row of the manifest.
type Row struct {
	File     string // path under testdata/
	Category string // photo, exif-orientation, png-conformance, format, hostile
	Format   string // as described, e.g. "JPEG (progressive)"
	Width    int    // 0 when the manifest has no size
	Height   int
	Expected string // e.g. "thumbnail (…)" or "reject: …"
}

// Rejected reports whether the manifest expects the file to be refused (perhaps
// with a thumbnail allowed as well: see Expected).
func (r Row) Rejected() bool { return strings.HasPrefix(r.Expected, "reject") }

// Read returns the rows of dir/MANIFEST.tsv, dir being the corpus's testdata folder
// as seen from the test's package.
func Read(t testing.TB, dir string) []Row {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []Row
	scanner := bufio.NewScanner(f)
	scanner.Scan() // the header line
	for scanner.Scan() {
		fields := strings.Split(scanner.Text(), "\t")
		if len(fields) < 6 {
			t.Fatalf("manifest line with %d fields: %q", len(fields), scanner.Text())
		}
		row := Row{File: fields[0], Category: fields[1], Format: fields[2], Expected: fields[5]}
		// "4224x3168", or "32x32 (header via exiftool; …)", or "undecodable".
		size, _, _ := strings.Cut(fields[3], " ")
		if w, h, ok := strings.Cut(size, "x"); ok {
			row.Width, _ = strconv.Atoi(w)
			row.Height, _ = strconv.Atoi(h)
		}
		rows = append(rows, row)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
