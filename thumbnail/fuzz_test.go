package thumbnail

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Run with: go test -run '^$' -fuzz FuzzMake ./thumbnail/ (or FuzzSniffHeader).
// Crashers the fuzzer finds land in testdata/fuzz/<name>/ and run as plain tests.

var knownCodes = map[string]bool{
	CodeUnsupportedFormat: true, CodeTooManyPixels: true, CodeCorruptImage: true,
	CodeTimeout: true, CodeInvalidSpec: true,
}

// addCorpusSeeds seeds a fuzz target with every corpus file small enough to mutate
// quickly.
func addCorpusSeeds(f *testing.F, add func(src []byte)) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel("testdata", path)
		if err != nil || strings.HasPrefix(rel, "fuzz"+string(filepath.Separator)) {
			return err // the fuzzer's own corpus is not images
		}
		info, err := d.Info()
		if err != nil || info.Size() > 64<<10 || filepath.Ext(path) == ".tsv" {
			return err
		}
		add(readTestdata(f, filepath.ToSlash(rel)))
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
}

// refused reports whether err refuses the input, and fails the test if it is a
// recovered panic or has none of the codes a client is told.
func refused(t *testing.T, err error) bool {
	t.Helper()
	if errors.Is(err, errPanicked) {
		t.Fatalf("a step panicked: %v", err)
	}
	if err != nil && !knownCodes[CodeOf(err)] {
		t.Fatalf("error without a known code: %v", err)
	}
	return err != nil
}

func FuzzMake(f *testing.F) {
	addCorpusSeeds(f, func(src []byte) { f.Add(src, uint16(64), uint16(48), uint8(0), false, uint8(0)) })
	fits := []Fit{FitContain, FitCover, FitFill}
	formats := []Format{FormatJPEG, FormatPNG} // WebP encoding is slow and sees only our own pixels
	f.Fuzz(func(t *testing.T, src []byte, width, height uint16, fit uint8, enlarge bool, format uint8) {
		spec := Spec{
			Width:   int(width % 300),
			Height:  int(height % 300),
			Fit:     fits[int(fit)%len(fits)],
			Enlarge: enlarge,
			Format:  formats[int(format)%len(formats)],
			// Small, so the fuzzer spends its time on parsing rather than on big decodes.
			MaxPixels: 1 << 20,
		}
		res, err := Make(context.Background(), src, spec)
		if refused(t, err) {
			return
		}
		if res.Width < 1 || res.Height < 1 || len(res.Data) == 0 {
			t.Fatalf("empty result %dx%d, %d bytes", res.Width, res.Height, len(res.Data))
		}
		h, err := ReadHeader(res.Data)
		if err != nil || h.Format != spec.Format || h.Width != res.Width || h.Height != res.Height {
			t.Fatalf("output %+v does not match the result %dx%d %s: %v", h, res.Width, res.Height, spec.Format, err)
		}
	})
}

func FuzzSniffHeader(f *testing.F) {
	addCorpusSeeds(f, func(src []byte) { f.Add(src) })
	f.Fuzz(func(t *testing.T, src []byte) {
		format, sniffErr := Sniff(src)
		h, err := ReadHeader(src)
		refused(t, sniffErr) // either may refuse, with a known code
		refused(t, err)
		if sniffErr != nil {
			if err == nil {
				t.Fatalf("ReadHeader accepted what Sniff refused: %v", sniffErr)
			}
			return
		}
		if err == nil && (h.Format != format || h.Width < 1 || h.Height < 1) {
			t.Fatalf("header %+v for a sniffed %s", h, format)
		}
		if o := orientationOf(format, src); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
		_ = jpegProcess(src)
		_, _, _, _ = webpFirstFrame(src)
	})
}

// FuzzMakeSet is FuzzMake for jobs of two or three outputs, each with its own fit,
// gravity and format. Run with: go test -run '^$' -fuzz FuzzMakeSet ./thumbnail/
func FuzzMakeSet(f *testing.F) {
	addCorpusSeeds(f, func(src []byte) {
		f.Add(src, uint16(64), uint16(48), uint16(20), uint16(0), uint8(0x21), uint8(0x1b), false)
	})
	fits := []Fit{FitContain, FitCover, FitFill}
	gravities := []Gravity{GravityCenter, GravityAttention, GravityEntropy, GravityFocal}
	formats := []Format{FormatJPEG, FormatPNG} // WebP encoding is slow and sees only our own pixels
	f.Fuzz(func(t *testing.T, src []byte, w1, h1, w2, h2 uint16, fitsAndFormats, gravityBits uint8, third bool) {
		output := func(i int, w, h uint16) Output {
			o := Output{
				Width:   int(w % 300),
				Height:  int(h % 300),
				Fit:     fits[int(fitsAndFormats>>(2*i)&3)%len(fits)],
				Enlarge: fitsAndFormats>>(6+i)&1 == 1,
				Gravity: gravities[gravityBits>>(2*i)&3],
				Format:  formats[int(gravityBits>>(6+i)&1)],
			}
			if o.Gravity == GravityFocal {
				o.Focal = &Point{float64(w%101) / 100, float64(h%101) / 100}
			}
			return o
		}
		outputs := []Output{output(0, w1, h1), output(1, w2, h2)}
		if third {
			outputs = append(outputs, output(2, w1/3+1, 0))
		}
		// Small, so the fuzzer spends its time on parsing rather than on big decodes.
		set, err := MakeSet(context.Background(), src, outputs, 1<<20)
		if refused(t, err) {
			return
		}
		if len(set.Outputs) != len(outputs) || len(set.Placeholder.BlurHash) != 28 || len(set.Placeholder.DominantColor) != 7 {
			t.Fatalf("a set of %d outputs for %d asked, placeholder %+v", len(set.Outputs), len(outputs), set.Placeholder)
		}
		for i, res := range set.Outputs {
			h, err := ReadHeader(res.Data)
			if err != nil || h.Format != outputs[i].Format || h.Width != res.Width || h.Height != res.Height {
				t.Fatalf("output %d: %+v does not match the result %dx%d %s: %v", i, h, res.Width, res.Height, outputs[i].Format, err)
			}
		}
	})
}
