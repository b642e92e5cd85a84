package thumbnail

import (
	"bytes"
	"context"
	"image/jpeg"
	"path"
	"testing"

	"github.com/nfnt/resize"
)

// BenchmarkMake makes the house thumbnail (256 px contain, JPEG q80) of every corpus
// photo. Record with: go test -run '^$' -bench . -benchtime 5x ./thumbnail/
func BenchmarkMake(b *testing.B) {
	eachPhoto(b, func(b *testing.B, _ manifestRow, src []byte) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			if _, err := Make(context.Background(), src, Spec{Width: 256, Height: 256, Quality: 80}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// eachPhoto runs bench as a sub-benchmark for every corpus photo.
func eachPhoto(b *testing.B, bench func(b *testing.B, row manifestRow, src []byte)) {
	for _, row := range readManifest(b) {
		if row.Category != "photo" {
			continue
		}
		src := readTestdata(b, row.File)
		b.Run(path.Base(row.File), func(b *testing.B) {
			b.ReportAllocs()
			bench(b, row, src)
		})
	}
}

// BenchmarkNaive is the same thumbnail made the obvious way (decode, Lanczos3 over the
// whole image, encode), the baseline BenchmarkMake is measured against. The decode
// alone is most of what remains of BenchmarkMake.
func BenchmarkNaive(b *testing.B) {
	eachPhoto(b, func(b *testing.B, row manifestRow, src []byte) {
		for b.Loop() {
			img, err := jpeg.Decode(bytes.NewReader(src))
			if err != nil {
				b.Fatal(err)
			}
			width, height := uint(256), uint(0)
			if row.Height > row.Width {
				width, height = 0, 256
			}
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, resize.Resize(width, height, img, resize.Lanczos3), &jpeg.Options{Quality: 80}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeOnly is the standard library's JPEG decode of each photo: the floor
// for any pure-Go pipeline without DCT-domain scaling.
func BenchmarkDecodeOnly(b *testing.B) {
	eachPhoto(b, func(b *testing.B, _ manifestRow, src []byte) {
		for b.Loop() {
			if _, err := jpeg.Decode(bytes.NewReader(src)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOutputFormat is the same thumbnail of a mid-size photo in each output
// format, to weigh the WebP encoder against the rest.
func BenchmarkOutputFormat(b *testing.B) {
	src := readTestdata(b, "photos/Storm.jpg")
	for _, format := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
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

// BenchmarkEncodeWebP is the WebP encoder alone on a 256 px thumbnail. The encoder
// is libwebp: the system's libwebp.so when present (loaded without cgo), else the
// same library compiled to WebAssembly and run by wazero (build tag nodynamic forces
// that), whose first call also compiles the module.
func BenchmarkEncodeWebP(b *testing.B) {
	photo, err := jpeg.Decode(bytes.NewReader(readTestdata(b, "photos/Storm.jpg")))
	if err != nil {
		b.Fatal(err)
	}
	img := scaleImage(photo, 256, 171)
	if _, err := encode(img, FormatWebP, 80); err != nil { // the one-off start-up, not timed
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(img, FormatWebP, 80); err != nil {
			b.Fatal(err)
		}
	}
}
