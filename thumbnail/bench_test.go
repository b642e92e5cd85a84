package thumbnail

import (
	"context"
	"path"
	"testing"
)

// BenchmarkMake makes the house thumbnail (256 px contain, JPEG q80) of every corpus
// photo. Record with: go test -run '^$' -bench . -benchtime 5x ./thumbnail/
func BenchmarkMake(b *testing.B) {
	for _, row := range readManifest(b) {
		if row.Category != "photo" {
			continue
		}
		src := readTestdata(b, row.File)
		b.Run(path.Base(row.File), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := Make(context.Background(), src, Spec{Width: 256, Height: 256, Quality: 80}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMakeWebP is the same thumbnail of a mid-size photo encoded as WebP, to
// weigh the WebP encoder against the rest.
func BenchmarkMakeWebP(b *testing.B) {
	src := readTestdata(b, "photos/Storm.jpg")
	for _, format := range []Format{FormatJPEG, FormatWebP} {
		b.Run(string(format), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Make(context.Background(), src, Spec{Width: 256, Height: 256, Format: format}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
